"""Runtime side of the MDM-style refiner: canonical crop in, refined landmarks out (no torch).

The refiner network (``training/mdm.py``, exported to ``assets/mdm_refiner.onnx``) works in a
canonical frame where the initial shape is similarity-aligned to the PCA mean shape.  This
module builds that frame, normalises the crop exactly as training does, runs any engine that
maps ``{"image", "init"} -> {"points"}``, and maps the result back to the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import cv2
import numpy as np

from tracker.shape_model import ShapeModel, similarity_align

CROP = 128  # canonical crop side (pixels)
PATCH = 16  # patch side around each landmark (pixels in the canonical crop; ~30% of the eye distance)
SHAPE_SCALE = 36.0  # pixels per unit of the normalised mean shape (RMS radius 1)
SHAPE_CENTRE = np.array([CROP / 2 - 0.5, CROP / 2 - 0.5 - 0.14 * SHAPE_SCALE])

Infer = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def reference_shape(model: ShapeModel) -> np.ndarray:
    """(68,2) the mean shape placed in the canonical crop."""
    return model.mean * SHAPE_SCALE + SHAPE_CENTRE


def canonical_transform(init: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(2,3) similarity image -> canonical crop that maps `init` onto `reference`."""
    scale, R, t = similarity_align(init, reference)
    return np.hstack([scale * R, t[:, None]])


def invert_affine(m: np.ndarray) -> np.ndarray:
    A, t = m[:, :2], m[:, 2]
    Ai = np.linalg.inv(A)
    return np.hstack([Ai, (-Ai @ t)[:, None]])


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def normalise_crop(gray: np.ndarray) -> np.ndarray:
    """(S,S) uint8/float -> (S,S) float32 zero mean, unit std: removes global lighting."""
    g = gray.astype(np.float32)
    return (g - g.mean()) / max(float(g.std()), 1.0)


def canonical_crop(gray: np.ndarray, transform: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(gray, transform, (CROP, CROP), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Refinement:
    """points: (68,2) refined landmarks in the image; last_step: mean length (pixels, image
    frame) of the final update, small when the refiner has converged."""

    points: np.ndarray
    last_step: float


def refine(infer: Infer, gray: np.ndarray, init: np.ndarray, reference: np.ndarray) -> Refinement:
    """Run the refiner on a grayscale image from a (68,2) initial shape (image pixels)."""
    m = canonical_transform(init, reference)
    crop = normalise_crop(canonical_crop(gray, m))
    out = infer({"image": crop[None, None], "init": apply_affine(m, init)[None].astype(np.float32)})
    steps = np.asarray(out["points"])[0]  # (steps,68,2) canonical
    back = invert_affine(m)
    final = apply_affine(back, steps[-1].astype(np.float64))
    prev = apply_affine(back, (steps[-2] if len(steps) > 1 else apply_affine(m, init)).astype(np.float64))
    return Refinement(final, float(np.linalg.norm(final - prev, axis=1).mean()))
