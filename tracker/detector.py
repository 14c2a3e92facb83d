"""Face detection (dlib HOG) and the dlib 68-point baseline, behind small typed functions.

The detector runs on a downscaled copy of large frames (dlib's HOG cost grows with the pixel
count and 80 px faces are plenty for it) and upsamples small ones so that faces down to ~40 px
are found.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

DETECT_MAX_SIDE = 640  # frames larger than this are downscaled before HOG


@dataclass(frozen=True)
class Detection:
    """A face box in image pixels (x0,y0 inclusive; x1,y1 exclusive) and the detector score."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0


@lru_cache(maxsize=1)
def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def detect_faces(gray: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> list[Detection]:
    """All faces found by dlib's HOG detector, best score first; [] when there is none."""
    h, w = gray.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else gray
    upsample = 1 if max(small.shape) < 400 else 0
    if min(small.shape[:2]) < 20:
        return []
    rects, scores, _ = _hog().run(np.ascontiguousarray(small), upsample, 0.0)
    dets = [
        Detection(r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale, float(s))
        for r, s in zip(rects, scores)
    ]
    return sorted(dets, key=lambda d: -d.score)


def dlib_predictor_path() -> Path:
    """The 68-point model shipped by the face-recognition-models package."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package imports the deprecated pkg_resources
        import face_recognition_models

    return Path(face_recognition_models.pose_predictor_model_location())


@lru_cache(maxsize=1)
def _predictor():
    import dlib

    return dlib.shape_predictor(str(dlib_predictor_path()))


def dlib_landmarks(gray: np.ndarray, det: Detection) -> np.ndarray:
    """(68,2) 0-based landmarks from dlib's ensemble-of-regression-trees predictor."""
    import dlib

    rect = dlib.rectangle(int(round(det.x0)), int(round(det.y0)), int(round(det.x1)) - 1, int(round(det.y1)) - 1)
    shape = _predictor()(np.ascontiguousarray(gray), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
