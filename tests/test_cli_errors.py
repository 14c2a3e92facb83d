"""What a user sees when something goes wrong on the command line: one line naming their file,
no hidden partial files, no native-library noise, and a true word on resuming."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_CLIP, DEMO_IMAGE
from tracker.cli import main

REPO = Path(__file__).resolve().parents[1]


def cli(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "run_tracker.py"), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), **kw)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]  # e.g. no [cnn] extra
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["bench", "--frames", "0"], ["bench", "--repeats", "0"], ["demo", "--threads", "0"], ["demo", "--threads", "-3"],
    ["images", "--input", ".", "--out", "x", "--threads", "two"], ["batch300vw", ".", "--out", "x", "--jobs", "0"],
    ["video", "x.mp4", "--csv", "x.csv", "--cnn-every", "-1"],
    # OpenCV crashes (a segfault) opening camera -1 where there is no camera
    ["viewer", "--device", "-1"], ["webcam", "--device", "-1"], ["transfer", "--texture", "t.png", "--target", "webcam", "--device", "-1"],
])
def test_bad_counts_are_usage_errors(argv, capsys):
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert argv[-2] in line


def test_bench_checks_its_json_path_before_the_run(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")

    def timed(*a, **k):
        raise AssertionError("the clip was read before the output was checked")

    monkeypatch.setattr("tracker.cli.bench.load_frames", timed)
    assert main(["bench", "--json", str(blocker / "bench.json")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(blocker / "bench.json") in line and ".tmp" not in line


def test_bench_json_never_replaces_the_clip_it_times(tmp_path, capsys):
    """`bench --video clip.mp4 --json clip.mp4` replaced the clip with a 2 KB JSON (review 26)."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(DEMO_CLIP.read_bytes())
    assert main(["bench", "--video", str(clip), "--json", str(clip), "--frames", "2"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--json {clip} is the --video clip" in line
    assert clip.read_bytes() == DEMO_CLIP.read_bytes()


def test_not_a_video_blames_the_input_once(tmp_path):
    fake = tmp_path / "x.jpg"
    fake.write_text("not an image")
    p = cli("video", str(fake), "--out", str(tmp_path / "v.mp4"), "--csv", str(tmp_path / "v.csv"))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2
    line = one_error_line(err)  # also: no FFmpeg "[mjpeg @ 0x...]" lines
    assert str(fake) in line and "v.mp4" not in line
    assert sorted(q.name for q in tmp_path.iterdir()) == ["x.jpg"]


def test_truncated_video_gives_one_line_without_ffmpeg_noise(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(DEMO_CLIP.read_bytes()[:5000])  # no moov atom: FFmpeg would print "moov atom not found"
    p = cli("video", str(cut), "--csv", str(tmp_path / "c.csv"))
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and str(cut) in one_error_line(err)


def test_video_ctrl_c_keeps_the_frames_done_and_does_not_promise_a_resume(tmp_path):
    """A file's outputs were deleted at Ctrl-C: an hour's tracking lost to stopping early (user
    test 18).  They hold the frames done, whole, and say they are not the whole video."""
    import json

    from tracker.video import _frames_in

    out, table, frames = tmp_path / "v.mp4", tmp_path / "f.csv", tmp_path / "f.json"
    p = cli("video", str(DEMO_CLIP), "--out", str(out), "--csv", str(table), "--json", str(frames), "--threads", "1")
    end = time.monotonic() + 120
    while not any(tmp_path.glob(".v.mp4.*densereg-tmp*")) and time.monotonic() < end and p.poll() is None:
        time.sleep(0.05)
    assert any(tmp_path.glob(".v.mp4.*densereg-tmp*")), "the video writer never started"
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "note: interrupted after frame" in err and "does not resume" in err and "rerun the same command to resume" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.csv", "f.json", "v.mp4"]  # no hidden partial file
    saved = json.loads(frames.read_text())
    done = len(saved["frames"])
    assert saved["complete"] is False and 0 < done < 150 and [f["frame"] for f in saved["frames"]] == list(range(1, done + 1))
    assert {int(r.split(",")[0]) for r in table.read_text().splitlines()[1:]} <= set(range(1, done + 1))
    assert _frames_in(out) == done and stdout.startswith(f"interrupted: {done} frames")


def _clip(path: Path, frames: int = 3) -> None:
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    images = [cap.read()[1] for _ in range(frames)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (images[0].shape[1], images[0].shape[0]))
    for image in images:
        writer.write(image)
    writer.release()


def test_batch300vw_without_annotations_says_there_is_nothing_to_score(tmp_path, capsys):
    (tmp_path / "root" / "001").mkdir(parents=True)
    _clip(tmp_path / "root" / "001" / "vid.avi")
    out = tmp_path / "out"
    assert main(["batch300vw", str(tmp_path / "root"), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "nan" not in stdout.lower()
    assert "001: 3 frames, no annotations: nothing to score" in stdout and "overall no annotations" in stdout
    summary = json.loads((out / "summary.json").read_text())  # strict JSON: null, never NaN
    assert summary["auc08"] is None and summary["annotated_frames"] == 0 and summary["frames"] == 3
    assert len(list((out / "001").glob("*.pts"))) == 3


def test_batch300vw_says_a_video_had_undecodable_frames_and_exits_1_as_video_does(tmp_path, capsys, corrupt_mjpeg_clip):
    """User test 38: frames passed undecodable said only in warnings, exit 0 (video: exit 1)."""
    (tmp_path / "root" / "001").mkdir(parents=True)
    corrupt_mjpeg_clip(tmp_path / "root" / "001" / "vid.avi")
    out = tmp_path / "out"
    assert main(["batch300vw", str(tmp_path / "root"), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 1
    captured = capsys.readouterr()
    assert "001: 12 frames, 1 frame skipped (the warnings say why), no annotations" in captured.out
    assert ("done: 1 video tracked, 0 already done, 0 skipped or failed; 1 of the videos with undecodable frames passed "
            "(their warnings, result.json's skipped_frames)") in captured.out
    assert "frame 7 of 12 could not be decoded" in captured.err
    result = json.loads((out / "001" / "result.json").read_text())
    assert result["frames"] == 12 and result["skipped_frames"] == 1
    assert json.loads((out / "summary.json").read_text())["skipped_frames"] == 1
    # resumed, it says so again (it exited 0 unsaid: review 38)
    assert main(["batch300vw", str(tmp_path / "root"), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 1
    assert "0 videos tracked, 1 already done, 0 skipped or failed; 1 of the videos with undecodable frames" in capsys.readouterr().out


def test_batch300vw_scores_a_clip_without_a_face_and_says_which_annotations_it_left_out(tmp_path, capsys):
    """No annotated frame with a face once crashed the closing line (a null NME); misnamed
    annotations scored AUC 0 without a word.  Annotations past the last decoded frame are failures,
    as ``eval`` counts them, and said (left out, a truncated video raised the score: user test 16)."""
    from tracker.pts import write_pts

    clip = tmp_path / "root" / "001"
    (clip / "annot").mkdir(parents=True)
    writer = cv2.VideoWriter(str(clip / "vid.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(3):
        writer.write(np.full((120, 160, 3), 90, np.uint8))  # no face
    writer.release()
    pts = np.stack([np.linspace(40, 120, 68), np.linspace(30, 90, 68)], 1)
    for name in ("000001.pts", "000003.pts", "000004.pts", "000005.pts", "00002.pts"):  # 4, 5: past the end
        write_pts(clip / "annot" / name, pts)
    out = tmp_path / "out"
    assert main(["batch300vw", str(tmp_path / "root"), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 0
    captured = capsys.readouterr()
    assert "001: 3 frames, AUC@0.08 0.0000" in captured.out
    assert "AUC@0.08 0.0000, FR@0.08 1.0000, NME - over 4 annotated frames (of 3 frames) (2 past the videos' ends)" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert any("1 annotation file not named as a frame's (first: 00002.pts" in w for w in warnings), warnings
    assert any("2 annotations past the video's last decoded frame (3): scored as missing" in w for w in warnings), warnings
    result = json.loads((out / "001" / "result.json").read_text())
    assert (result["annotated_frames"], result["missing"], result["annotations_past_end"]) == (4, 4, 2)


def test_full_disk_in_images_names_the_file_and_what_was_kept(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"a{i}.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    out = tmp_path / "out"
    real_fsync, calls = os.fsync, []

    def fsync(fd):  # the disk fills up on the 4th file written: a0.json, a0.pts, a1.json, [a1.pts]
        calls.append(fd)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["images", "--input", str(src), "--out", str(out), "--threads", "1"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{out / 'a1.pts'}: cannot write (No space left on device)" in line
    assert "1 image finished in this run" in line and "rerun the same command to resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["a0.json", "a0.pts", "a1.json"]  # no temporary file left

    monkeypatch.setattr(os, "fsync", real_fsync)  # space freed: the rerun resumes (a1 lacks its face's .pts: redone)
    assert main(["images", "--input", str(src), "--out", str(out), "--threads", "1"]) == 0
    assert "2 images processed, 1 already done" in capsys.readouterr().out


def test_every_project_error_is_a_tracker_error_and_keeps_its_builtin():
    """The CLI decides by ``TrackerError``; callers catching the builtins keep working."""
    from engines.base import EngineError
    from tracker.assets import AssetError
    from tracker.boxfile import BoxFileError
    from tracker.detector import BoxError
    from tracker.errors import MissingInputError, NotAFolderError, TrackerError, UsageError
    from tracker.fileio import ImageReadError, WriteError
    from tracker.pts import PtsError
    from tracker.video import VideoError

    for cls, builtin in ((ImageReadError, ValueError), (VideoError, ValueError), (PtsError, ValueError), (BoxError, ValueError),
                         (BoxFileError, ValueError), (UsageError, ValueError), (WriteError, OSError), (MissingInputError, FileNotFoundError),
                         (NotAFolderError, NotADirectoryError), (AssetError, RuntimeError), (EngineError, RuntimeError)):
        assert issubclass(cls, TrackerError) and issubclass(cls, builtin), cls


@pytest.mark.parametrize("bug", [KeyError("stages"), ValueError("operands could not be broadcast together"), OSError("bad fd")])
def test_a_bug_is_an_internal_error_not_a_usage_error(bug, tmp_path, monkeypatch, capsys):
    """A numpy ValueError or a KeyError inside a command is not the user's fault: exit 1 and
    one line saying so, with the traceback only under -v."""
    import tracker.cli.eval as eval_command

    def broken(args):
        raise bug

    monkeypatch.setattr(eval_command, "run", broken)
    argv = ["eval", "--pred", str(tmp_path), "--gt", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"internal error: {type(bug).__name__}: {bug} (rerun with -v for the traceback)"]
    assert main(["-v", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err and f"internal error: {type(bug).__name__}" in err


def test_missing_list_file_is_an_input_error(tmp_path, capsys):
    (tmp_path / "pred").mkdir()
    assert main(["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path), "--list", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: cannot read the list" in one_error_line(capsys.readouterr().err)


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`run_tracker eval ... | head`: once the reader has closed the pipe, the command stops with
    the status a shell gives a C tool killed by SIGPIPE, and prints no error of its own."""
    p = cli("version")
    p.stdout.close()  # before the command writes its first line (importing the engines takes longer)
    err = p.stderr.read()
    assert p.wait(timeout=60) == 141
    assert err == "", err


def test_no_command_lists_every_command_and_version_flag_works(capsys):
    assert main([]) == 2
    assert "webcam" in one_error_line(capsys.readouterr().err)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("densereg-tracker ")


def test_verbose_goes_before_or_after_the_command():
    from tracker.cli.app import build_parser

    ap = build_parser()
    assert [ap.parse_args(argv).verbose for argv in (["version"], ["-v", "version"], ["version", "-v"])] == [False, True, True]


def test_version_names_what_a_bug_report_needs(capsys):
    import tracker

    assert main(["version"]) == 0
    out = capsys.readouterr().out
    # where it runs from and which models: two checkouts printed the same line (user test 36)
    assert out.startswith(f"densereg-tracker {tracker.__version__} ({Path(tracker.__file__).resolve().parent}; models ")
    assert "\n  python 3." in out and "\n  numpy " in out and "\n  onnxruntime " in out and "opencv" in out
    assert "engine onnx: available" in out and "(the [cnn] extra): " in out


def test_one_stage_without_the_refiner_is_a_usage_error_before_any_folder_is_made(tmp_path, capsys):
    for argv in (["demo", "--out", str(tmp_path / "demo")], ["video", str(DEMO_CLIP), "--pts-dir", str(tmp_path / "pts")]):
        assert main([*argv, "--no-refine", "--one-stage"]) == 2
        assert "--no-refine" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # (demo_out/ was left in the working folder)


def test_demo_checks_its_output_folder_before_the_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")

    def refuse(*a, **k):
        raise AssertionError("the work started before the output was checked")

    monkeypatch.setattr("tracker.cli.demo.Tracker", refuse)
    assert main(["demo", "--out", str(tmp_path / "afile")]) == 2
    assert "afile: not a folder" in one_error_line(capsys.readouterr().err)


def test_install_hints_name_the_form_that_applies(monkeypatch):
    """The editable form in a checkout; by the package's name where it was installed from a wheel
    (the package in site-packages, no pyproject.toml beside it: ``tracker.assets.checkout_root``,
    which tests/test_training_workflow.py checks on a copy of the packages)."""
    import tracker.assets
    from tracker.assets import checkout_root
    from tracker.errors import install_hint

    assert checkout_root() == Path(__file__).resolve().parents[1]
    assert install_hint("ui") == "pip install -e '.[ui]'"  # this checkout
    monkeypatch.setattr(tracker.assets, "checkout_root", lambda: None)
    assert install_hint("ui") == "pip install 'densereg-tracker[ui]'"


def test_images_clears_the_temporary_files_a_killed_run_left(tmp_path):
    """SIGKILL during a write leaves its hidden temporary file; the rerun that resumes removes it
    (the kill-and-resume test met one in a fresh clone)."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "a.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    (out / "dlib").mkdir(parents=True)
    for stale in (out / ".a.json.k2j4x9ab.densereg-tmp", out / "dlib" / ".a.pts.q8w1cd_e.densereg-tmp"):
        stale.write_text("")
    (out / ".keep-me.txt").write_text("not ours")
    assert main(["images", "--input", str(src), "--out", str(out), "--threads", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".keep-me.txt", "a.json", "a.pts", "dlib"]
    assert list((out / "dlib").iterdir()) == []


def test_a_ctrl_c_while_the_app_loads_or_inside_a_native_import_is_an_interruption(monkeypatch, capsys, tmp_path):
    """User test 14: a Ctrl-C in the first second printed a KeyboardInterrupt traceback (the app
    loading), or "internal error: ImportError: initialization failed" when it landed inside ONNX
    Runtime's import; an early SIGTERM ended the process silently."""
    import tracker.cli.eval as eval_command

    def native_import(args):  # what a native module's init does with the KeyboardInterrupt
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setattr(eval_command, "run", native_import)
    assert main(["eval", "--pred", str(tmp_path), "--gt", str(tmp_path / "gt")]) == 130
    assert capsys.readouterr().err.startswith("interrupted")
    loading = ("import builtins, sys\nreal = builtins.__import__\n"
               "def load(name, *a, **k):\n    if name == 'tracker.cli.app':\n        raise KeyboardInterrupt\n    return real(name, *a, **k)\n"
               "builtins.__import__ = load\nfrom tracker.cli import main\nsys.exit(main(['version']))\n")
    done = subprocess.run([sys.executable, "-c", loading], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 130 and done.stderr == "interrupted while starting; nothing was done\n", done.stderr


def test_images_interrupted_says_how_many_pictures_it_finished(monkeypatch, capsys, tmp_path):
    """User test 38: a Ctrl-C while the models loaded said "finished outputs are kept" where
    nothing was written."""
    import tracker.cli.images as images_command

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        (src / f"a{i}.jpg").write_bytes(DEMO_IMAGE.read_bytes())

    def stop(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(images_command, "Tracker", stop)  # while the models load
        assert main(["images", "--input", str(src), "--out", str(tmp_path / "o"), "--threads", "1"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == ("interrupted before any image was done: this run wrote "
                                                                     "nothing (an earlier run's outputs are kept)")
    real, calls = images_command.frame_to_json, []

    def second_stops(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(images_command, "frame_to_json", second_stops)
    assert main(["images", "--input", str(src), "--out", str(tmp_path / "o"), "--threads", "1"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted; 1 image finished in this run and 0 before it are kept (rerun the same command to resume)")


def test_a_handled_ctrl_c_leaves_later_bugs_reported_as_bugs_and_an_ignored_one_ignored(monkeypatch, capsys, tmp_path):
    """Review 26: a camera run ends with a Ctrl-C that is handled; a flag kept from it reported a
    later bug as an interruption (exit 130, and no traceback under -v).  And a job started with
    SIGINT ignored (`cmd &` in a script) was interrupted all the same."""
    import tracker.cli.eval as eval_command

    def camera_then_bug(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        except KeyboardInterrupt:
            pass  # the camera's way to end
        raise RuntimeError("a bug after the run")

    monkeypatch.setattr(eval_command, "run", camera_then_bug)
    argv = ["eval", "--pred", str(tmp_path), "--gt", str(tmp_path / "gt")]
    assert main(argv) == 1
    assert "internal error: RuntimeError: a bug after the run" in capsys.readouterr().err

    def ignores_it(args):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        return 0

    monkeypatch.setattr(eval_command, "run", ignores_it)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(argv) == 0
    finally:
        signal.signal(signal.SIGINT, previous)


def test_images_skips_a_name_too_long_for_its_outputs_and_reads_past_loops_and_unreadable_pictures(tmp_path, monkeypatch, capsys):
    """User test 21: a legal picture name too long for ``<stem>_annotated.jpg`` stopped the run
    ("File name too long"), as did a symlink loop under ``--recursive`` and a JPEG header over
    OpenCV's pixel limit (both internal errors); a read-only ``--out`` holding an earlier run's
    outputs to replace was one too."""
    import struct

    src, out = tmp_path / "src", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    long_stem = "l" * 245
    for name in ("a.jpg", f"{long_stem}.jpg", "sub/z.jfif"):
        (src / name).write_bytes(DEMO_IMAGE.read_bytes())
    data = bytearray(DEMO_IMAGE.read_bytes())
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    (src / "b.jpg").write_bytes(bytes(data))
    (src / "sub" / "loop1.jpg").symlink_to(src / "sub" / "loop2.jpg")
    (src / "sub" / "loop2.jpg").symlink_to(src / "sub" / "loop1.jpg")
    assert main(["images", "--input", str(src), "--out", str(out), "--recursive", "--threads", "1", "--annotate"]) == 1
    captured = capsys.readouterr()
    skipped = sorted(line for line in captured.err.splitlines() if line.startswith("skipped: "))
    assert len(skipped) == 4 and "internal error" not in captured.err, captured.err
    assert f"{src / (long_stem + '.jpg')}: its name is too long for its outputs' names (245 bytes" in "".join(skipped)
    assert "over OpenCV's limit of 2^30 pixels" in "".join(skipped)
    assert "2 images processed" in captured.out  # a.jpg and the .jfif
    assert {p.name for p in out.rglob("*.json")} == {"a.json", "z.json"}

    def refused(self, missing_ok=False):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "unlink", refused)  # (root is never refused by a read-only folder)
    assert main(["images", "--input", str(src / "sub"), "--out", str(out / "sub"), "--threads", "1", "--overwrite"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("skipped: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {out / 'sub' / 'z.pts'}: cannot write (Permission denied)"), errors


def test_an_output_name_too_long_for_the_file_system_is_one_line_not_an_internal_error(tmp_path, capsys):
    """User test 37: a 256-byte output name said "internal error: OSError: [Errno 36] ..."."""
    long = "z" * 252
    for argv in (["video", str(DEMO_CLIP), "--csv", str(tmp_path / f"{long}.csv"), "--max-frames", "1"],
                 ["images", "--input", str(DEMO_IMAGE), "--out", str(tmp_path / (long + "zzzz"))]):
        assert main(argv + ["--threads", "1"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert ("name too long for the file system (a part of it is 256 bytes" in line or "cannot write (File name too long)" in line) \
            and "internal" not in line, line
    # (it said "invalid texture_path value"; 252-255 characters, too long only with .png added, a traceback: verify 38)
    for n in (300, 253):
        assert main(["transfer", "--texture", "t" * n, "--target", str(DEMO_IMAGE), "--out", str(tmp_path / "t.png")]) == 2
        assert f"argument --texture: {'t' * n}: File name too long" in one_error_line(capsys.readouterr().err)


def test_transfer_and_video_say_the_first_problem_plainly(tmp_path, capsys):
    """User test 37: transfer refused the output's kind before saying its target was missing,
    took a video for a broken picture as --source-face; a shell pattern's hint offered a folder
    that video refuses; a CSV under a file said "File exists"."""
    texture = ["transfer", "--texture", "grid"]
    cases = [(texture + ["--target", str(tmp_path / "gone.jpg"), "--out", str(tmp_path / "o.mp4")], "gone.jpg: file not found"),
             (["transfer", "--source-face", str(DEMO_CLIP), "--target", str(DEMO_IMAGE), "--out", str(tmp_path / "o.png")],
              "a video; give a photo of the face"),
             (["video", str(tmp_path / "*.jpg"), "--csv", str(tmp_path / "c.csv")], "is given as its printf pattern (frames/%06d.jpg)"),
             (["video", str(DEMO_CLIP), "--csv", str(tmp_path / "afile" / "c.csv")], "cannot write (" + str(tmp_path / "afile") + " is a file")]
    (tmp_path / "afile").write_text("x")
    for argv, says in cases:
        assert main(argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert says in line and "give the folder" not in line, line


def test_what_is_too_long_in_a_path_is_named_and_a_texture_name_too_long_is_one_line(tmp_path, capsys):
    """Review 37b: the message counted the last part even where a folder was the long one, and a
    --texture name too long for the file system was a traceback from argument parsing."""
    from tracker.cli.app import name_too_long

    assert "a part of it is 300 bytes" in name_too_long("o/" + "d" * 300 + "/x.csv")
    assert "path too long for the file system (4199 bytes)" in name_too_long("/".join(["d" * 199] * 21))
    missing = tmp_path / "gone.mp4"
    for argv in (["transfer", "--texture", "q" * 300, "--target", str(DEMO_IMAGE), "--out", str(tmp_path / "o.png")],
                 ["transfer", "--texture", "grid", "--target", str(missing), "--out", str(tmp_path / "new" / "o.mp4")]):
        assert main(argv) == 2
        line = one_error_line(capsys.readouterr().err)
        assert ("--texture" in line or "gone.mp4: file not found" in line) and "Traceback" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the missing target's --out folder was not made
