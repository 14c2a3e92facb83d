"""The plain runtime install (`pip install -e .`) in a subprocess: a Python in which the packages
that only the extras bring cannot be imported (a None entry in sys.modules makes `import` fail
and `find_spec` return None, as if they were not installed).  Every command a runtime-only user
runs must work or say in one line what to install, never end in a traceback; and the runtime
path must not import torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tracker.assets import DEMO_CLIP, DEMO_IMAGE
from tracker.cli import main
from tracker.detector import cnn_available

REPO = Path(__file__).resolve().parents[1]
# Brought by the extras (cnn, train, dev, ui), not by the runtime dependencies.
EXTRAS_ONLY = ("face_recognition_models", "pkg_resources", "torch", "onnx", "matplotlib", "eos", "PyQt5")
RUNTIME_ONLY = ("import sys\n"
                f"for name in {EXTRAS_ONLY!r}:\n"
                "    sys.modules[name] = None\n"
                "from tracker.cli import main\n"
                "raise SystemExit(main(sys.argv[1:]))\n")


def run_runtime_only(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", RUNTIME_ONLY, *argv], capture_output=True, text=True, env=env, timeout=600)


def test_the_simulation_hides_the_extras():
    probe = subprocess.run([sys.executable, "-c", RUNTIME_ONLY.split("from tracker")[0] +
                            "from tracker.detector import cnn_available\n"
                            "from importlib.util import find_spec\n"
                            "print(cnn_available(), find_spec('torch'))\n"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert probe.stdout.split() == ["False", "None"], probe.stderr


def test_bench_times_the_tracker_alone_with_a_note(tmp_path):
    out = tmp_path / "bench.json"
    r = run_runtime_only("bench", "--frames", "3", "--repeats", "1", "--threads", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "dlib not timed" in notes[0] and "[cnn]" in notes[0]
    assert "dlib not timed" in r.stdout and "tracker total" in r.stdout
    result = json.loads(out.read_text())
    assert result["dlib_hog_plus_68"] is None and result["speedup_vs_dlib"] is None and result["frames"] == 3


def test_images_baseline_dlib_says_what_to_install(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    r = run_runtime_only("images", "--input", str(src), "--out", str(tmp_path / "out"), "--baseline", "dlib", "--threads", "1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --baseline dlib needs") and "pip install -e '.[cnn]'" in lines[0], r.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


def test_images_and_video_note_the_missing_cnn_once(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes(DEMO_IMAGE.read_bytes())
    r = run_runtime_only("images", "--input", str(src), "--out", str(tmp_path / "out"), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stderr.splitlines() if "CNN" in line] == [r.stderr.strip().splitlines()[0]]
    assert "[cnn]" in r.stderr and (tmp_path / "out" / "b.pts").exists()

    clip = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = [cap.read()[1] for _ in range(4)]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    r = run_runtime_only("video", str(clip), "--csv", str(tmp_path / "a.csv"), "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert sum("CNN" in line for line in r.stderr.splitlines()) == 1 and "--cnn-every 0" in r.stderr
    r = run_runtime_only("video", str(clip), "--csv", str(tmp_path / "b.csv"), "--threads", "1", "--cnn-every", "0")
    assert r.returncode == 0 and "CNN" not in r.stderr, r.stderr


@pytest.mark.skipif(not cnn_available(), reason="face-recognition-models not installed here")
def test_with_the_cnn_extra_there_is_no_note(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    assert main(["images", "--input", str(src), "--out", str(tmp_path / "o"), "--threads", "1"]) == 0
    assert "note:" not in capsys.readouterr().err
