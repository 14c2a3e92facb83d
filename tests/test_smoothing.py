"""The landmark filter (``tracker.smoothing.OneEuro``) on made-up trajectories: still faces are
smoothed, a face reversing direction at speed is followed."""
from __future__ import annotations

import numpy as np

from tracker.smoothing import OneEuro

EYE = 70.0  # eye distance of the made-up face, px
FPS = 30.0


def _face(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 2 * EYE, (68, 2))


def _run(filt: OneEuro, frames: list[np.ndarray]) -> np.ndarray:
    return np.array([filt(p, i / FPS, EYE) for i, p in enumerate(frames)])


def test_a_still_small_face_in_a_shaking_camera_is_smoothed_about_as_much_with_the_face_term():
    """The face term sees the whole face's move; the deadband keeps a camera's sub-pixel shake
    (here 0.1 px a frame on a face 20 px between the eyes, plus 0.1 px of noise a point) from
    opening the filter: without it the face term lets most of the shake through."""
    rng = np.random.default_rng(0)
    eye = 20.0
    face = rng.uniform(0, 2 * eye, (68, 2))
    frames = [face + rng.normal(size=face.shape) * 0.1 + rng.normal(size=2) * 0.1 for _ in range(80)]

    def jitter(band):
        filt = OneEuro(face_deadband=band)
        out = np.array([filt(p, i / FPS, eye) for i, p in enumerate(frames)])
        return np.linalg.norm(np.diff(out[10:], axis=0), axis=2).mean()

    raw = np.linalg.norm(np.diff(np.array(frames[10:]), axis=0), axis=2).mean()
    alone, shipped, no_deadband = jitter(None), jitter(0.01), jitter(0.0)
    assert alone < 0.5 * raw and shipped < 1.2 * alone < 1.4 * alone < no_deadband


def test_a_face_shaking_fast_is_followed():
    """A head shake, 120 px each way at up to 47 px a frame: One Euro's smoothed speed passes
    through zero just after each reversal, while the face moves at full speed, and it lagged by
    7 px; the face's own move keeps the filter open."""
    face = _face(np.random.default_rng(1))
    frames = np.array([face + [120 * np.sin(2 * np.pi * t / 16), 0.0] for t in range(48)])
    lag = np.abs(_run(OneEuro(), list(frames)) - frames).max()
    lag_alone = np.abs(_run(OneEuro(face_deadband=None), list(frames)) - frames).max()
    assert lag < 0.01 * EYE and lag_alone > 0.08 * EYE


def test_a_missing_point_keeps_its_last_place_and_the_rest_are_filtered():
    face = _face(np.random.default_rng(2))
    filt = OneEuro()
    filt(face, 0.0, EYE)
    holed = face + 0.5
    holed[5] = np.nan
    out = filt(holed, 1 / FPS, EYE)
    np.testing.assert_allclose(out[5], face[5])
    rest = np.delete(out, 5, axis=0)
    assert np.isfinite(rest).all() and np.abs(rest - np.delete(face, 5, axis=0)).max() < 0.5
    # missing on the first frame: the point is followed from where it is first seen (it stayed NaN: review 35)
    filt = OneEuro()
    filt(holed, 0.0, EYE)
    out = filt(face, 1 / FPS, EYE)
    assert np.isfinite(out).all() and np.allclose(out[5], face[5])


def test_the_filter_works_in_seconds_so_a_slower_camera_is_not_smoothed_longer():
    """A still face moves 0.3 px (below the face term's deadband): with each frame's time it
    settles about as fast at 15 fps as at 30; taken as 30 fps frames (a count of frames) the
    15 fps one took a frame longer."""
    face = _face(np.random.default_rng(3))

    def settle_s(fps: float, clock_fps: float) -> float:
        filt = OneEuro()
        for i in range(int(3 * fps)):
            t = i / fps
            x = face + [0.3 if t >= 1.0 else 0.0, 0.0]
            out = filt(x, i / clock_fps, EYE)
            if t >= 1.0 and np.median(out[:, 0] - face[:, 0]) >= 0.27:
                return t - 1.0
        return np.inf

    at_30, at_15, counted = settle_s(30, 30), settle_s(15, 15), settle_s(15, 30)
    assert at_15 <= at_30 + 1 / 15 + 1e-9 and counted > at_15


def test_two_frames_at_the_same_time_do_not_restart_the_filter():
    """A coarse clock (15.6 ms on Windows) stamps two camera frames alike: each restart passed
    the raw points through, doubling the jitter (review 27)."""
    rng = np.random.default_rng(4)
    face = _face(rng)
    frames = [face + rng.normal(size=face.shape) * 0.5 for _ in range(60)]
    filt, tied = OneEuro(), OneEuro()
    smooth = np.array([filt(p, i / FPS, EYE) for i, p in enumerate(frames)])
    stamped = np.array([tied(p, (i // 2) * 2 / FPS, EYE) for i, p in enumerate(frames)])  # every time given twice
    jitter = [np.linalg.norm(np.diff(a[10:], axis=0), axis=2).mean() for a in (smooth, stamped, np.array(frames))]
    assert jitter[1] < 1.5 * jitter[0] < 0.75 * jitter[2]
