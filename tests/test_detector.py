"""Face detection: dlib HOG, and the CNN fallback for still images HOG cannot handle."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tracker.assets import ASSETS
from tracker.crop import roi_from_box
from tracker.detector import cnn_available, detect_faces, detect_faces_cnn

needs_cnn = pytest.mark.skipif(not cnn_available(), reason="face-recognition-models (dlib's CNN detector) not installed")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.imread(str(ASSETS / "demo" / "astronaut.jpg"))


@pytest.fixture(scope="module")
def rotated(astronaut) -> np.ndarray:
    # 50 degrees of roll: beyond what dlib's frontal HOG model accepts.
    h, w = astronaut.shape[:2]
    return cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 50, 1.0), (w, h), borderMode=cv2.BORDER_REFLECT)


def test_hog_finds_the_upright_face_and_not_the_rotated_one(astronaut, rotated):
    dets = detect_faces(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    assert dets and dets[0].detector == "hog" and dets[0].score > 0.2
    assert all(d.score < 0.2 for d in detect_faces(cv2.cvtColor(rotated, cv2.COLOR_BGR2GRAY)))


def test_detectors_reject_blank_and_tiny_images():
    assert detect_faces(np.zeros((5, 5), np.uint8)) == []
    if cnn_available():
        assert detect_faces_cnn(np.zeros((5, 5, 3), np.uint8)) == []
        assert detect_faces_cnn(np.full((240, 320, 3), 128, np.uint8)) == []


@needs_cnn
def test_cnn_box_overlaps_the_hog_box(astronaut):
    hog = detect_faces(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))[0]
    cnn = detect_faces_cnn(astronaut)[0]
    assert cnn.detector == "cnn"
    # After each detector's calibration both crops frame the same face.
    a, b = roi_from_box(hog.x0, hog.y0, hog.x1, hog.y1, "hog"), roi_from_box(cnn.x0, cnn.y0, cnn.x1, cnn.y1, "cnn")
    assert abs(a.cx - b.cx) < 0.1 * a.size and abs(a.cy - b.cy) < 0.1 * a.size and abs(a.size / b.size - 1) < 0.2


@needs_cnn
def test_image_mode_falls_back_to_the_cnn(astronaut, rotated):
    from dataclasses import replace

    from tracker import Tracker, TrackerConfig

    config = TrackerConfig(mode="image", threads=1, refine=False, cnn_fallback=False)
    assert Tracker(config).track(rotated).faces == []
    faces = Tracker(replace(config, cnn_fallback=True)).track(rotated).faces
    assert len(faces) == 1 and faces[0].box.detector == "cnn"
    # The landmarks sit on the rotated face: their centre is the upright face's centre, rotated.
    hog = detect_faces(cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))[0]
    h, w = astronaut.shape[:2]
    centre = cv2.getRotationMatrix2D((w / 2, h / 2), 50, 1.0) @ np.array([(hog.x0 + hog.x1) / 2, (hog.y0 + hog.y1) / 2, 1.0])
    assert np.linalg.norm(np.nanmean(faces[0].landmarks, axis=0) - centre) < 0.25 * hog.width


@needs_cnn
def test_video_mode_tries_the_cnn_only_every_n_frames_while_nothing_is_tracked(rotated):
    from tracker import Tracker, TrackerConfig

    blank = np.zeros_like(rotated)
    off = Tracker(TrackerConfig(mode="video", threads=1, refine=False))
    assert off.track(rotated).faces == []  # default 0: HOG only, live use never stalls on the CNN
    tracker = Tracker(TrackerConfig(mode="video", threads=1, refine=False, video_cnn_every=3))
    assert tracker.track(blank).faces == []  # frame 0: HOG and the CNN both find nothing
    assert tracker.track(rotated).faces == [] and tracker.track(rotated).faces == []  # frames 1, 2: not due
    faces = tracker.track(rotated).faces  # frame 3: the CNN finds it, tracking takes over
    assert len(faces) == 1 and faces[0].box.detector == "cnn"
    assert len(tracker.track(rotated).faces) == 1 and "detect" not in tracker.track(rotated).timings
