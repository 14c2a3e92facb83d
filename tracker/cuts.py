"""Scene cuts in video: a frame that shares nothing with the one before.  At a hard cut the
tracks carried on onto the new shot's faces near where the old ones were, keeping their ids
(another person's landmarks in the subject's ``.pts`` for 40 frames; user test 10), because a
face is found there and nothing is lost.  The tracker ends every track at a cut and searches
the frame afresh, as it does a video's first frame.

The test compares small HSV thumbnails cell by cell: a cut changes nearly every cell of an
8x6 grid, where a face moving fast, a zoom, shaking or blur change at most 2/3 of them and an
occluder or a board in front of a face at most 2/3 (the synthetic clips, user test 10's clips),
and a still face under noise none.  A sudden change of the whole scene's light (a lamp switched
off, the white balance jumping) counts as a cut too: the faces are then searched afresh.  Every
pair is also judged on brightness alone, its level taken out, which finds the cuts of grey, tinted
and dark footage (``is_cut``)."""
from __future__ import annotations

import cv2
import numpy as np

from tracker.crop import roi_from_landmarks

THUMBNAIL = (32, 24)
GRID = (8, 6)
CELL_CHANGE = 0.1  # a cell changed: its mean |dH|, |dS|, |dV| (each over its range) averages above this
CUT_CELLS = 0.85  # a cut: at least this share of the cells changed (cuts 1.0; fast motion <= 0.67) ...
CUT_COLOURS = 0.15  # ... and the colours changed this much (``histogram_change``): a fast pan moves every cell, not the colours


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A BGR frame's small HSV summary (float32, 24x32x3), what ``is_cut`` compares.  Sampled to
    4x the thumbnail first: averaging a whole 1080p frame down took ~5 ms (review of session 23)."""
    w, h = THUMBNAIL
    if image.shape[1] > 4 * w and image.shape[0] > 4 * h:
        image = cv2.resize(image, (4 * w, 4 * h), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.resize(image, THUMBNAIL, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV).astype(np.float32)


# Both thumbnails' mean chroma (max - min of B, G, R: saturation x value, 0-255) below this: grey
# footage, whose hue is noise (judged on brightness alone, below).  Chroma, not saturation: a grey
# video's compression leaves 1-2 levels of colour noise, which saturation blows up in dark pixels
# (mean 16-33 after an MJPG or mp4v round trip; user test 19); their chroma stays under 3.2, the
# synthetic clips' colour frames' is 11.5 and up.
GREY_CHROMA = 6.0
COLOUR = ((0, 180.0, 180.0), (1, 256.0, 255.0), (2, 256.0, 255.0))  # (channel, histogram top, largest difference): hue wraps at 180
BRIGHTNESS = ((0, 256.0, 255.0),)


def _chroma(thumb: np.ndarray) -> float:
    return float((thumb[..., 1] * thumb[..., 2]).mean() / 255.0)


def _levelled(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail's brightness alone, scaled to a mean of 128: an exposure step is no change."""
    return np.clip(thumb[..., 2:] * (128.0 / max(float(thumb[..., 2].mean()), 1.0)), 0, 255)


def changed_cells(before: np.ndarray, after: np.ndarray, channels=COLOUR) -> float:
    """The share of the grid's cells that changed between two thumbnails (their `channels`)."""
    d = np.abs(after - before)
    if channels is COLOUR:
        d[..., 0] = np.minimum(d[..., 0], 180 - d[..., 0])  # hue wraps around
    per_pixel = sum(d[..., c] / span for c, _, span in channels) / len(channels)
    return float((cv2.resize(per_pixel, GRID, interpolation=cv2.INTER_AREA) > CELL_CHANGE).mean())


def histogram_change(before: np.ndarray, after: np.ndarray, channels=COLOUR) -> float:
    """How much the colours changed, wherever they are: the total variation distance between the
    two thumbnails' histograms of each channel (16 bins), averaged (0-1)."""
    change = 0.0
    for channel, top, _ in channels:  # (bincount: np.histogram took ~0.3 ms a channel)
        a, b = (np.bincount(np.minimum(t[..., channel].ravel() * (16 / top), 15).astype(np.intp), minlength=16) / t[..., channel].size
                for t in (before, after))
        change += np.abs(a - b).sum() / 2
    return float(change / len(channels))


def is_cut(before: np.ndarray | None, after: np.ndarray) -> bool:
    """A cut by the colours (all three HSV channels; not where both frames are grey, their hue
    being noise), or by the brightness alone with each frame's level taken out.  Colour alone
    missed nearly every cut in grey footage (1 of 40 between two people: hue and saturation never
    change there; review 29), in tinted monochrome (sepia, night-vision green, tinted infrared:
    0-1 of 40, one fixed hue) and in dark colour video (21-26 of 40); brightness alone finds them
    (34-40), and over 4,200 pairs of the synthetic clips' consecutive frames in colour, grey,
    sepia, green and dark it calls no more cuts than colour did (review 29c).  Raw brightness made
    an exposure step a cut (review 29b)."""
    if before is None:
        return False
    views = [(_levelled(before), _levelled(after), BRIGHTNESS)]
    if _chroma(before) >= GREY_CHROMA or _chroma(after) >= GREY_CHROMA:
        views.append((before, after, COLOUR))
    return any(changed_cells(b, a, ch) >= CUT_CELLS and histogram_change(b, a, ch) >= CUT_COLOURS for b, a, ch in views)


# Another person in a track's place, the rest of the frame unchanged (an edit between two speakers
# before one backdrop, a slideshow of portraits: user test 38), is no cut of the frame.  The face's
# own region, aligned on its landmarks in both frames, changes there as a whole frame does at a cut;
# the same face does not, whatever it does (it moves with the region).  Stricter than a frame's cut,
# and its pattern of light and shade (brightness, its level taken out) must change too: a coloured
# light on a still face changed every cell's colour but not that (verify 38: cells 1.0 / 0.15).
# ``python -m benchmarks.bench_face_changes``: over the 4,514 consecutive pairs of tracked faces in
# the 30 synthetic clips (occluders, blur, light ramps) and the demo clip none changed, the nearest
# cells 0.83 / colours 0.70; pasted pairs of different people 0.88-1.0 / 0.32-0.49, those under 0.9
# missed (verify 38: 2 of 9 pairs).  In colour only: grey footage's faces stay the track they were.
FACE_CUT_CELLS = 0.9
FACE_CUT_COLOURS = 0.25
FACE_CUT_SHADING = 0.75  # share of the cells whose levelled brightness changed


def face_thumbnail(image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """``thumbnail`` of the square crop a face's (68,2) landmarks give (``roi_from_landmarks``; its
    roll left out: a frame apart it barely changes), cut to the frame; None where none of it is
    inside.  Sliced, not warped: a warp's anti-aliasing blur of a large face cost ~0.7 ms a frame."""
    roi = roi_from_landmarks(points)
    h, w = image.shape[:2]
    x0, y0 = max(int(roi.cx - roi.size / 2), 0), max(int(roi.cy - roi.size / 2), 0)
    x1, y1 = min(int(roi.cx + roi.size / 2) + 1, w), min(int(roi.cy + roi.size / 2) + 1, h)
    return thumbnail(image[y0:y1, x0:x1]) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def face_changed(before: np.ndarray | None, after: np.ndarray | None) -> bool:
    """Whether two thumbnails of a tracked face's region (``face_thumbnail`` of the crop its
    landmarks give, one frame apart) show another face: see FACE_CUT_CELLS."""
    if before is None or after is None or (_chroma(before) < GREY_CHROMA and _chroma(after) < GREY_CHROMA):
        return False
    return (changed_cells(before, after) >= FACE_CUT_CELLS and histogram_change(before, after) >= FACE_CUT_COLOURS
            and changed_cells(_levelled(before), _levelled(after), BRIGHTNESS) >= FACE_CUT_SHADING)
