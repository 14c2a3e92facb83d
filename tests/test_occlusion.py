"""Occlusion-aware face transfer: the visibility tests on hand-made inputs, then the shipped
models on the demo still with an occluding rectangle (paint must mostly stay off it)."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_IMAGE
from tracker.crop import Roi
from tracker.densemaps import DenseMaps
from tracker.occlusion import AppearanceMemory, colour_visibility, face_lab
from tracker.parts import OTHER
from tracker.pipeline import FaceResult, Tracker, TrackerConfig
from tracker.tools.synth300vw import OCCLUDER_COLOR
from tracker.transfer import face_region, unwrap_face

N = 64


def _disc() -> np.ndarray:
    yy, xx = np.mgrid[0:N, 0:N]
    return np.hypot(xx - N / 2, yy - N / 2) < 26


def _skin(rng: np.random.Generator) -> np.ndarray:
    """A skin-coloured crop with a shading ramp and pore noise."""
    img = np.zeros((N, N, 3), np.float32)
    img[:] = (120, 150, 205)
    img *= np.linspace(0.85, 1.1, N)[None, :, None]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def test_colour_test_flags_a_differently_coloured_patch_only():
    rng = np.random.default_rng(0)
    crop = _skin(rng)
    crop[20:44, 14:26] = (160, 90, 40)  # a blue object over the face
    face, labels = _disc(), np.where(_disc(), OTHER, 0).astype(np.uint8)
    vis = colour_visibility(face_lab(crop), face, labels)
    assert vis.shape == (N, N) and vis.dtype == np.float32
    assert vis[24:40, 16:24].max() < 0.05  # the object
    inside = face.copy()
    inside[16:48, 10:30] = False  # away from the object's blurred edge
    assert vis[inside].min() > 0.95 and (vis[~face] == 1).all()


def test_memory_flags_what_changed_at_a_uv_even_in_skin_colour():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32) + 0.5
    uv = np.stack([xx / N, 1 - yy / N])
    face = _disc()
    crop = _skin(rng)
    crop[24:30, 18:46] = (60, 70, 110)  # the face's own darker feature (a brow, say)
    mem = AppearanceMemory()
    for _ in range(5):
        lab = face_lab(crop)
        mem.update(lab, uv, face, mem.visibility(lab, uv, face))
    assert mem.visibility(face_lab(crop), uv, face)[face].min() > 0.9  # the face it learnt is face
    covered = crop.copy()
    covered[20:44, 20:32] = crop[40:50, 40:50].mean((0, 1))  # an occluder of the face's own skin colour
    vis = mem.visibility(face_lab(covered), uv, face)
    assert vis[25:29, 22:30].max() < 0.1  # where it hides the feature
    # A different picture altogether (a cut in the video): the memory starts again instead of
    # calling the whole face occluded.
    other = np.full_like(crop, 40)
    assert (mem.visibility(face_lab(other), uv, face) == 1).all() and not mem.known.any()


def test_unwrap_leaves_out_what_is_not_face():
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32) + 0.5
    fg = _disc().astype(np.float32)
    maps = DenseMaps(np.stack([xx / N, 1 - yy / N]), fg, np.zeros_like(fg))
    face = FaceResult(roi=Roi(32, 32, 64), score=1.0, track_id=0, stages={}, detected=True, maps=maps,
                      crop_to_image=np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    image = np.full((N, N, 3), 150, np.uint8)
    image[:20] = (20, 40, 60)  # "hair" over the top of the face
    _, seen_all = unwrap_face(image, face, size=32)
    texture, seen = unwrap_face(image, replace(face, visibility=np.where(np.arange(N)[:, None] < 20, 0.0, 1.0).astype(np.float32)), size=32)
    assert seen_all[:8].any() and not seen[:8].any()  # the top rows of the texture were not seen through the hair
    assert np.abs(texture[4:8, 12:20].astype(int) - 150).max() < 12  # and are filled from the skin, not the hair


# -- the shipped models on the demo still ----------------------------------------------------


@pytest.fixture(scope="module")
def still() -> tuple[np.ndarray, FaceResult, tuple[int, int, int, int]]:
    """The demo still, its face (with maps), and a hand-sized box over its left cheek and eye."""
    image = cv2.imread(str(DEMO_IMAGE))
    face = Tracker(TrackerConfig(mode="image", visibility=True)).track(image).faces[0]
    lo, hi = np.nanmin(face.landmarks, 0), np.nanmax(face.landmarks, 0)
    w = hi[0] - lo[0]
    box = (int(lo[0] + 0.1 * w), int(lo[1]), int(lo[0] + 0.35 * w), int(hi[1] - 0.1 * w))
    return image, face, box


def _paint(face: FaceResult, shape, visibility) -> np.ndarray:
    weight = np.zeros(shape[:2], np.float32)
    region = face_region(face.maps, face.crop_to_image, shape, visibility=visibility)
    weight[region.slices] = region.alpha
    return weight


def _areas(image, face, box):
    hull = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face.landmarks).astype(np.int32)), 1)
    occ = np.zeros_like(hull)
    occ[box[1] : box[3], box[0] : box[2]] = 1
    return (hull & occ).astype(bool), (hull & (1 - cv2.dilate(occ, np.ones((15, 15))))).astype(bool)


def test_visibility_is_opt_in(still):
    image, face, _ = still
    assert face.visibility.shape == face.maps.fg.shape and face.visibility.dtype == np.float32
    plain = Tracker(TrackerConfig(mode="image")).track(image)
    assert plain.faces[0].visibility is None and "visibility" not in plain.timings
    assert plain.faces[0].maps.fg.shape == face.maps.fg.shape  # the dense maps come either way


def test_still_paint_stays_off_a_coloured_occluder(still):
    image, _, box = still
    covered = image.copy()
    covered[box[1] : box[3], box[0] : box[2]] = (170, 110, 40)  # a blue object: not skin-coloured
    face = Tracker(TrackerConfig(mode="image", visibility=True)).track(covered).faces[0]
    on_occ, visible = _areas(covered, face, box)
    before, after = _paint(face, covered.shape, None), _paint(face, covered.shape, face.visibility)
    assert before[on_occ].mean() > 0.45  # the foreground alone paints the occluder: the network sees through it
    assert after[on_occ].mean() < 0.1
    assert after[visible].mean() > 0.9 * before[visible].mean()


def test_video_paint_stays_off_a_skin_coloured_occluder_that_moves_in(still):
    image, _, box = still
    tracker = Tracker(TrackerConfig(mode="video", visibility=True))
    for _ in range(4):
        tracker.track(image)  # the face is seen unoccluded first
    x0, y0, x1, y1 = box
    width = x1 - x0
    for shift in (2 * width, width, 0):  # the bar slides in from the left, as in the demo clip
        covered = image.copy()
        covered[y0:y1, max(x0 - shift, 0) : x1 - shift] = OCCLUDER_COLOR
        face = tracker.track(covered).faces[0]
    on_occ, visible = _areas(covered, face, box)
    still_colour = Tracker(TrackerConfig(mode="image", visibility=True)).track(covered).faces[0]
    colour_only = _paint(still_colour, covered.shape, still_colour.visibility)
    after = _paint(face, covered.shape, face.visibility)
    before = _paint(face, covered.shape, None)
    assert before[on_occ].mean() > 0.45
    assert after[on_occ].mean() < 0.5 * colour_only[on_occ].mean()  # the memory does what colour alone cannot
    assert after[on_occ].mean() < 0.25
    assert after[visible].mean() > 0.9 * before[visible].mean()
