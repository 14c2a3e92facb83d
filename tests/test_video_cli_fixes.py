"""`video`, `transfer` and `batch300vw` on the problems a first-time user hit: outputs checked before
the run, a `--pts-dir` that holds this run's frames only, pictures and folders given as videos, and
SIGTERM cleaning up as Ctrl-C does."""
from __future__ import annotations

import csv
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
from test_cli_errors import _clip, cli, one_error_line

from tracker.assets import DEMO_CLIP, DEMO_IMAGE
from tracker.cli import main
from tracker.cli.stream import FrameOutputs
from tracker.fileio import WriteError, atomic_file
from tracker.sources import spec_from_argument
from tracker.video import AtomicVideoWriter

TEXTURE = Path(__file__).resolve().parents[1] / "tracker" / "assets" / "textures" / "facepaint.png"


def _no_tracking(monkeypatch, module: str, name: str) -> None:
    def refuse(*a, **k):
        raise AssertionError("the work started before the output was checked")

    for where in [module] + (["stream"] if name == "Tracker" else []):  # video's and transfer's runs make theirs in tracker.cli.stream
        if where != "video" or name != "Tracker":
            monkeypatch.setattr(f"tracker.cli.{where}.{name}", refuse)


def _noise_clip(path: Path, frames: int = 4) -> None:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


# --- 4: video --out that is a folder ---------------------------------------------------------------

def test_video_out_that_is_a_folder_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    _clip(tmp_path / "c.avi")
    (tmp_path / "vid.mp4").mkdir()
    monkeypatch.chdir(tmp_path)
    _no_tracking(monkeypatch, "video", "Tracker")
    assert main(["video", "c.avi", "--out", "vid.mp4"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "vid.mp4: cannot write (it is a folder)" in line and "partial" not in line
    assert _hidden(tmp_path) == [] and list((tmp_path / "vid.mp4").iterdir()) == []


def test_transfer_out_that_is_a_folder_is_refused_before_the_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "k.mp4").mkdir()
    _no_tracking(monkeypatch, "transfer", "Tracker")
    assert main(["transfer", "--texture", str(TEXTURE), "--target", str(DEMO_CLIP), "--out", str(tmp_path / "k.mp4")]) == 2
    assert "k.mp4: cannot write (it is a folder)" in one_error_line(capsys.readouterr().err)
    assert _hidden(tmp_path) == []


def test_transfer_to_a_grey_only_picture_kind_is_refused_before_the_work_and_jfif_is_written(tmp_path, monkeypatch, capsys):
    """``--out x.pgm`` failed after the work (PGM holds grey only); a .jfif could not be encoded (user test 23)."""
    from tracker.fileio import atomic_write_image, read_image

    _no_tracking(monkeypatch, "transfer", "Tracker")
    for name in ("x.pgm", "x.pbm"):
        assert main(["transfer", "--texture", str(TEXTURE), "--target", str(DEMO_IMAGE), "--out", str(tmp_path / name)]) == 2
        assert "must be a colour picture" in one_error_line(capsys.readouterr().err)
    picture = read_image(DEMO_IMAGE)
    atomic_write_image(tmp_path / "x.jfif", picture)
    assert read_image(tmp_path / "x.jfif").shape == picture.shape


def test_video_writer_that_cannot_rename_names_the_target_and_leaves_no_hidden_file(tmp_path):
    target = tmp_path / "v.mp4"
    writer = AtomicVideoWriter(target, 25, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    target.mkdir()  # appears while the clip is being tracked
    with pytest.raises(WriteError, match="v.mp4: cannot write"):
        writer.close()
    assert _hidden(tmp_path) == []



def test_a_video_cut_short_by_the_disk_is_an_error_not_a_file(tmp_path):
    """cv2.VideoWriter ignores failed writes: a full disk left an MP4 without its index under the
    final name and "wrote v.mp4".  A file-size limit makes the writes fail here without root."""
    code = (
        "import resource, signal, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from tracker.video import AtomicVideoWriter\n"
        "from tracker.fileio import WriteError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))\n"
        "noise = np.random.default_rng(0).integers(0, 255, (30, 240, 320, 3), dtype=np.uint8)\n"
        "try:\n"
        "    with AtomicVideoWriter(Path(sys.argv[1]), 25, (320, 240)) as w:\n"
        "        [w.write(f) for f in noise]\n"
        "except WriteError as e:\n"
        "    print(e)\n"
    )
    target = tmp_path / "v.mp4"
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert done.stdout.strip().startswith(f"{target}: cannot write (") and "incomplete" in done.stdout, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


def test_video_output_must_be_a_container_the_writer_fills(tmp_path, capsys):
    for name in ("v.jpg", "v.webm", "v"):
        assert main(["video", str(DEMO_CLIP), "--out", str(tmp_path / name)]) == 2
        assert "an output video must be one of .mp4, .avi" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []

# --- 10: --pts-dir holds this run's frames only ---------------------------------------------------

def test_pts_dir_with_frame_files_is_refused_and_a_new_one_exists_without_faces(tmp_path, capsys):
    clip = tmp_path / "noise.avi"
    _noise_clip(clip)
    old = tmp_path / "old"
    old.mkdir()
    for i in range(1, 8):  # an earlier clip's frames, or a 300VW clip's annotations: not ours to delete
        (old / f"{i:06d}.pts").write_text("an earlier clip's face")
    (old / "notes.txt").write_text("the user's")
    csv = tmp_path / "f.csv"
    assert main(["video", str(clip), "--pts-dir", str(old), "--csv", str(csv), "--cnn-every", "0"]) == 2
    assert "already holds 7 frame files (000001.pts" in one_error_line(capsys.readouterr().err)
    assert len(list(old.iterdir())) == 8 and not csv.exists()  # refused before any work: nothing touched

    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("notes.txt", "my.pts", "frame_000001.pts", "00001.pts"):  # not names `video` writes: no conflict
        (mine / name).write_text("the user's")
    assert main(["video", str(clip), "--pts-dir", str(mine), "--csv", str(csv), "--cnn-every", "0"]) == 0
    assert f"wrote {csv}, 0 .pts in {mine}" in capsys.readouterr().out  # every output named, not only the .mp4
    assert len(list(mine.iterdir())) == 4

    fresh = tmp_path / "fresh" / "pts"
    assert main(["video", str(clip), "--pts-dir", str(fresh), "--cnn-every", "0"]) == 0
    assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_pts_dir_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys):
    _clip(tmp_path / "c.avi")
    (tmp_path / "afile").write_text("x")
    _no_tracking(monkeypatch, "video", "Tracker")
    assert main(["video", str(tmp_path / "c.avi"), "--pts-dir", str(tmp_path / "afile")]) == 2
    assert "afile: not a folder" in one_error_line(capsys.readouterr().err)


# --- 11: batch300vw --out checked up front --------------------------------------------------------

@pytest.mark.parametrize("out", ["afile", "afile/sub"])
def test_batch300vw_unusable_out_is_one_line_before_any_video(tmp_path, monkeypatch, capsys, out):
    (tmp_path / "root" / "001").mkdir(parents=True)
    _clip(tmp_path / "root" / "001" / "vid.avi")
    (tmp_path / "afile").write_text("x")
    _no_tracking(monkeypatch, "batch300vw", "local_outcomes")
    assert main(["batch300vw", str(tmp_path / "root"), "--out", str(tmp_path / out)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert str(tmp_path / out) in line and "partial" not in line and captured.out == ""


# --- 12: a picture or a folder given to video ------------------------------------------------------

def test_video_refuses_a_picture_and_a_folder_but_reads_a_one_frame_clip(tmp_path, capsys):
    cut = tmp_path / "truncated.jpg"
    cut.write_bytes(DEMO_IMAGE.read_bytes()[: DEMO_IMAGE.stat().st_size // 3])
    for given, says in ((cut, "not a video (run_tracker images reads pictures)"), (tmp_path, "is a folder")):
        assert main(["video", str(given), "--csv", str(tmp_path / "q.csv")]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(given) in line and says in line
    assert not (tmp_path / "q.csv").exists()
    _clip(tmp_path / "one.avi", frames=1)
    assert main(["video", str(tmp_path / "one.avi"), "--csv", str(tmp_path / "q.csv"), "--cnn-every", "0"]) == 0
    assert len((tmp_path / "q.csv").read_text().splitlines()) == 2  # the header and the astronaut


def test_transfer_reads_a_webp_target_as_a_picture():
    assert spec_from_argument("face.webp").kind == "image" and spec_from_argument("clip.mp4").kind == "video"


# --- 13: SIGTERM takes Ctrl-C's path ---------------------------------------------------------------

def _interrupt_when(p, ready, what: str, send=None) -> str:
    """Wait until ``ready()``, then SIGTERM the command (or ``send()``); its stderr, once it has exited as Ctrl-C does."""
    end = time.monotonic() + 120
    while not ready() and time.monotonic() < end and p.poll() is None:
        time.sleep(0.05)
    assert ready(), f"{what} never started"
    time.sleep(0.3)
    (send or (lambda: p.send_signal(signal.SIGTERM)))()
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # a hung command is the failure, not a process left running (user test 20)
        p.kill()
        p.communicate()
        raise
    assert p.returncode == 130, err
    return err


def _temp_bytes(folder: Path) -> int:
    """The largest size of the run's hidden temporary files in `folder` (0: none, or renamed meanwhile)."""
    sizes = [0]
    for f in folder.glob(".*densereg-tmp*"):
        try:
            sizes.append(f.stat().st_size)
        except FileNotFoundError:
            pass
    return max(sizes)


@pytest.mark.parametrize("command", ["video", "transfer"])
def test_sigterm_keeps_the_frames_done_and_leaves_no_partial_file(tmp_path, command):
    from tracker.video import _frames_in

    out = tmp_path / "v.mp4"
    if command == "video":
        p = cli("video", str(DEMO_CLIP), "--out", str(out), "--csv", str(tmp_path / "f.csv"), "--threads", "1")
    else:
        p = cli("transfer", "--texture", str(TEXTURE), "--target", str(DEMO_CLIP), "--out", str(out), "--threads", "1")
    # frames written, not the writer merely opened: a signal before the first frame (a loaded machine) is
    # "interrupted before the first frame" with nothing written, a different case
    err = _interrupt_when(p, lambda: _temp_bytes(tmp_path) > 1024, "the video writer")
    assert "note: interrupted" in err and "Traceback" not in err
    assert sorted(x.name for x in tmp_path.iterdir()) == (["f.csv", "v.mp4"] if command == "video" else ["v.mp4"])
    assert 0 < _frames_in(out) < 150


def test_ctrl_c_with_the_background_detector_prints_no_traceback(tmp_path):
    """A terminal's Ctrl-C reaches the detector's worker process too, which printed its own
    KeyboardInterrupt traceback (every camera run has that worker)."""
    p = cli("video", str(DEMO_CLIP), "--out", str(tmp_path / "v.mp4"), "--detect-lag", "3", "--threads", "1", start_new_session=True)
    err = _interrupt_when(p, lambda: any(tmp_path.glob(".*densereg-tmp*")), "the video writer", lambda: os.killpg(p.pid, signal.SIGINT))
    assert "interrupted" in err and "Traceback" not in err and "KeyboardInterrupt" not in err, err


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.parametrize("ctrl_c", [False, True], ids=["SIGTERM", "Ctrl-C"])
def test_interrupted_batch300vw_stops_its_workers_and_stays_resumable(tmp_path, ctrl_c):
    root, out = tmp_path / "root", tmp_path / "out"
    for name in ("001", "002", "003"):
        (root / name).mkdir(parents=True)
        _clip(root / name / "vid.avi", frames=60)
    p = cli("batch300vw", str(root), "--out", str(out), "--jobs", "2", "--threads", "1", "--cnn-every", "0", start_new_session=True)
    workers: list[int] = []

    def tracking() -> bool:
        workers[:] = _children(p.pid)
        return any(out.glob(".*partial*"))

    # SIGTERM goes to the command alone (timeout, docker stop); Ctrl-C in a terminal to its whole process group
    err = _interrupt_when(p, tracking, "a video", (lambda: os.killpg(p.pid, signal.SIGINT)) if ctrl_c else None)
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert _hidden(out) == []  # no half-written video
    done = [d for d in out.iterdir() if d.is_dir()]
    assert all((d / "result.json").exists() for d in done)  # what was finished is kept
    assert len(done) < 3  # the videos in progress were dropped, not finished (nor the next one started)
    summary = json.loads((out / "summary.json").read_text())  # written at the start: it says what it lacks
    assert not summary["complete"] and len(summary["missing"]) == 3 - len(done)
    end = time.monotonic() + 5  # the workers are reaped before the command exits; a helper process may take a moment
    while [w for w in workers if Path(f"/proc/{w}").exists()] and time.monotonic() < end:
        time.sleep(0.1)
    assert workers and not [w for w in workers if Path(f"/proc/{w}").exists()]  # none left running, nor a <defunct> zombie


# --- outputs never replace the inputs (second round) -----------------------------------------------

def test_video_and_transfer_refuse_to_write_over_their_inputs_or_one_output_over_another(tmp_path, monkeypatch, capsys):
    _clip(tmp_path / "c.avi")
    clip = (tmp_path / "c.avi").read_bytes()
    _no_tracking(monkeypatch, "video", "Tracker")
    for argv, says in ((["--out", str(tmp_path / "c.avi")], "is the input video"),
                       (["--csv", str(tmp_path / "c.avi")], "is the input video"),
                       (["--out", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "o.mp4")], "are the same file"),
                       (["--out", str(tmp_path / "x"), "--pts-dir", str(tmp_path / "x")], "are the same file")):
        assert main(["video", str(tmp_path / "c.avi"), *argv]) == 2
        assert says in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "c.avi").read_bytes() == clip
    photo, png = tmp_path / "p.jpg", tmp_path / "p.png"
    photo.write_bytes(DEMO_IMAGE.read_bytes())
    png.write_bytes(DEMO_IMAGE.read_bytes())
    _no_tracking(monkeypatch, "transfer", "Tracker")
    for argv in (["--texture", str(TEXTURE), "--target", str(photo), "--out", str(photo)],
                 ["--source-face", str(png), "--save-texture", str(png), "--target", str(DEMO_IMAGE), "--out", str(tmp_path / "t.png")]):
        assert main(["transfer", *argv]) == 2
        assert "writing it would destroy that input" in one_error_line(capsys.readouterr().err)
    assert photo.read_bytes() == png.read_bytes() == DEMO_IMAGE.read_bytes()
    for name in ("t.exr", "t.gif", "t.pgm"):  # refused before the work (user test 24); a .jpg is one (user test 25)
        assert main(["transfer", "--source-face", str(photo), "--save-texture", str(tmp_path / name), "--target", str(DEMO_IMAGE),
                     "--out", str(tmp_path / "t.png")]) == 2
        assert "a texture is a colour picture (.jpg" in one_error_line(capsys.readouterr().err)


def test_batch300vw_never_replaces_a_folder_it_did_not_write(tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    (root / "001" / "annot").mkdir(parents=True)
    _clip(root / "001" / "vid.avi")
    (root / "001" / "annot" / "000001.pts").write_text("an annotation")
    _no_tracking(monkeypatch, "batch300vw", "local_outcomes")
    assert main(["batch300vw", str(root), "--out", str(root)]) == 2  # would have replaced 001/ (video, annotations)
    assert "is the videos' folder" in one_error_line(capsys.readouterr().err)
    other = tmp_path / "other"
    (other / "001").mkdir(parents=True)
    (other / "001" / "keep.txt").write_text("the user's")
    assert main(["batch300vw", str(root), "--out", str(other)]) == 2
    assert "no finished video of this command's, and holds files (e.g. keep.txt)" in one_error_line(capsys.readouterr().err)
    assert (root / "001" / "vid.avi").exists() and (other / "001" / "keep.txt").exists()
    filed = tmp_path / "filed"  # a file where 001/ goes: refused before tracking, not after it (review 36)
    filed.mkdir()
    (filed / "001").write_text("the user's")
    assert main(["batch300vw", str(root), "--out", str(filed)]) == 2
    assert f"{filed / '001'} is a file where video 001's output folder goes" in one_error_line(capsys.readouterr().err)
    copied = tmp_path / "copied"  # a clip's annotations copied there: frame names, but not this command's
    (copied / "001").mkdir(parents=True)
    (copied / "001" / "000001.pts").write_text("an annotation")
    assert main(["batch300vw", str(root), "--out", str(copied)]) == 2
    assert "e.g. 000001.pts" in one_error_line(capsys.readouterr().err)
    assert (copied / "001" / "000001.pts").read_text() == "an annotation"


def test_video_reads_a_numbered_picture_sequence(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    still = cv2.imread(str(DEMO_IMAGE))
    for i in range(1, 4):
        cv2.imwrite(str(frames / f"{i:06d}.jpg"), still)
    csv = tmp_path / "f.csv"
    assert main(["video", str(frames / "%06d.jpg"), "--csv", str(csv), "--cnn-every", "0"]) == 0
    assert "done: 3 frames" in capsys.readouterr().out
    assert len(csv.read_text().splitlines()) == 1 + 3  # the header and the face of each frame
    assert spec_from_argument(str(frames / "%06d.jpg")).kind == "video"
    assert main(["video", str(frames / "x%06d.jpg"), "--csv", str(csv)]) == 2
    assert "no picture of this numbered sequence" in one_error_line(capsys.readouterr().err)


def test_video_reads_a_numbered_sequence_across_a_gap_and_an_unreadable_picture_from_any_first_number(tmp_path, capsys):
    frames = tmp_path / "my frames"
    frames.mkdir()
    still = cv2.imread(str(DEMO_IMAGE))
    for i in (100, 101, 102, 105, 106):  # 103 and 104 missing
        cv2.imwrite(str(frames / f"{i:06d}.jpg"), still)
    (frames / "000102.jpg").write_text("not a picture")
    csv, out = tmp_path / "f.csv", tmp_path / "f.mp4"
    # exit status 1: an input was skipped (as `images` says it)
    assert main(["video", str(frames / "%06d.jpg"), "--csv", str(csv), "--out", str(out), "--cnn-every", "0"]) == 1
    captured = capsys.readouterr()
    assert "done: 4 frames tracked, 1 frame skipped (the warnings say why), a face in 4," in captured.out  # the 5 pictures there
    err = [line for line in captured.err.splitlines() if not line.startswith("note: dlib")]
    assert err == [f"warning: {frames / '%06d.jpg'}: 2 numbers missing in the sequence (first gap: 000103.jpg to 000104.jpg); "
                   "they keep their frame numbers, without a frame (an annotated video shows the one before)",
                   f"warning: {frames / '000102.jpg'}: not a decodable image (corrupt, truncated or not an image)"]
    # frame k: picture number 99 + k (the first is 100), the missing and the unreadable keeping theirs
    assert [row.split(",")[0] for row in csv.read_text().splitlines()[1:]] == ["1", "2", "6", "7"]
    cap = cv2.VideoCapture(str(out))
    # the video keeps its frames in step with the CSV's numbers: a gap shows the frame before it again
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7 and cap.get(cv2.CAP_PROP_FPS) == 30.0
    cap.release()


def test_an_output_named_like_a_picture_of_the_input_sequence_is_refused(tmp_path, capsys):
    for i in range(1, 4):
        cv2.imwrite(str(tmp_path / f"{i:06d}.jpg"), np.full((48, 64, 3), 100, np.uint8))
    before = (tmp_path / "000002.jpg").read_bytes()
    assert main(["video", str(tmp_path / "%06d.jpg"), "--csv", str(tmp_path / "000002.jpg")]) == 2
    assert "is a picture of the input video (000002.jpg)" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "000002.jpg").read_bytes() == before


def test_video_without_a_terminal_says_how_far_it_is_and_streams_its_tables(tmp_path, monkeypatch, capsys):
    """User test 10: a log heard nothing until the end, and --json held every frame in memory
    until then (written as they come now; a failed run leaves neither file nor temporary)."""
    import json

    import tracker.cli.stream as stream
    import tracker.cli.video as video_cli

    monkeypatch.setattr(stream, "PROGRESS_EVERY_S", 0.0)
    out = tmp_path / "o"
    assert main(["video", str(DEMO_CLIP), "--max-frames", "5", "--json", str(out / "a.json"), "--csv", str(out / "a.csv")]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("frame ")]
    assert progress[0].startswith("frame 1 of ~150,") and len(progress) == 5
    frames = json.loads((out / "a.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == [1, 2, 3, 4, 5]
    rows = list(csv.DictReader((out / "a.csv").open()))
    assert len(rows) == sum(len(f["faces"]) for f in frames)
    times = {f["frame"]: f["time"] for f in frames}  # the CSV's times are the JSON's (a variable-rate clip's are not fps apart)
    assert all(float(r["time"]) == times[int(r["frame"])] for r in rows) and times[2] > times[1] >= 0
    calls = []

    def failing(n, faces, seconds=None):  # a failure in the middle of the run, the tables half written
        calls.append(n)
        if n == 3:
            raise RuntimeError("boom")
        return []

    monkeypatch.setattr(video_cli, "csv_rows", failing)
    assert main(["video", str(DEMO_CLIP), "--json", str(out / "b.json"), "--csv", str(out / "b.csv")]) == 1
    assert calls == [1, 2, 3] and sorted(p.name for p in out.iterdir()) == ["a.csv", "a.json"]  # no file, no temporary


def test_a_video_output_that_exists_is_said_to_be_replaced(tmp_path, capsys):
    """Rerunning into an existing --csv replaced a 150-frame table with a 2-frame one unsaid
    (user test 35): a note names it; a new file gets none."""
    table = tmp_path / "a.csv"
    assert main(["video", str(DEMO_CLIP), "--max-frames", "2", "--csv", str(table), "--threads", "1"]) == 0
    assert "exists" not in capsys.readouterr().err
    assert main(["video", str(DEMO_CLIP), "--max-frames", "1", "--csv", str(table), "--threads", "1"]) == 0
    assert f"note: {table} exists: this run's output replaces it when the run ends" in capsys.readouterr().err


def test_signals_while_saving_are_held_until_it_is_done():
    from tracker.fileio import interrupts_held

    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            with interrupts_held():  # nested: delivered at the outermost block's end only
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
            reached = True
    assert reached
    with pytest.raises(ValueError):  # a block that fails drops what it held: its own error ends the run
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("failed")


def test_an_interrupted_video_save_leaves_no_hidden_file(tmp_path, monkeypatch):
    import tracker.video as video

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "_frames_in", interrupted)
    writer = AtomicVideoWriter(tmp_path / "a.mp4", 25, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_a_second_ctrl_c_while_a_camera_run_saves_keeps_every_output(tmp_path, monkeypatch, capsys):
    """A camera's first Ctrl-C ends the run; a second one during the saving deleted the finished
    CSV and JSON and left the video's hidden partial file (review 26)."""
    import tracker.cli.video as video_command
    import tracker.video as video
    from tracker.sources import ArraySource

    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = [cap.read()[1] for _ in range(4)]
    monkeypatch.setattr(video_command, "open_video_or_camera", lambda path, camera, warn=None: ArraySource(frames, "camera", fps=30.0, live=True))
    frames_in = video._frames_in

    def second_ctrl_c(path):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return frames_in(path)

    monkeypatch.setattr(video, "_frames_in", second_ctrl_c)
    outputs = [tmp_path / "me.mp4", tmp_path / "me.csv", tmp_path / "me.json"]
    assert main(["video", "--camera", "0", "--out", str(outputs[0]), "--csv", str(outputs[1]), "--json", str(outputs[2]), "--cnn-every", "0"]) == 0
    assert "interrupted while saving: the outputs were saved first" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == sorted(outputs)
    assert len(outputs[1].read_text().splitlines()) == 1 + 4 and frames_in(outputs[0]) >= 4


def test_video_clears_the_temporary_tables_a_killed_run_left(tmp_path):
    """`video` SIGKILLed leaves its tables' hidden stand-ins; the next run of the same outputs removes them (user test 13)."""
    clip = tmp_path / "clip.avi"
    _clip(clip)
    for stale in (".v.csv.k2j4x9ab.densereg-tmp", ".v.json.q8w1ab_z.densereg-tmp"):
        (tmp_path / stale).write_text("")
    (tmp_path / ".w.csv.k2j4x9ab.densereg-tmp").write_text("another output's: left alone")
    (tmp_path / ".v.csv.bak.k2j4x9ab.densereg-tmp").write_text("v.csv.bak's: left alone (review 26)")
    import fcntl

    live = open(tmp_path / ".v.csv.livewrit.densereg-tmp", "w")  # a run writing the same --csv now: left alone
    fcntl.flock(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert main(["video", str(clip), "--csv", str(tmp_path / "v.csv"), "--json", str(tmp_path / "v.json"), "--cnn-every", "0"]) == 0
    live.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v.csv.bak.k2j4x9ab.densereg-tmp", ".v.csv.livewrit.densereg-tmp",
                                                          ".w.csv.k2j4x9ab.densereg-tmp", "clip.avi", "v.csv", "v.json"]


def test_a_sequences_gaps_keep_the_video_in_step_with_the_csv(tmp_path):
    """A numbered sequence's missing or unreadable picture has no CSV row, and had no frame in the
    annotated video either, so the video's frame k was no longer the CSV's frame k + 1 after a gap
    (user test 13): the gap is filled with the frame before it."""
    import csv

    from tracker.video import _frames_in

    still = cv2.imread(str(DEMO_IMAGE))
    for i in range(8):
        if i == 3:
            continue  # a missing number
        path = tmp_path / f"{i:06d}.png"
        if i == 5:
            path.write_bytes(b"not a picture")  # an unreadable one
        else:
            cv2.imwrite(str(path), np.roll(still, 4 * i, axis=1))
    out, table = tmp_path / "v.mp4", tmp_path / "v.csv"
    assert main(["video", str(tmp_path / "%06d.png"), "--out", str(out), "--csv", str(table), "--cnn-every", "0"]) == 1  # (one unreadable)
    with table.open() as f:
        frames = [int(row["frame"]) for row in csv.DictReader(f)]
    assert frames == [1, 2, 3, 5, 7, 8] and _frames_in(out) == 8
    cap = cv2.VideoCapture(str(out))
    video = [cap.read()[1] for _ in range(8)]
    def diff(a, b):
        return float(np.abs(video[a].astype(int) - video[b].astype(int)).mean())
    assert diff(3, 2) < 2 < diff(4, 3)  # the missing frame 4 repeats frame 3; frame 5 is its own


def test_numbers_far_apart_do_not_make_a_video_of_every_number_between(tmp_path):
    """Pictures numbered by the time of day (120000, 120005, 123000) made a 3,001-frame video, one
    frame for each number between (review 26): a gap is shown for 2 s at most."""
    from tracker.video import MAX_HOLD_S, _frames_in

    still = cv2.imread(str(DEMO_IMAGE))
    for number in (120000, 120005, 123000):
        cv2.imwrite(str(tmp_path / f"{number}.png"), still)
    out = tmp_path / "v.mp4"
    assert main(["video", str(tmp_path / "%d.png"), "--out", str(out), "--cnn-every", "0"]) == 0
    assert _frames_in(out) == 1 + 4 + 1 + int(MAX_HOLD_S * 30) + 1  # the 4 missing numbers filled, the long gap held 2 s at 30 fps


def test_a_ctrl_c_while_the_camera_closes_after_the_save_is_not_reported_as_a_loss(tmp_path, monkeypatch, capsys):
    """The outputs saved, a Ctrl-C while the camera was still being released (up to 1 s) read
    "no video, CSV or JSON was written", exit 130 (review 26)."""
    import tracker.cli.video as video_command
    from tracker.sources import ArraySource

    class ClosingSlowly(ArraySource):
        def close(self):
            super().close()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = [cap.read()[1] for _ in range(3)]
    monkeypatch.setattr(video_command, "open_video_or_camera", lambda path, camera, warn=None: ClosingSlowly(frames, "camera", fps=30.0, live=True))
    assert main(["video", "--camera", "0", "--csv", str(tmp_path / "me.csv"), "--cnn-every", "0"]) == 0
    captured = capsys.readouterr()
    assert "the outputs were saved first" in captured.err and "done: 3 frames" in captured.out
    assert len((tmp_path / "me.csv").read_text().splitlines()) == 4


def test_a_ctrl_c_before_the_first_frame_writes_no_file(tmp_path, monkeypatch, capsys):
    """Kept frames need a frame: interrupted before the first, the run leaves no output file (the
    --pts-dir, made at the start, stays empty) and says so in one line."""
    import tracker.cli.stream as stream

    def interrupted(*a, **k):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(stream, "track_stream", interrupted)
    outputs = ["--out", str(tmp_path / "v.mp4"), "--csv", str(tmp_path / "v.csv"), "--json", str(tmp_path / "v.json")]
    assert main(["video", str(DEMO_CLIP), *outputs, "--pts-dir", str(tmp_path / "pts"), "--cnn-every", "0"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted before the first frame was tracked; no file was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pts"] and not any((tmp_path / "pts").iterdir())


def test_video_json_names_its_subject_with_the_recogniser_as_pts_dir_does(tmp_path, monkeypatch):
    """Without --pts-dir the JSON's subject was chosen without the face recogniser: the same clip's
    JSON named another subject with and without --pts-dir (review 36)."""
    import tracker.cli.video as cli_video

    loaded = []
    monkeypatch.setattr(cli_video, "load_recognizer", lambda: loaded.append(1))
    assert main(["video", str(DEMO_CLIP), "--json", str(tmp_path / "f.json"), "--max-frames", "2", "--threads", "1"]) == 0
    assert loaded == [1]
    assert main(["video", str(DEMO_CLIP), "--csv", str(tmp_path / "f.csv"), "--max-frames", "2", "--threads", "1"]) == 0
    assert loaded == [1]  # (the CSV names no subject)


# --- session 37: one run for video and transfer (tracker/cli/stream.py) ------------------------------

class _Recorded(FrameOutputs):
    """FrameOutputs that keeps what it was given, into a file entered into the run's stack."""

    def __init__(self, path: Path):
        self.path = path
        self.committed: list[int] = []
        self.finished: list[bool] = []

    def open(self, stack, source):
        self.file = stack.enter_context(atomic_file(self.path, "w"))

    def render(self, tracked):
        return len(tracked.result.faces)

    def commit(self, tracked, rendered):
        self.committed.append(tracked.index + 1)
        self.file.write(f"{tracked.index + 1} {rendered}\n")

    def finish(self, complete):
        self.finished.append(complete)


def test_run_stream_counts_saves_and_refuses_empty_runs_without_leaving_files(tmp_path):
    from tracker.cli.stream import run_stream
    from tracker.errors import InputError
    from tracker.pipeline import TrackerConfig
    from tracker.sources import ArraySource
    from tracker.video import VideoError

    face = cv2.imread(str(DEMO_IMAGE))
    blank = np.full_like(face, 128)
    config = TrackerConfig(threads=1, mode="video", cnn_fallback=False)
    out = _Recorded(tmp_path / "r.txt")
    run = run_stream(ArraySource([blank, face, face, blank]), config, out, limit=3)
    assert (run.frames, run.with_face, run.last, run.early) == (3, 2, 3, False) and out.finished == [True]
    assert (tmp_path / "r.txt").read_text().split("\n")[:3] == ["1 0", "2 1", "3 1"]
    assert run.exit_code(ArraySource([face])) == 0 and run.at_frame(ArraySource([face] * 9)) == "frame 3 of ~9"
    for frames, need_face, error, says in [([blank, blank], True, InputError, "no face found in any of 2 frames"),
                                           ([], False, VideoError, "no decodable frame")]:
        with pytest.raises(error, match=says):
            run_stream(ArraySource(frames, label="clip"), config, _Recorded(tmp_path / "e.txt"), need_face=need_face)
        assert sorted(f.name for f in tmp_path.iterdir()) == ["r.txt"]  # nothing written, no temporary left


def test_transfer_without_a_terminal_says_how_far_it_is_and_refuses_a_clip_with_no_face(tmp_path, monkeypatch, capsys):
    """Transfer had a loop of its own, with no progress at all in a log (session 37: video's run, shared)."""
    import tracker.cli.stream as stream

    monkeypatch.setattr(stream, "PROGRESS_EVERY_S", 0.0)
    assert main(["transfer", "--texture", "grid", "--target", str(DEMO_CLIP), "--out", str(tmp_path / "t.mp4"), "--max-frames", "3",
                 "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert [line.split(",")[0] for line in captured.err.splitlines() if line.startswith("frame ")] == [
        "frame 1 of ~150", "frame 2 of ~150", "frame 3 of ~150"]
    assert "face in 3/3 frames" in captured.out
    monkeypatch.undo()
    writer = cv2.VideoWriter(str(tmp_path / "noface.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(4):
        writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    assert main(["transfer", "--texture", "grid", "--target", str(tmp_path / "noface.avi"), "--out", str(tmp_path / "n.mp4"),
                 "--cnn-every", "0", "--threads", "1"]) == 2
    assert "no face found in any of 4 frames; nothing written" in one_error_line(capsys.readouterr().err)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["noface.avi", "t.mp4"]


def test_one_frame_rate_rule_for_reading_and_writing(tmp_path, capsys):
    """A container's 1000 fps (a browser's .webm, a screen recorder's .mkv) is a time base: the
    frames were timed as of unknown rate while the annotated copy was written at 1000 fps (33x too
    fast) and the JSON said 1000; review 37."""
    import json

    from tracker.video import FALLBACK_FPS, frame_rate

    assert [frame_rate(r) for r in (25.0, 1000.0, 90000.0, 0.0, float("nan"), None, 0.5)] == [25.0, 0, 0, 0, 0, 0, 0.5]
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    clip = tmp_path / "rec1000.mkv"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 1000.0, (640, 480))
    for _ in range(4):
        writer.write(cap.read()[1])
    writer.release()
    assert cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS) == 1000.0
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "--out", str(out), "--json", str(tmp_path / "f.json"), "--cnn-every", "0", "--threads", "1"]) == 0
    assert cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FPS) == FALLBACK_FPS
    header = json.loads((tmp_path / "f.json").read_text())
    assert header["fps"] is None and [f["time"] for f in header["frames"]] == [None] * 4
    for fps in (90000.0, 0.0):  # a 90 kHz time base could not be written at all
        with AtomicVideoWriter(tmp_path / f"w{int(fps)}.mp4", fps, (64, 48)) as w:
            w.write(np.zeros((48, 64, 3), np.uint8))
        assert cv2.VideoCapture(str(tmp_path / f"w{int(fps)}.mp4")).get(cv2.CAP_PROP_FPS) == FALLBACK_FPS


@pytest.mark.parametrize("command", ["video", "transfer"])
def test_a_camera_stopped_before_its_first_frame_is_an_interruption_not_a_corrupt_video(tmp_path, monkeypatch, capsys, command):
    """Ctrl-C while a camera's first frame was tracked (dlib's CNN, ~1 s, with nobody in front of
    it) said "webcam 0: no decodable frame (corrupt, or not a video)", exit 2 (transfer: "no face
    found in any of 0 frames"); review 37."""
    import tracker.cli.stream as stream
    from tracker.sources import ArraySource

    camera = ArraySource([np.zeros((48, 64, 3), np.uint8)] * 3, "webcam 0", 30.0, live=True)
    monkeypatch.setattr(f"tracker.cli.{command}.{'open_video_or_camera' if command == 'video' else 'open_source'}",
                        lambda *a, **k: camera)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(stream, "track_stream", interrupted)
    argv = (["video", "--camera", "0", "--csv", str(tmp_path / "c.csv")] if command == "video" else
            ["transfer", "--texture", "grid", "--camera", "0", "--out", str(tmp_path / "c.mp4")])
    assert main(argv + ["--cnn-every", "0", "--threads", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_transfer_closes_the_camera_when_its_tracker_cannot_be_made(tmp_path, monkeypatch, capsys):
    """The video tracker was made outside the source's `with`: a failed load left the camera held
    (review 37; review 36 fixed the same in `video`)."""
    import tracker.cli.stream as stream
    from tracker.errors import TrackerError
    from tracker.sources import ArraySource

    closed = []

    class Camera(ArraySource):
        def close(self):
            closed.append(self.label)

    monkeypatch.setattr("tracker.cli.transfer.open_source", lambda *a, **k: Camera([np.zeros((48, 64, 3), np.uint8)], "webcam 0", live=True))

    def broken(config):
        raise TrackerError("assets: damaged")

    monkeypatch.setattr(stream, "Tracker", broken)
    assert main(["transfer", "--texture", "grid", "--camera", "0", "--out", str(tmp_path / "c.mp4"), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: assets: damaged" and closed == ["webcam 0"]
