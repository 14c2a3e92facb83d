"""`batch300vw` rerun into the same --out: the options that decided the finished videos are
recorded and compared (a rerun with other ones is refused, not reported as its own), and a pool
worker that dies (kill -9, the OOM killer) costs its own video at most, not every one after it."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
from test_cli_errors import _clip, one_error_line

import tracker.batch
from tracker.cli import main

TRACK = tracker.batch.track_300vw_video


def _root(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """A tiny 300VW-style folder: NNN/vid.avi of 3 frames each, without annotations."""
    root = tmp_path / "root"
    for name in names:
        (root / name).mkdir(parents=True)
        _clip(root / name / "vid.avi")
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_rerun_with_other_options_is_refused_unless_overwrite(tmp_path, capsys):
    root, out = _root(tmp_path, ("001", "002")), tmp_path / "out"
    base = ["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0"]
    assert main(base) == 0
    summary = _json(out / "summary.json")
    assert summary["options"]["refine"] is True and summary["options"]["stills"] is False
    assert summary["complete"] is True and summary["missing"] == []
    assert _json(out / "001" / "result.json")["options"] == summary["options"]
    finished = _files(out)
    capsys.readouterr()

    # Each of these changes what is tracked: refused up front, in one line, nothing touched.
    for extra, says in ((["--no-refine"], "refine true -> false"), (["--stills"], "stills false -> true"),
                        (["--engine", "torch"], 'engine "auto" -> "torch"'), (["--one-stage"], "one-stage false -> true"),
                        (["--no-flip"], "flip true -> false"), (["--no-smooth"], "smooth true -> false"),
                        (["--max-faces", "1"], "max-faces 4 -> 1"), (["--no-fast-network"], "fast-network true -> false")):
        assert main(base + extra) == 2, extra
        captured = capsys.readouterr()
        line = one_error_line(captured.err)
        assert f"--out {out} holds 2 videos tracked with other options (001: {says} in this run)" in line, line
        assert "another --out" in line and "--overwrite" in line and captured.out == ""
    assert _files(out) == finished

    # These do not (how fast, or --flip's default for batch300vw said aloud): the rerun resumes.
    assert main(base + ["--jobs", "2", "--flip", "--fast-network"]) == 0
    assert "0 videos tracked, 2 already done" in capsys.readouterr().out

    # --overwrite redoes every video with this run's options, and the same command resumes after it.
    assert main(base + ["--no-refine", "--overwrite"]) == 0
    assert "2 videos tracked, 0 already done" in capsys.readouterr().out
    assert _json(out / "summary.json")["options"]["refine"] is False
    assert all(_json(out / n / "result.json")["options"]["refine"] is False for n in ("001", "002"))
    assert main(base + ["--no-refine"]) == 0
    assert "0 videos tracked, 2 already done" in capsys.readouterr().out


def test_killed_run_resumes_with_its_options_and_old_results_are_not_trusted(tmp_path, capsys):
    root, out = _root(tmp_path, ("001", "002")), tmp_path / "out"
    base = ["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0", "--stills"]
    assert main(base) == 0
    capsys.readouterr()
    shutil.rmtree(out / "002")  # as a killed run leaves it: 001 finished, 002 not
    assert main(base) == 0
    assert "1 video tracked, 1 already done" in capsys.readouterr().out

    # A result written by a version that did not record its options: its scores may be anyone's.
    result = out / "001" / "result.json"
    result.write_text(json.dumps({k: v for k, v in _json(result).items() if k != "options"}))
    assert main(base) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out {out} holds 1 video (e.g. 001) from an earlier version" in line and "--overwrite" in line
    assert main(base + ["--overwrite"]) == 0
    assert "2 videos tracked, 0 already done" in capsys.readouterr().out
    assert _json(result)["options"]["stills"] is True


class _Killed(BaseException):
    """What a SIGKILL of the whole run looks like from inside: nothing after it runs."""


def test_a_run_killed_midway_leaves_a_summary_of_the_videos_it_finished(tmp_path, monkeypatch):
    """The summary was written at the start and the end only: a run killed after two of four
    videos left one listing all four as missing (user test 22)."""
    root, out = _root(tmp_path, ("001", "002", "003")), tmp_path / "out"

    def track(job, on_frames=None):
        if job.name == "002":
            raise _Killed
        return TRACK(job, on_frames)

    monkeypatch.setattr(tracker.batch, "track_300vw_video", track)
    with pytest.raises(_Killed):
        main(["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0"])
    summary = _json(out / "summary.json")
    assert summary["complete"] is False and list(summary["videos"]) == ["001"] and summary["missing"] == ["002", "003"]


# --- a pool worker that dies ----------------------------------------------------------------------

# Set by the test before the pool forks its workers: video -> how many of its attempts die, and
# the folder where each death is counted (the attempts run in different processes).
DEATHS: dict = {"videos": {}, "marks": None}


def _track_or_die(job, on_frames=None):
    """``track_300vw_video``, whose worker is killed (SIGKILL, as by the OOM killer) mid-video,
    its frames written, on the first DEATHS["videos"][name] attempts at a video."""

    def frames(k: int) -> None:
        deaths = len(list(DEATHS["marks"].glob(f"{job.name}.*")))
        if deaths < DEATHS["videos"].get(job.name, 0):
            (DEATHS["marks"] / f"{job.name}.{deaths}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        on_frames(k)

    return TRACK(job, frames)


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the workers inherit the test's hook by forking")
def test_a_dead_worker_fails_its_own_video_only_and_the_summary_says_so(tmp_path, monkeypatch, capsys):
    root, out = _root(tmp_path, ("001", "002", "003", "004")), tmp_path / "out"
    (tmp_path / "marks").mkdir()
    monkeypatch.setattr(tracker.batch, "track_300vw_video", _track_or_die)
    monkeypatch.setitem(DEATHS, "videos", {"002": 2, "003": 1})  # 002 dies on both attempts, 003 on its first
    monkeypatch.setitem(DEATHS, "marks", tmp_path / "marks")
    argv = ["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0", "--jobs", "2"]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "002: failed: its worker process died (killed, or out of memory); rerun to retry" in text, text
    assert "BrokenProcessPool" not in text and text.count(": failed") == 1
    assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == ["002.0", "002.1", "003.0"]
    assert "3 videos tracked, 0 already done, 1 skipped or failed (rerun to retry); overall no annotations" in text  # (none scored)
    summary = _json(out / "summary.json")
    assert summary["complete"] is False and summary["missing"] == ["002"] and set(summary["videos"]) == {"001", "003", "004"}
    assert not (out / "002").exists() and not list(out.glob(".*"))  # the dead attempts' frames are cleared

    assert main(argv) == 0  # 002 has used up its deaths: the rerun does it, and only it
    text = capsys.readouterr().out
    assert "1 video tracked, 3 already done" in text and "overall no annotations" in text
    summary = _json(out / "summary.json")
    assert summary["complete"] is True and summary["missing"] == [] and len(summary["videos"]) == 4


def test_ray_address_without_a_cluster_is_one_usage_line(tmp_path, monkeypatch, capsys):
    """`--ray auto` with no cluster running read "internal error: ConnectionError" (review 26)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (the cluster extra)")

    def no_cluster(*a, **k):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.\nmore lines")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    root = _root(tmp_path, ("001",))
    assert main(["batch300vw", str(root), "--out", str(tmp_path / "out"), "--ray", "auto"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == "error: --ray auto: Could not find any running Ray instance. Please specify the one to connect to."


def test_a_folder_whose_video_has_another_name_is_named_not_left_out_unseen(tmp_path, capsys):
    """User test 13: NNN/video.mp4 (not vid.*) was left out without a word."""
    root = _root(tmp_path, ("001",))
    (root / "002").mkdir()
    _clip(root / "002" / "video.avi")
    assert main(["batch300vw", str(root), "--out", str(tmp_path / "out"), "--threads", "1", "--cnn-every", "0"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {root / '002'}: holds video.avi but no vid.* video" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["001"]


def test_a_video_link_to_nowhere_is_a_video_that_fails_not_none(tmp_path, capsys):
    """NNN/vid.avi linking to an unmounted drive vanished from the batch (summary "complete": true; review 26)."""
    root = _root(tmp_path, ("001",))
    (root / "002").mkdir()
    (root / "002" / "vid.avi").symlink_to(tmp_path / "unmounted" / "vid.avi")
    assert main(["batch300vw", str(root), "--out", str(tmp_path / "out"), "--threads", "1", "--cnn-every", "0"]) == 1
    assert "002: skipped" in capsys.readouterr().out
    summary = _json(tmp_path / "out" / "summary.json")
    assert summary["complete"] is False and summary["missing"] == ["002"]


def test_a_second_batch_run_into_the_same_out_is_refused_while_the_first_runs(tmp_path, capsys):
    """Two runs with other options into one --out each took videos the other tracked as its own
    (user test 22): the second is refused in one line, before any work."""
    from tracker.cli import main
    from tracker.fileio import exclusive_use

    root, out = tmp_path / "root", tmp_path / "out"
    (root / "001").mkdir(parents=True)
    _clip(root / "001" / "vid.avi", 2)
    out.mkdir()
    with exclusive_use(out, "batch300vw"):  # the first run, still going
        assert main(["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {out} is in use by another batch300vw run: wait for it to end, or choose another folder"
    assert main(["batch300vw", str(root), "--out", str(out), "--threads", "1", "--cnn-every", "0"]) == 0  # once the first has ended
    assert "in use" not in capsys.readouterr().err


def test_the_folder_lock_is_taken_on_the_file_named_so_not_on_one_a_run_ending_unlinked(tmp_path, monkeypatch):
    """A run ending unlinks its lock file: one that opened it just before locked the nameless
    file, and a third run made and locked a new one: both ran into the same folder (review 36)."""
    import os

    from tracker.errors import UsageError
    from tracker.fileio import exclusive_use

    opened = os.open

    def open_then_unlinked(path, *a):  # the first open: of the file the ending run unlinks next
        fd = opened(path, *a)
        monkeypatch.setattr(os, "open", opened)
        os.unlink(path)
        return fd

    monkeypatch.setattr(os, "open", open_then_unlinked)
    with exclusive_use(tmp_path, "batch300vw"):
        assert (tmp_path / ".batch300vw.lock").exists()
        with pytest.raises(UsageError, match="in use by another batch300vw run"), exclusive_use(tmp_path, "batch300vw"):
            pass
