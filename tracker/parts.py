"""The 8 facial part classes and their transfer from regressed UV (paper §4.2).

Label values, used everywhere (ground truth, ``images --parts``, the viewer's overlay):

====  ===============
 0    background
 1    left_eyebrow
 2    right_eyebrow
 3    left_eye
 4    right_eye
 5    upper_lip
 6    lower_lip
 7    nose
 8    other (rest of the face)
====  ===============

Left/right are the *subject's*, as in the iBUG names (points 37-42 are the right eye, which
appears on the image left in a frontal photo).
"""
from __future__ import annotations

import numpy as np

PART_NAMES = (
    "background",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "upper_lip",
    "lower_lip",
    "nose",
    "other",
)
BACKGROUND, LEFT_EYEBROW, RIGHT_EYEBROW, LEFT_EYE, RIGHT_EYE, UPPER_LIP, LOWER_LIP, NOSE, OTHER = range(9)

# Label after a horizontal image flip: left and right swap, the rest stays.
PART_FLIP = np.array([0, 2, 1, 4, 3, 5, 6, 7, 8], np.uint8)

# BGR colours for overlays and previews (background black).
PART_COLORS = np.array(
    [
        [0, 0, 0],
        [40, 180, 255],
        [0, 120, 255],
        [255, 200, 0],
        [255, 120, 0],
        [80, 80, 255],
        [150, 40, 220],
        [60, 220, 60],
        [170, 170, 170],
    ],
    np.uint8,
)


def uv_cells(u_h: np.ndarray, u_v: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the cells of a (res,res) raster of UV space (row 0 is u_v = 1, column 0 is
    u_h = 0) that the UV values fall in, clamped to the raster: the one rule of the part map's
    lookup, the texture's splat and the dense fit's triangle lookup."""
    cols = np.clip((np.clip(u_h, 0, 1) * res).astype(np.int64), 0, res - 1)
    rows = np.clip(((1.0 - np.clip(u_v, 0, 1)) * res).astype(np.int64), 0, res - 1)
    return rows, cols


def lookup_parts(uv: np.ndarray, part_map: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel part labels from a UV field.

    uv: (2,H,W) in [0,1], NaN off the face; part_map: (R,R) uint8 raster of the template in
    UV space (row 0 is u_v = 1, the top of the head; column 0 is u_h = 0); face: optional
    (H,W) bool mask of pixels to label (default: every pixel with finite UV).
    Returns (H,W) uint8 with 0 outside the face.
    """
    valid = np.isfinite(uv).all(axis=0)
    if face is not None:
        valid &= face
    labels = np.zeros(uv.shape[1:], np.uint8)
    labels[valid] = part_map[uv_cells(uv[0][valid], uv[1][valid], part_map.shape[0])]
    return labels


def colorize_parts(labels: np.ndarray) -> np.ndarray:
    """(H,W) labels -> (H,W,3) BGR uint8."""
    return PART_COLORS[np.clip(labels, 0, len(PART_COLORS) - 1)]


def part_iou(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict[str, tuple[int, int]]:
    """Intersection and union pixel counts per part class (1..8) over label images of any
    shape; accumulate them over a data set and divide at the end (IoU of the whole set)."""
    m = np.ones(truth.shape, bool) if valid is None else valid
    out = {}
    for label in range(1, len(PART_NAMES)):
        p, t = (pred == label) & m, (truth == label) & m
        out[PART_NAMES[label]] = (int((p & t).sum()), int((p | t).sum()))
    return out


def mean_iou(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean over the 8 part classes of the IoU of the whole set (`part_iou`'s arguments)."""
    return float(np.mean([i / max(u, 1) for i, u in part_iou(pred, truth, valid).values()]))
