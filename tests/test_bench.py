"""`bench`: the op profile, the start-up row, the MediaPipe baseline's worker, the two-face clip."""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tracker.cli import main
from tracker.opprofile import OUTSIDE_KERNELS, summarise
from tracker.pipeline import FAST_DENSEREG_ASSET
from tracker.refiner import DEFAULT_REFINERS, int8_variant

MODELS = (FAST_DENSEREG_ASSET, *map(int8_variant, DEFAULT_REFINERS))  # what ONNX Runtime runs on video


def _profile_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("densereg-profile-*")}


def test_bench_profile_table_and_json_for_every_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # ONNX Runtime would write its trace here by default
    before = _profile_dirs()
    out = tmp_path / "b.json"
    assert main(["bench", "--mediapipe-python", str(tmp_path / "no-such-python")]) == 2  # asked for, absent: before the run
    assert "no-such-python: no such program" in capsys.readouterr().err
    python = tmp_path / "python-without-mediapipe"  # there, but unusable: a note, the others are timed
    python.write_text("#!/bin/sh\necho 'No module named mediapipe' >&2\nexit 1\n")
    python.chmod(0o755)
    rc = main(["bench", "--frames", "6", "--repeats", "1", "--threads", "1", "--profile", "--json", str(out),
               "--mediapipe-python", str(python)])
    python.unlink()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert [line for line in captured.err.splitlines() if "MediaPipe" in line] == [
        "note: MediaPipe not timed: MediaPipe worker exited (No module named mediapipe)"]
    for name in MODELS:
        # 6 frames and the new face's run from its landmarks' crop on the first (``Tracker._surviving``): 7 calls, the first left out
        assert f"\n{name}: 6 calls, " in captured.out
    assert captured.out.count("op type") == len(MODELS) and "Conv" in captured.out
    assert "start-up, fresh process:" in captured.out

    result = json.loads(out.read_text())
    assert set(result["profile"]) == set(MODELS)
    for p in result["profile"].values():
        assert p["calls"] == 6 and p["skipped_calls"] == 1
        ops = {o["op"]: o for o in p["ops"]}
        assert "Conv" in ops
        assert sum(o["percent"] for o in p["ops"]) == pytest.approx(100.0, abs=0.01)
        assert sum(o["ms_per_call"] for o in p["ops"]) == pytest.approx(p["ms_per_call"], rel=1e-6)
        assert [o["percent"] for o in p["ops"]] == sorted((o["percent"] for o in p["ops"]), reverse=True)
    s = result["startup"]
    assert 0 < s["import_s"] + s["construct_s"] < s["process_s"]
    assert set(s["construct_ms"]) == {"verify assets", "network sessions", "template + UV table", "face detector"}
    assert result["mediapipe_face_mesh"] is None and result["speedup_vs_mediapipe"] is None
    assert result["faces_per_frame"]["tracker"] == 1.0
    # ONNX Runtime's trace files are gone: none in the working folder, no temporary folder left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
    assert _profile_dirs() <= before


def test_bench_without_profile_has_no_profile_key(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--frames", "2", "--repeats", "1", "--threads", "1", "--json", str(out)]) == 0
    assert "op type" not in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert "profile" not in saved and saved["machine"].endswith(f", {os.cpu_count()} CPUs")


def test_a_timing_names_the_cpu_model_where_the_system_gives_it(tmp_path):
    from tracker.timing import machine

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n")
    assert machine(info).startswith("AMD EPYC 7B13 (") and machine(info).endswith(f"), {os.cpu_count()} CPUs")
    assert machine(tmp_path / "absent").endswith(f", {os.cpu_count()} CPUs")  # not Linux: the architecture alone


def _event(name: str, ts: int, dur: int, op: str | None = None) -> dict:
    if op is None:
        return {"cat": "Session", "name": name, "ts": ts, "dur": dur}
    return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_summarise_leaves_out_the_first_call_and_accounts_for_every_microsecond():
    events = [
        _event("session_initialization", 0, 500),
        _event("model_run", 1000, 900), _event("conv1", 1010, 800, "Conv"),  # first call: left out
        _event("model_run", 3000, 100), _event("conv1", 3005, 60, "Conv"), _event("add", 3070, 20, "Add"),
        _event("model_run", 4000, 100), _event("conv1", 4005, 50, "Conv"), _event("add", 4060, 30, "Add"),
    ]
    s = summarise(events)
    assert s["calls"] == 2 and s["skipped_calls"] == 1 and s["ms_per_call"] == pytest.approx(0.1)
    ops = {o["op"]: o for o in s["ops"]}
    assert ops["Conv"]["percent"] == pytest.approx(55.0) and ops["Conv"]["ms_per_call"] == pytest.approx(0.055)
    assert ops["Add"]["percent"] == pytest.approx(25.0)
    assert ops[OUTSIDE_KERNELS]["percent"] == pytest.approx(20.0)
    assert [o["op"] for o in s["ops"]] == ["Conv", "Add", OUTSIDE_KERNELS]
    # A single call is kept rather than leaving nothing; no call at all is said so.
    one = summarise(events[:3])
    assert one["calls"] == 1 and one["skipped_calls"] == 0 and one["ops"][0]["op"] == "Conv"
    assert s["kernels_per_call"] == 2
    assert summarise(events[:1]) == {"calls": 0, "skipped_calls": 0, "ms_per_call": None, "kernels_per_call": None, "ops": []}


def test_mediapipe_worker_without_mediapipe_is_one_line():
    from tracker.mediapipe_baseline import MediaPipeError, MediaPipeFaceMesh

    with pytest.raises(MediaPipeError, match=r"no usable mediapipe with Face Mesh \(ModuleNotFoundError"):
        MediaPipeFaceMesh(Path(sys.executable))


def test_a_mediapipe_worker_dying_mid_run_is_dropped_with_a_note(tmp_path, capsys):
    import numpy as np

    from tracker.mediapipe_baseline import MediaPipeFaceMesh
    from tracker.timing import time_mediapipe

    fake = tmp_path / "python"  # says it is ready, then dies as a crashing worker would
    fake.write_text("#!/bin/sh\necho '{\"ready\": \"fake\"}'\necho 'Fatal Python error: Segmentation fault' >&2\nexit 139\n")
    fake.chmod(0o755)
    with MediaPipeFaceMesh(fake) as mesh:
        assert mesh.version == "fake"
        assert time_mediapipe(mesh, [np.zeros((48, 64, 3), np.uint8)] * 3) is None
    assert capsys.readouterr().err == ("note: MediaPipe dropped from the run: MediaPipe worker exited "
                                       "(Fatal Python error: Segmentation fault)\n")


@pytest.mark.skipif(not os.environ.get("MEDIAPIPE_PYTHON"),
                    reason="set MEDIAPIPE_PYTHON to a Python with mediapipe==0.10.21 (README: Speed) to test the Face Mesh baseline")
def test_mediapipe_worker_times_face_mesh_on_the_demo_frames():
    import cv2

    from tracker.assets import DEMO_IMAGE
    from tracker.mediapipe_baseline import MediaPipeFaceMesh

    image = cv2.imread(str(DEMO_IMAGE))
    with MediaPipeFaceMesh(Path(os.environ["MEDIAPIPE_PYTHON"])) as mesh:
        assert mesh.version.startswith("mediapipe 0.10")
        first = [mesh.process(image) for _ in range(3)]
        mesh.reset()
        assert mesh.process(image)[1] == 1
        assert mesh.process(image[:100, :100].copy())[1] == 0  # no face in a corner of the background
    assert all(ms > 0 and faces == 1 for ms, faces in first)


@pytest.fixture(scope="module")
def two_face_clip(tmp_path_factory) -> Path:
    from tracker.tools.democlip import TWO_FACE_ARGS
    from tracker.tools.democlip import main as make_clip

    out = tmp_path_factory.mktemp("clip") / "two_faces.mp4"
    assert make_clip([*TWO_FACE_ARGS, "--out", str(out)]) == 0
    return out


def test_the_two_face_clip_yields_two_tracks(two_face_clip):
    from tracker.pipeline import Tracker, TrackerConfig
    from tracker.video import open_video, read_frames

    cap, info = open_video(two_face_clip)
    assert (info.width, info.height, info.frames) == (640, 480, 150)
    tracker = Tracker(TrackerConfig(mode="video", threads=1))
    ids = []
    for _, frame in zip(range(20), read_frames(cap, ahead=2)):
        faces = tracker.track(frame).faces
        ids.append(tuple(sorted(f.track_id for f in faces)))
    assert len(ids) == 20
    assert set(ids) == {ids[0]} and len(ids[0]) == 2  # both faces, the same two tracks, in every frame


def test_region_errors_leave_missing_points_out():
    from benchmarks.val_configs import region_errors
    from tracker.metrics import REGIONS

    assert sorted(i for idx in REGIONS.values() for i in idx) == list(range(68))
    gt = np.zeros((68, 2))
    gt[36], gt[45] = (0.0, 0.0), (10.0, 0.0)  # eye distance 10
    pred = gt.copy()
    pred[0:17, 1] += 1.0  # the jaw 0.1 eye distances off
    pred[0] = np.nan  # a missing jaw point does not count
    pred[17:27] = np.nan  # all brows missing: NaN, not 0
    got = region_errors(pred, gt)
    assert got["jaw"] == pytest.approx(0.1) and np.isnan(got["brows"]) and got["eyes"] == 0.0
