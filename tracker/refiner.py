"""Runtime side of the MDM-style refiner: canonical crop in, refined landmarks out (no torch).

The refiner network (``training/mdm.py``, exported to ``assets/mdm_refiner.onnx``) works in a
canonical frame where the initial shape is similarity-aligned to the PCA mean shape.  This
module builds that frame, normalises the crop exactly as training does, runs any engine that
maps ``{"image", "init"} -> {"points"}``, and maps the result back to the image.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from tracker.crop import invert, transform_points
from tracker.shape_model import ShapeModel, as_complex, complex_similarity


@dataclass(frozen=True)
class CanonicalFrame:
    """Where a refiner sees the face: a square crop of `crop` pixels in which the PCA mean
    shape (RMS radius 1) is drawn `scale` pixels per unit, centred.  The outer eye corners of
    the mean shape are 1.59 units apart, so `scale` fixes the refiner's resolution: at 36 a
    pixel is 1.74% of the eye distance, at 64 it is 0.98%."""

    crop: int
    scale: float
    patch: int  # side of the patch sampled around each landmark (pixels in this crop)

    def reference(self, model: ShapeModel) -> np.ndarray:
        """(68,2) the mean shape placed in the canonical crop."""
        centre = np.array([self.crop / 2 - 0.5, self.crop / 2 - 0.5 - 0.14 * self.scale])
        return model.mean * self.scale + centre


# The coarse stage corrects DenseReg+PCA errors of ~10% of the eye distance at low resolution;
# the fine stage starts from its output (~4% errors) at twice the resolution.
COARSE = CanonicalFrame(crop=128, scale=36.0, patch=16)
FINE = CanonicalFrame(crop=208, scale=64.0, patch=24)
# Shipped refiner assets and their frames, in the order a cascade applies them.
FRAMES = {"mdm_refiner.onnx": COARSE, "mdm_fine.onnx": FINE, "mdm_single.onnx": FINE}
DEFAULT_REFINERS = ("mdm_refiner.onnx", "mdm_fine.onnx")
# The one-stage alternative (``--one-stage``): the fine stage's network with a 4th step, trained
# to start from the DenseReg+PCA output; val AUC 0.606 vs 0.613 (with test-time flipping, as
# pictures run; session 20).
ONE_STAGE = ("mdm_single.onnx",)

# The int8 variant's metadata entry naming the SHA-256 of the float graph it was made from.
FLOAT_GRAPH_KEY = "float_graph_sha256"


def int8_variant(name: str) -> str:
    """The refiner asset ONNX Runtime runs on the CPU: ``<stem>_int8.onnx``, the same network
    with its fully connected layers in uint8 (``training.export`` writes it beside every refiner
    graph; 0.2 ms a face faster in the pipeline, the same val AUC as the float graphs: 0.613)."""
    return name.removesuffix(".onnx") + "_int8.onnx"


Infer = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def canonical_transform(init: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(2,3) similarity image -> canonical crop that maps (68,2) `init` onto `reference`; or
    (...,2,3) for (...,68,2) shapes, all at once."""
    q, t = complex_similarity(as_complex(init), as_complex(reference))  # q: scale e^{i theta}
    m = np.empty(q.shape + (2, 3))
    m[..., 0, 0], m[..., 0, 1], m[..., 0, 2] = q.real, -q.imag, t.real
    m[..., 1, 0], m[..., 1, 1], m[..., 1, 2] = q.imag, q.real, t.imag
    return m


def normalise_crop(gray: np.ndarray) -> np.ndarray:
    """(S,S) uint8/float -> (S,S) float32 zero mean, unit std: removes global lighting."""
    mean, std = cv2.meanStdDev(gray)  # one pass, in C: 4x faster than numpy's mean and std
    g = gray.astype(np.float32)
    g -= np.float32(mean[0, 0])
    g *= np.float32(1.0 / max(float(std[0, 0]), 1.0))
    return g


def canonical_crop(gray: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(gray, transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Refinement:
    """points: (68,2) refined landmarks in the image; last_step: mean length (pixels, image
    frame) of the final update, small when the refiner has converged."""

    points: np.ndarray
    last_step: float


def refine(infer: Infer, gray: np.ndarray, inits: np.ndarray, reference: np.ndarray, size: int,
           flip: np.ndarray | None = None) -> list[Refinement]:
    """Run the refiner on a grayscale image from (F,68,2) initial shapes (image pixels), all
    F faces in one engine call; one Refinement per face.  `reference` and `size` are the
    stage's frame's (``CanonicalFrame.reference``, ``.crop``).

    `flip`: the landmarks' mirror permutation to also refine each mirrored crop (in the same
    call) and average the two answers (test-time flipping).
    """
    inits = np.asarray(inits, np.float64).reshape(-1, 68, 2)
    mats = canonical_transform(inits, reference)  # (F,2,3)
    images = np.stack([normalise_crop(canonical_crop(gray, m, size)) for m in mats])[:, None]
    starts = transform_points(mats, inits).astype(np.float32)
    feed = {"image": images, "init": starts}
    if flip is not None:
        feed = {"image": np.concatenate([images, images[..., ::-1]]), "init": np.concatenate([starts, _mirror(starts, flip, size)])}
    steps = np.asarray(infer({k: np.ascontiguousarray(v) for k, v in feed.items()})["points"])  # (B,steps,68,2)
    if flip is not None:
        steps = (steps[: len(inits)] + _mirror(steps[len(inits):], flip, size)) / 2
    back = invert(mats)
    final = transform_points(back, steps[:, -1].astype(np.float64))
    prev = transform_points(back, (steps[:, -2] if steps.shape[1] > 1 else starts).astype(np.float64))
    moved = np.sqrt(((final - prev) ** 2).sum(-1)).mean(-1)
    return [Refinement(p, float(d)) for p, d in zip(final, moved)]


def _mirror(points: np.ndarray, permutation: np.ndarray, size: int) -> np.ndarray:
    """(...,68,2) points of a `size` crop -> the same landmarks in the mirrored crop."""
    out = points[..., permutation, :].copy()
    out[..., 0] = size - 1 - out[..., 0]
    return out


@dataclass(frozen=True)
class RefinerStage:
    """One stage of the refiner cascade: its engine's infer function and its frame."""

    infer: Infer
    frame: CanonicalFrame
    reference: np.ndarray  # frame.reference(shape model), computed once


def refine_cascade(stages: list[RefinerStage], gray: np.ndarray, inits: np.ndarray,
                   flip: np.ndarray | None = None) -> list[list[Refinement]]:
    """Each stage starts from the previous one's answer; [stage][face] Refinements for the
    (F,68,2) initial shapes, every face of a stage in one engine call."""
    out, points = [], np.asarray(inits, np.float64).reshape(-1, 68, 2)
    for stage in stages:
        r = refine(stage.infer, gray, points, stage.reference, stage.frame.crop, flip)
        out.append(r)
        points = np.stack([x.points for x in r])
    return out
