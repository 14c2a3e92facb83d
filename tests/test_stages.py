"""Stages by name: the ``Stage`` enum, ``FaceResult.final``, and video smoothing as its own
stage after the refiner (so exported ``stages["mdm"]`` are the refiner's output)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tracker import Stage, Tracker, TrackerConfig
from tracker.assets import DEMO_CLIP
from tracker.video import open_video, read_frames
from tracker.writers import face_to_json


def _first_frames(config: TrackerConfig, n: int = 2, times: list[float] | None = None) -> list:
    tracker = Tracker(config)
    cap, _ = open_video(DEMO_CLIP)
    frames = read_frames(cap)
    try:
        return [tracker.track(frame, timestamp=times[i] if times else None).faces[0] for i, frame in zip(range(n), frames)]
    finally:
        frames.close()


def test_stage_names_are_their_json_keys():
    assert [s.value for s in Stage] == ["densereg", "pca", "mdm", "smooth"]
    assert Stage.MDM == "mdm" and f"{Stage.MDM}" == "mdm" and json.dumps({Stage.PCA: 1}) == '{"pca": 1}'


@pytest.fixture(scope="module")
def smoothed_and_raw():
    return (_first_frames(TrackerConfig(mode="video", threads=1)),
            _first_frames(TrackerConfig(mode="video", threads=1, smooth=False)))


def test_video_smoothing_is_its_own_stage_after_the_refiner(smoothed_and_raw):
    smoothed, raw = smoothed_and_raw
    for s, r in zip(smoothed, raw):
        assert list(s.stages) == [Stage.DENSEREG, Stage.PCA, Stage.MDM, Stage.SMOOTH] and s.final_stage == Stage.SMOOTH
        assert list(r.stages) == [Stage.DENSEREG, Stage.PCA, Stage.MDM] and r.final_stage == Stage.MDM
        assert s.final is s.stages[Stage.SMOOTH] and s.landmarks is s.final.points
    # The second frame has the same crop in both runs (the filter passes its first input
    # through), so the refiner's points are identical and the smoothed ones differ.
    np.testing.assert_allclose(smoothed[1].stages[Stage.MDM].points, raw[1].stages[Stage.MDM].points, atol=1e-6)
    assert np.abs(smoothed[1].stages[Stage.SMOOTH].points - smoothed[1].stages[Stage.MDM].points).max() > 0.05
    exported = face_to_json(smoothed[1])["stages"]
    assert list(exported) == ["densereg", "pca", "mdm", "smooth"]
    np.testing.assert_allclose(exported["mdm"]["points"], raw[1].stages["mdm"].points, atol=2e-3)


def test_video_smoothing_goes_by_the_frames_time(smoothed_and_raw):
    """No timestamp is 30 fps; the same second frame 1/15 s later is smoothed less (the filter
    works in seconds), its refiner's points the same."""
    smoothed, _ = smoothed_and_raw
    config = TrackerConfig(mode="video", threads=1)
    at_30, at_15 = _first_frames(config, times=[10.0, 10 + 1 / 30]), _first_frames(config, times=[0.0, 1 / 15])
    np.testing.assert_allclose(at_30[1].landmarks, smoothed[1].landmarks, atol=1e-9)
    np.testing.assert_allclose(at_15[1].stages[Stage.MDM].points, smoothed[1].stages[Stage.MDM].points, atol=1e-6)

    def pull(face):  # how far the filter held the points back from the refiner's
        return np.abs(face.landmarks - face.stages[Stage.MDM].points).mean()

    assert pull(at_15[1]) < 0.9 * pull(smoothed[1])  # (0.81 of it since session 28's landmark targets, 0.8 was the bound)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "soon"])
def test_a_timestamp_that_is_not_a_number_of_seconds_is_one_line_and_leaves_the_tracker_working(bad):
    """A NaN once made every later frame's points NaN, and each frame raised (user test 15)."""
    from tracker.errors import InputError

    tracker = Tracker(TrackerConfig(mode="video", threads=1))
    cap, _ = open_video(DEMO_CLIP)
    frames = read_frames(cap)
    try:
        first, second = next(frames), next(frames)
    finally:
        frames.close()
    assert tracker.track(first, timestamp=0.0).faces
    with pytest.raises(InputError, match="^timestamp must be a (finite )?number of seconds, got"):
        tracker.track(second, timestamp=bad)
    assert np.isfinite(tracker.track(second, timestamp=1 / 30).faces[0].landmarks).all()


def test_image_mode_ends_with_the_refiner_or_pca():
    cap, _ = open_video(DEMO_CLIP)
    frames = read_frames(cap)
    frame = next(frames)
    frames.close()
    for refine, final in ((True, Stage.MDM), (False, Stage.PCA)):
        face = Tracker(TrackerConfig(threads=1, refine=refine, cnn_fallback=False)).track(frame).faces[0]
        assert face.final_stage == final and Stage.SMOOTH not in face.stages and face.landmarks is face.stages[final].points
