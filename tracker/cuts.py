"""Scene cuts in video: a frame that shares nothing with the one before.  At a hard cut the
tracks carried on onto the new shot's faces near where the old ones were, keeping their ids
(another person's landmarks in the subject's ``.pts`` for 40 frames; user test 10), because a
face is found there and nothing is lost.  The tracker ends every track at a cut and searches
the frame afresh, as it does a video's first frame.

The test compares small HSV thumbnails cell by cell: a cut changes nearly every cell of an
8x6 grid, where a face moving fast, a zoom, shaking or blur change at most 2/3 of them and an
occluder or a board in front of a face at most 2/3 (the synthetic clips, user test 10's clips),
and a still face under noise none.  A sudden change of the whole scene's light (a lamp switched
off, the white balance jumping) counts as a cut too: the faces are then searched afresh.  Grey
footage is judged on brightness alone, its level taken out (``_compared``)."""
from __future__ import annotations

import cv2
import numpy as np

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
# footage, judged on brightness alone.  Chroma, not saturation: a grey video's compression leaves
# 1-2 levels of colour noise, which saturation blows up in dark pixels (mean 16-33 after an MJPG or
# mp4v round trip, so such files were judged as colour and most of their cuts missed: user test
# 19); their chroma stays under 3.2, the synthetic clips' colour frames' is 11.5 and up.
GREY_CHROMA = 6.0


def _chroma(thumb: np.ndarray) -> float:
    return float((thumb[..., 1] * thumb[..., 2]).mean() / 255.0)


def _compared(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[tuple[int, float, float], ...]]:
    """What a pair is judged on: the two thumbnails and their channels, each with its histogram's
    top and its largest difference (OpenCV's hue is 0-179 and wraps around at 180).  All three
    HSV channels; or, where neither frame has colour (black-and-white film, an infrared camera,
    grey pictures), brightness alone, each frame's scaled to a mean of 128.  There hue and
    saturation are 0 and never change, so a cell changed only where its brightness moved by 3x
    CELL_CHANGE and the histograms by a third: 1 of 40 cuts between two people was found in
    grey, 40 in colour (review 29); judged on brightness without the scaling, an exposure step
    (the light dimmed by a quarter) was a cut (review 29b)."""
    if _chroma(before) < GREY_CHROMA and _chroma(after) < GREY_CHROMA:
        level = [np.clip(t[..., 2:] * (128.0 / max(float(t[..., 2].mean()), 1.0)), 0, 255) for t in (before, after)]
        return level[0], level[1], ((0, 256.0, 255.0),)
    return before, after, ((0, 180.0, 180.0), (1, 256.0, 255.0), (2, 256.0, 255.0))


def changed_cells(before: np.ndarray, after: np.ndarray) -> float:
    """The share of the grid's cells that changed between two thumbnails."""
    before, after, channels = _compared(before, after)
    d = np.abs(after - before)
    if len(channels) == 3:
        d[..., 0] = np.minimum(d[..., 0], 180 - d[..., 0])  # hue wraps around
    per_pixel = sum(d[..., c] / span for c, _, span in channels) / len(channels)
    return float((cv2.resize(per_pixel, GRID, interpolation=cv2.INTER_AREA) > CELL_CHANGE).mean())


def histogram_change(before: np.ndarray, after: np.ndarray) -> float:
    """How much the colours changed, wherever they are: the total variation distance between the
    two thumbnails' hue, saturation and value histograms (16 bins each), averaged (0-1)."""
    before, after, channels = _compared(before, after)
    change = 0.0
    for channel, top, _ in channels:  # (bincount: np.histogram took ~0.3 ms a channel)
        a, b = (np.bincount(np.minimum(t[..., channel].ravel() * (16 / top), 15).astype(np.intp), minlength=16) / t[..., channel].size
                for t in (before, after))
        change += np.abs(a - b).sum() / 2
    return float(change / len(channels))


def is_cut(before: np.ndarray | None, after: np.ndarray) -> bool:
    return before is not None and changed_cells(before, after) >= CUT_CELLS and histogram_change(before, after) >= CUT_COLOURS
