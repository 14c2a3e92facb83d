"""Which pixels of a face crop show the face itself, not a hand, an object or hair over it.

The network cannot say: it was trained to see through occluders (``training/dataset.py`` keeps
the true UV under its synthetic occluders, so that landmarks survive occlusion), and its
foreground probability stays around 0.9 on a hand crossing the face.  Face transfer needs the
difference (paint goes on skin, not on the hand; an unwrapped face must not carry a fringe), so
two appearance tests estimate it, both on the crop the network saw (S,S):

* ``colour_visibility``, one picture: the face's own colours, per facial part (robust median
  and spread in Lab); a pixel far from its part's colours is not face (hair over the
  forehead, an object of another colour).  A skin-coloured hand passes this test.
* ``AppearanceMemory``, one tracked face in a video: the face's colours remembered in UV space;
  a pixel that differs from what was seen at its UV in earlier frames is not face (a hand
  moving over the face).  An occluder present from the track's first frame is remembered as
  face.

The visibility is a float map in [0,1] (1 = face), smooth at the edges, multiplied into the
paint's blend weight (``tracker.transfer``); ``visibility_map`` computes it at half the crop's
resolution (it is smooth, and this costs ~1.5 ms a face).  ``benchmarks/bench_occlusion.py``
measures both tests.
"""
from __future__ import annotations

import cv2
import numpy as np

from tracker.densemaps import DenseMaps
from tracker.parts import LEFT_EYE, LEFT_EYEBROW, LOWER_LIP, NOSE, OTHER, RIGHT_EYE, RIGHT_EYEBROW, UPPER_LIP, lookup_parts

# Robust z-score (per Lab channel, the largest of the three) below LO is face, above HI is not.
COLOUR_LO, COLOUR_HI = 3.0, 4.0
# Smallest spread assumed per Lab channel: a flat-lit face would otherwise flag every pore.
COLOUR_FLOOR = np.array([4.0, 2.0, 2.0], np.float32)
MEMORY_SIZE = 64  # texels per side of the remembered face (UV space): about one per pixel at WORK_SIZE
# A pixel this many (L, a, b) units away from the remembered colour counts as one z unit.
MEMORY_SCALE = np.array([6.0, 3.0, 3.0], np.float32)
MEMORY_LO, MEMORY_HI = 2.0, 3.5
MEMORY_RATE = 0.3  # how fast remembered colours follow visible pixels (lighting, expression)
MEMORY_HEAL = 0.03  # ...and pixels judged occluded: a wrong memory fades out in ~1-2 s
MEMORY_RESET = 0.6  # more of the face than this unlike the memory: the memory is wrong (a cut, a seek)
WORK_SIZE = 64  # side of the crop the tests run on
MIN_PIXELS = 30  # fewer face (or part) pixels than this: no statistics, everything counts as face
# Parts whose colours are meant to differ from skin get a colour model of their own.
OWN_COLOURS = (LEFT_EYEBROW, RIGHT_EYEBROW, LEFT_EYE, RIGHT_EYE, UPPER_LIP, LOWER_LIP)


def visibility_map(crop_bgr: np.ndarray, maps: DenseMaps, part_map: np.ndarray, fg_threshold: float = 0.5,
                   memory: AppearanceMemory | None = None) -> np.ndarray:
    """(S,S) float32 visibility of a face in the crop of its ``maps`` (S,S).

    crop_bgr: the same crop resampled to ``WORK_SIZE`` (``warp_image(image, roi, WORK_SIZE)``);
    part_map: the template's (``Tracker.part_map``); memory: the face's track's, in video (it
    learns this frame), or None for the colour test alone."""
    n, s = crop_bgr.shape[0], maps.fg.shape[0]
    uv = cv2.resize(np.ascontiguousarray(np.nan_to_num(maps.uv).transpose(1, 2, 0)), (n, n), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    face = cv2.resize(maps.fg, (n, n), interpolation=cv2.INTER_AREA) > fg_threshold
    lab = face_lab(crop_bgr)
    vis = colour_visibility(lab, face, lookup_parts(uv, part_map, face))
    if memory is not None:
        vis = np.minimum(vis, memory.visibility(lab, uv, face))
        memory.update(lab, uv, face, vis)
    return cv2.resize(vis, (s, s), interpolation=cv2.INTER_LINEAR)


def face_lab(crop_bgr: np.ndarray) -> np.ndarray:
    """(n,n,3) float32 Lab (L in 0..100) of a BGR uint8 crop, lightly blurred: compression noise
    and single pores are not occluders."""
    return cv2.cvtColor(cv2.GaussianBlur(crop_bgr, (0, 0), 0.7).astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def _ramp(z: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 below lo, 0 above hi, linear between; z smoothed first so that the map has no speckle."""
    z = cv2.GaussianBlur(z.astype(np.float32), (0, 0), 1.0)
    return np.clip((hi - z) / (hi - lo), 0.0, 1.0)


def _robust_model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.median(x, axis=0)
    spread = 1.4826 * np.median(np.abs(x - med), axis=0)  # the MAD as a standard deviation
    return med, np.maximum(spread, COLOUR_FLOOR)


def _z(x: np.ndarray, model) -> np.ndarray:
    return (np.abs(x - model[0]) / model[1]).max(axis=-1)


def colour_visibility(lab: np.ndarray, face: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(S,S) float32 in [0,1]: how well each pixel's colour fits its facial part's colours.

    lab: ``face_lab`` of the crop; face: (S,S) bool face mask (foreground); labels: (S,S) part
    labels (``tracker.parts``).  Skin (nose and the rest of the face) is one model, fitted twice:
    the second time without the first fit's outliers, so a large occluder does not widen it.
    Eyes, brows and lips have models of their own (they are meant to differ from skin); a part
    with too few pixels, and face pixels outside the template's parts, are tested against skin.  Off the face the map is 1 (the foreground mask
    decides there)."""
    vis = np.ones(face.shape, np.float32)
    if face.sum() < MIN_PIXELS:
        return vis
    pixels, parts = lab[face], labels[face]
    skin = pixels[(parts == NOSE) | (parts == OTHER)]
    skin = skin if len(skin) >= MIN_PIXELS else pixels
    model = _robust_model(skin)
    inliers = skin[_z(skin, model) < COLOUR_HI]
    if len(inliers) >= MIN_PIXELS:
        model = _robust_model(inliers)
    z = _z(pixels, model)
    for part in OWN_COLOURS:
        m = parts == part
        if m.sum() >= MIN_PIXELS:
            z[m] = _z(pixels[m], _robust_model(pixels[m]))
    zmap = np.zeros(face.shape, np.float32)
    zmap[face] = z
    return np.where(face, _ramp(zmap, COLOUR_LO, COLOUR_HI), 1.0).astype(np.float32)


def _texels(uv: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Flat texel index of each masked pixel's UV (the texture convention of tracker.transfer)."""
    col = np.clip((uv[0][mask] * size).astype(np.int64), 0, size - 1)
    row = np.clip(((1.0 - uv[1][mask]) * size).astype(np.int64), 0, size - 1)
    return row * size + col


class AppearanceMemory:
    """One tracked face's colours in UV space (Lab, ``MEMORY_SIZE``^2 texels), learnt frame by
    frame from the pixels judged visible."""

    def __init__(self, size: int = MEMORY_SIZE):
        self.size = size
        self.colour = np.zeros((size, size, 3), np.float32)
        self.known = np.zeros((size, size), bool)

    def visibility(self, lab: np.ndarray, uv: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(S,S) float32 in [0,1]: how well each face pixel matches the remembered colour at its
        UV (1 where nothing is remembered yet, or off the face).  A global brightness change
        (lighting, exposure) is divided out first."""
        vis = np.ones(face.shape, np.float32)
        if not self.known.any():
            return vis
        uv = np.nan_to_num(uv)
        map_x = (np.clip(uv[0], 0, 1) * self.size - 0.5).astype(np.float32)
        map_y = ((1.0 - np.clip(uv[1], 0, 1)) * self.size - 0.5).astype(np.float32)
        expected = cv2.remap(self.colour, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        known = face & (cv2.remap(self.known.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST) > 0.5)
        if known.sum() < MIN_PIXELS:
            return vis
        gain = np.median(lab[known][:, 0]) / max(float(np.median(expected[known][:, 0])), 1e-3)
        expected[..., 0] *= gain
        z = np.where(known, (np.abs(lab - expected) / MEMORY_SCALE).max(axis=-1), 0.0)  # unknown texels must not bleed in
        vis = np.where(known, _ramp(z, MEMORY_LO, MEMORY_HI), 1.0).astype(np.float32)
        if (vis[known] < 0.5).mean() > MEMORY_RESET:
            self.known[:] = False  # most of the face unlike the memory: the memory is what is wrong
            return np.ones(face.shape, np.float32)
        return vis

    def update(self, lab: np.ndarray, uv: np.ndarray, face: np.ndarray, visible: np.ndarray) -> None:
        """Learn this frame: texels seen through visible pixels move towards them quickly, texels
        seen only through occluded ones slowly (so a memory that learnt an occluder heals)."""
        mask = face & np.isfinite(uv).all(axis=0)
        if not mask.any():
            return
        n = self.size * self.size
        idx, colours, shown = _texels(uv, mask, self.size), lab[mask], visible[mask] > 0.5
        flat, known = self.colour.reshape(n, 3), self.known.reshape(n)
        mean, seen = _texel_means(idx[shown], colours[shown], n)
        new, old = seen & ~known, seen & known
        flat[new] = mean[new]  # first sight of a texel: take it as it is
        flat[old] += MEMORY_RATE * (mean[old] - flat[old])
        known |= new
        mean, hidden = _texel_means(idx[~shown], colours[~shown], n)
        heal = hidden & known & ~seen
        flat[heal] += MEMORY_HEAL * (mean[heal] - flat[heal])


def _texel_means(idx: np.ndarray, colours: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour (n,3) of the pixels landing on each of n texels, and which texels got any."""
    count = np.bincount(idx, minlength=n)
    seen = count > 0
    mean = np.zeros((n, 3), np.float32)
    for c in range(3):
        mean[seen, c] = np.bincount(idx, colours[:, c], minlength=n)[seen] / count[seen]
    return mean, seen
