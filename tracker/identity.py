"""Whether two faces are one person: dlib's face-recognition network (a ResNet giving 128-D
descriptors, shipped by face-recognition-models: the ``[cnn]`` extra), used by
``tracker.writers.Subject`` to find a video's subject again after it was out of sight.  Only
consulted while the subject is missing and a face is there, when the subject's track jumps, and
every 100 frames while other faces are tracked (~0.1-0.2 s a look on one core); a video whose
one face is never lost never runs it."""
from __future__ import annotations

import threading
from functools import lru_cache

import cv2
import numpy as np

# dlib's own threshold: two descriptors nearer than this are one person (99.38% right on LFW).
SAME_PERSON = 0.6
CHIP_SIZE = 150  # the network's input: an aligned 150x150 chip


class FaceRecognizer:
    """Aligned chips and descriptors of faces given by their 68 landmarks."""

    def __init__(self, model_path: str):
        import dlib

        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(model_path)
        self._lock = threading.Lock()  # one network, batch threads share it (as dlib's CNN detector)

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """The face aligned on its landmarks, 150x150 RGB (what ``descriptor`` takes; cheap to keep
        for later); None when the points are unusable or leave no face in the picture."""
        if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
            return None
        lo, hi = landmarks.min(0), landmarks.max(0)
        h, w = image.shape[:2]
        if hi[0] < 0 or hi[1] < 0 or lo[0] >= w or lo[1] >= h or (hi - lo).min() < 8:
            return None
        dlib = self._dlib
        shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in (lo[0], lo[1], hi[0], hi[1]))),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
        bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        chip = dlib.get_face_chip(np.ascontiguousarray(bgr[:, :, 2::-1]), shape, size=CHIP_SIZE, padding=0.25)  # dlib wants RGB
        return np.asarray(chip)

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.asarray(self._net.compute_face_descriptor(chip), np.float32)


@lru_cache(maxsize=1)
def load_recognizer() -> FaceRecognizer | None:
    """The recognizer, or None where the ``[cnn]`` extra is not installed (the subject is then
    found again by place alone)."""
    from tracker.detector import dlib_model_file

    try:
        path = dlib_model_file("face_recognition_model_location")
    except ImportError:
        return None
    return FaceRecognizer(str(path)) if path.is_file() else None


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))
