"""Frame sources and the one tracking loop (``tracker/sources.py``), the camera path of the
commands (a fake camera; a real one only where this machine has one), and the layout rule that
no library module imports the command-line app."""
from __future__ import annotations

import ast
import csv
import itertools
import json
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_CLIP, DEMO_IMAGE
from tracker.cli import main
from tracker.detector import BoxError
from tracker.errors import SourceError
from tracker.fileio import IMAGE_KINDS
from tracker.pipeline import FrameResult
from tracker.sources import (
    ArraySource,
    CameraSource,
    ImageSource,
    SequenceSource,
    SourceSpec,
    VideoSource,
    load_frames,
    open_source,
    open_video_or_camera,
    probe_cameras,
    spec_from_argument,
    track_stream,
    until_interrupted,
)

REPO = Path(__file__).resolve().parents[1]


class FakeTracker:
    """Records what the loop asks of a Tracker; frame k's result has frame index k."""

    def __init__(self, bad_box_frames=()):
        self.calls: list[tuple[str, object]] = []
        self.timestamps: list[float | None] = []
        self.bad_box_frames = set(bad_box_frames)

    def reset(self) -> None:
        self.calls.append(("reset", None))

    def track(self, image, boxes=None, timestamp=None) -> FrameResult:
        k = int(image[0, 0, 0])
        self.calls.append(("track", k))
        self.timestamps.append(timestamp)
        if boxes is not None and k in self.bad_box_frames:
            raise BoxError(f"face box on frame {k}: entirely outside the image")
        return FrameResult([], {"detect": 0.5}, k)


def frames(n: int) -> list[np.ndarray]:
    return [np.full((4, 6, 3), k, np.uint8) for k in range(n)]


def test_track_stream_resets_first_times_each_frame_and_reads_no_frame_past_the_limit():
    tracker, source = FakeTracker(), ArraySource(frames(5))
    out = list(track_stream(tracker, source, limit=3))
    assert tracker.calls == [("reset", None), ("track", 0), ("track", 1), ("track", 2)]
    assert [t.index for t in out] == [0, 1, 2] and [t.result.frame_index for t in out] == [0, 1, 2]
    assert all(t.track_ms >= 0 and t.fps > 0 for t in out)
    assert source.position == 3  # the 4th frame was never read
    assert [t.index for t in track_stream(tracker, source)] == [3, 4]  # a new stream goes on from there, reset again
    assert tracker.calls[4] == ("reset", None)


def test_track_stream_gives_each_frame_its_boxes_and_skips_frames_whose_boxes_do_not_fit():
    tracker, bad = FakeTracker(bad_box_frames={1}), []
    out = list(track_stream(tracker, ArraySource(frames(3)), boxes=lambda f: [[0, 0, 2, 2]] if f.index else None,
                            on_bad_boxes=lambda f, exc: bad.append((f.index, str(exc)))))
    assert [(t.index, t.boxes) for t in out] == [(0, None), (2, [[0, 0, 2, 2]])]
    assert bad == [(1, "face box on frame 1: entirely outside the image")]
    with pytest.raises(BoxError):  # nobody to tell: the caller hears of it
        list(track_stream(FakeTracker(bad_box_frames={1}), ArraySource(frames(3)), boxes=lambda f: [[0, 0, 2, 2]]))


def test_each_frame_is_tracked_at_its_time_in_the_source(tmp_path):
    """The smoothing works in seconds: a 25 fps video's frames are 40 ms apart, a sequence's
    gap is time that passed, unrelated pictures have no time, and a container's time base
    (90,000 "fps") is not taken for a rate."""
    clip = tmp_path / "c25.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for k in range(4):
        writer.write(np.full((24, 32, 3), k, np.uint8))
    writer.release()
    tracker = FakeTracker()
    list(track_stream(tracker, VideoSource(clip)))
    assert tracker.timestamps == pytest.approx([0.0, 0.04, 0.08, 0.12])
    seq = numbered(tmp_path / "seq", [1, 2, 5])
    assert [f.time for f in SequenceSource(seq).frames()] == pytest.approx([0, 1 / 30, 4 / 30])
    assert [f.time for f in ImageSource([DEMO_IMAGE], "one").frames()] == [None]
    assert ArraySource(frames(2), fps=90000.0).time_at(1) is None and ArraySource(frames(2)).time_at(1) is None


def _variable_rate_mp4(path: Path, frames: int = 20) -> None:
    """An MP4 whose first half runs at 30 fps and second half at 10 fps (a phone's variable frame
    rate): OpenCV writes it at 30 fps, then its time-to-sample table (stts) gets two entries and
    the durations that hold them (the file's boxes follow the media data, so nothing moves)."""
    import struct

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for k in range(frames):
        writer.write(np.full((48, 64, 3), 10 * k, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())

    def find(names, off=0, end=None):
        end = len(data) if end is None else end
        while off < end:
            size, kind = struct.unpack(">I4s", data[off:off + 8])
            if kind == names[0]:
                return [off] + (find(names[1:], off + 8, off + size) if len(names) > 1 else [])
            off += size
        raise KeyError(names[0])

    def double(box: list[int], at: int) -> None:  # a 32-bit duration `at` bytes into the box
        data[box[-1] + at:box[-1] + at + 4] = struct.pack(">I", 2 * struct.unpack(">I", data[box[-1] + at:box[-1] + at + 4])[0])

    for names, at in (([b"moov", b"mvhd"], 24), ([b"moov", b"trak", b"tkhd"], 28), ([b"moov", b"trak", b"edts", b"elst"], 16),
                      ([b"moov", b"trak", b"mdia", b"mdhd"], 24)):
        double(find(names), at)
    chain = find([b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"])
    size, _, _, entries, count, delta = struct.unpack(">I4sIIII", data[chain[-1]:chain[-1] + 24])
    assert entries == 1 and count == frames
    stts = struct.pack(">I4sIIIIII", 32, b"stts", 0, 2, frames // 2, delta, frames // 2, 3 * delta)
    data[chain[-1]:chain[-1] + size] = stts
    for off in chain[:-1]:
        data[off:off + 4] = struct.pack(">I", struct.unpack(">I", data[off:off + 4])[0] + len(stts) - size)
    path.write_bytes(bytes(data))


def test_a_variable_frame_rate_video_is_timed_by_its_frames_own_times(tmp_path):
    """Its average rate (15 fps here) spaced every frame 67 ms apart, where they are 33 and 100."""
    clip = tmp_path / "vfr.mp4"
    _variable_rate_mp4(clip)
    source = VideoSource(clip)
    assert source.fps == pytest.approx(15.0)
    times = [f.time for f in source.frames()]
    assert len(times) == 20
    np.testing.assert_allclose(np.diff(times), [1 / 30] * 10 + [0.1] * 9, atol=1e-3)
    source.seek(12)
    assert [f.time for f in itertools.islice(source.frames(), 2)] == pytest.approx([10 / 30 + 0.2, 10 / 30 + 0.3], abs=1e-3)
    source.close()
    assert main(["video", str(clip), "--json", str(tmp_path / "v.json"), "--threads", "1", "--cnn-every", "0"]) == 0
    frames = json.loads((tmp_path / "v.json").read_text())["frames"]  # each frame says its time (user test 17)
    np.testing.assert_allclose([f["time"] for f in frames], np.r_[0.0, np.cumsum([1 / 30] * 10 + [0.1] * 9)], atol=1e-3)


def test_a_repeated_container_time_costs_one_frame_period_not_every_later_spacing(tmp_path):
    """Once a frame period was added for a repeated time, every later frame compared its time with
    the one handed out and stayed a period behind, spaced by the period ever after (review 28c)."""
    clip = tmp_path / "c.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (32, 24))
    writer.write(np.zeros((24, 32, 3), np.uint8))
    writer.release()
    source = VideoSource(clip)
    times = [source._clock(i, stamp) for i, stamp in enumerate([0.0, 0.1, 0.1, 0.11, 0.12, float("nan"), 0.2])]
    np.testing.assert_allclose(times, [0.0, 0.1, 0.1 + 1 / 30, 0.11 + 1 / 30, 0.12 + 1 / 30, 0.12 + 2 / 30, 0.12 + 3 / 30])
    source.close()


def test_a_video_played_to_its_end_after_a_seek_is_not_called_truncated(tmp_path):
    """The stream after a seek is shorter than the file's length: it warned "stream ended at frame 7
    of 12 (truncated or corrupt)" whenever the viewer played a sought clip to its end (review 28c)."""
    clip = tmp_path / "c.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for k in range(12):
        writer.write(np.full((24, 32, 3), k, np.uint8))
    writer.release()
    warned: list[str] = []
    source = VideoSource(clip, warn=warned.append)
    source.seek(5)
    assert [f.index for f in source.frames()] == list(range(5, 12)) and warned == []
    source.close()


def test_a_camera_frame_is_timed_by_the_clock_when_it_came_not_by_its_count(monkeypatch):
    """A tracker slower than the camera reads one frame in several: by their count its frames
    follow each other at the camera's rate, by the clock they are as far apart as they came."""
    grabbed = threading.Event()

    class Capture:
        def __init__(self, device):
            self.n = 0

        def isOpened(self):
            return True

        def read(self):
            if self.n >= 4:
                grabbed.set()
                time.sleep(0.05)
                return False, None
            self.n += 1
            time.sleep(0.05)
            return True, np.full((8, 8, 3), self.n, np.uint8)

        def get(self, prop):
            return 30.0

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    with CameraSource(0) as camera:
        first = next(camera.frames())
        grabbed.wait(2.0)
        last = next(camera.frames())
    came = int(last.image[0, 0, 0]) - int(first.image[0, 0, 0])
    assert last.index - first.index == 1 and came >= 2
    assert last.time - first.time >= 0.04 * came  # 50 ms a frame; by the count it was 33 ms


def test_image_source_reports_an_unreadable_picture_and_goes_on_or_raises_without_a_callback(tmp_path):
    good = tmp_path / "a.jpg"
    good.write_bytes(DEMO_IMAGE.read_bytes())
    (tmp_path / "b.jpg").write_text("not a picture")
    pictures = [good, tmp_path / "b.jpg", good]
    warnings: list[str] = []
    got = [(f.index, f.path.name) for f in ImageSource(pictures, "three", warn=warnings.append).frames()]
    assert got == [(0, "a.jpg"), (2, "a.jpg")]
    assert len(warnings) == 1 and "b.jpg" in warnings[0]
    with pytest.raises(SourceError, match="b.jpg"):
        list(ImageSource(pictures, "three").frames())


def test_video_source_rewinds_after_the_end_as_the_viewer_does():
    with VideoSource(DEMO_CLIP) as source:
        first = [f.image for f in source.frames()]
        assert len(first) == source.length == 150 and source.size == (first[0].shape[1], first[0].shape[0])
        source.seek(10)
        again = next(source.frames())
        assert again.index == 10 and np.array_equal(again.image, first[10])
        assert source.read() is not None and source.position == 12


def test_read_ahead_source_gives_the_same_frames():
    plain = load_frames(VideoSource(DEMO_CLIP), 20)
    ahead = load_frames(VideoSource(DEMO_CLIP, read_ahead=3), 20)
    assert len(plain) == len(ahead) == 20 and all(np.array_equal(a, b) for a, b in zip(plain, ahead))


def test_sources_by_argument_and_their_errors(tmp_path):
    assert spec_from_argument("webcam", 3) == SourceSpec("webcam", device=3)
    assert spec_from_argument(str(DEMO_IMAGE)).kind == "image" and spec_from_argument(str(DEMO_CLIP)).kind == "video"
    assert spec_from_argument(str(tmp_path)).kind == "folder"
    one = open_source(spec_from_argument(str(DEMO_IMAGE)))
    assert (one.length, one.sequence, one.live) == (1, False, False)
    with pytest.raises(SourceError, match="file not found"):
        open_source(SourceSpec("video", tmp_path / "nothing.mp4"))
    with pytest.raises(SourceError, match=re.escape(f"no images ({IMAGE_KINDS})")):
        open_source(SourceSpec("folder", tmp_path))
    with pytest.raises(SourceError, match="cannot seek in a live source"):
        ArraySource(frames(2), live=True).seek(0)


def numbered(folder: Path, numbers, name: str = "{:06d}.png", size: tuple[int, int] = (10, 8)) -> Path:
    """Small pictures named by ``name`` for ``numbers`` in ``folder``; the sequence's pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        cv2.imwrite(str(folder / name.format(n)), np.full((size[1], size[0], 3), n % 256, np.uint8))
    return folder / "%06d.png"


def read_names(source) -> list[tuple[int, str]]:
    with source:
        return [(f.index, f.path.name) for f in source.frames()]


def test_a_numbered_sequence_with_a_gap_reads_every_picture_and_notes_the_gap_once(tmp_path):
    pattern = numbered(tmp_path / "my frames", [n for n in range(18) if n not in (6, 7)])  # a space in the folder too
    warnings = []
    source = open_video_or_camera(pattern, None, warn=warnings.append)
    assert (source.length, source.fps, source.size, source.sequence) == (18, 30.0, (10, 8), True)
    got = read_names(source)
    # frame k: picture number k (the first number being 0), the missing ones keeping theirs
    assert got == [(n, f"{n:06d}.png") for n in range(18) if n not in (6, 7)]
    assert warnings == [
        f"{pattern}: 2 numbers missing in the sequence (first gap: 000006.png to 000007.png); they keep their frame numbers, "
        "without a frame (an annotated video shows the one before)"]
    sparse = numbered(tmp_path / "by time", [20240101120000, 20240101120001, 20240102120000], name="{:d}.png")
    with SequenceSource(sparse.with_name("%d.png")) as source:  # numbers by date and time: a span of a million, three pictures
        assert source.length == 1_000_001 and [f.index for f in source.frames()] == [0, 1, 1_000_000]
        assert source.path_at(1_000_000).name == "20240102120000.png" and source.path_at(2) is None
    with SequenceSource(pattern) as source:  # stepping back into a gap lands on the picture before it
        source.seek(7)
        assert source.position == 5 and source.path_at(source.position).name == "000005.png"
        assert [f.index for f in itertools.islice(source.frames(), 2)] == [5, 8]


def test_a_numbered_sequence_skips_an_unreadable_picture_with_one_line_and_reads_the_rest(tmp_path):
    pattern = numbered(tmp_path, range(1, 6))
    (tmp_path / "000003.png").write_text("not a picture")
    cv2.imwrite(str(tmp_path / "000004.png"), np.zeros((16, 16, 3), np.uint8))  # another size: not a frame of this clip
    warnings = []
    got = read_names(SequenceSource(pattern, warn=warnings.append))
    assert got == [(0, "000001.png"), (1, "000002.png"), (4, "000005.png")]
    assert warnings == [
        f"{tmp_path / '000003.png'}: not a decodable image (corrupt, truncated or not an image)",
        f"{tmp_path / '000004.png'}: 16x16, not the 10x8 of the sequence's pictures"]
    with pytest.raises(SourceError, match="000003.png"):  # nobody to tell: the caller hears of it
        read_names(SequenceSource(pattern))


def test_a_stray_first_picture_of_another_size_is_the_one_skipped(tmp_path):
    """The clip's size was the first picture's: a thumbnail named 000000 made every real frame skipped."""
    pattern = numbered(tmp_path, range(1, 6))
    cv2.imwrite(str(tmp_path / "000000.png"), np.zeros((4, 6, 3), np.uint8))
    warnings = []
    source = SequenceSource(pattern, warn=warnings.append)
    assert source.size == (10, 8) and [n for _, n in read_names(source)] == [f"{i:06d}.png" for i in range(1, 6)]
    assert len(warnings) == 1 and "000000.png: 6x4" in warnings[0]


def test_a_numbered_sequence_whose_first_pictures_are_unreadable_starts_at_the_first_readable_one(tmp_path):
    pattern = numbered(tmp_path, range(3))
    data = (tmp_path / "000000.png").read_bytes()
    (tmp_path / "000000.png").write_bytes(data[: len(data) // 2])  # truncated
    warnings = []
    source = SequenceSource(pattern, warn=warnings.append)
    assert source.size == (10, 8) and read_names(source) == [(1, "000001.png"), (2, "000002.png")]
    assert len(warnings) == 1 and "000000.png" in warnings[0]  # reported on opening, not again
    for n in (1, 2):
        (tmp_path / f"00000{n}.png").write_text("")
    with pytest.raises(SourceError, match="none of the 3 pictures of this numbered sequence is readable"):
        SequenceSource(pattern, warn=print)


def test_a_numbered_sequence_may_start_at_any_number_and_matches_as_printf_names(tmp_path):
    warnings = []
    got = read_names(SequenceSource(numbered(tmp_path, range(100, 120)), warn=warnings.append))  # OpenCV looked for a first number 0-4
    assert len(got) == 20 and got[0] == (0, "000100.png") and got[-1] == (19, "000119.png")
    numbered(tmp_path / "plain", [7, 1234567], name="f{}.png")
    (tmp_path / "plain" / "f007.png").write_bytes((tmp_path / "plain" / "f7.png").read_bytes())  # not what %d writes for 7
    assert [n for _, n in read_names(SequenceSource(tmp_path / "plain" / "f%d.png"))] == ["f7.png", "f1234567.png"]
    numbered(tmp_path / "wide", [3, 10], name="{:4d}.png")
    assert [n for _, n in read_names(SequenceSource(tmp_path / "wide" / "%4d.png"))] == ["   3.png", "  10.png"]
    assert warnings == []  # no gap


def test_a_numbered_pattern_matching_nothing_is_the_same_one_line_error(tmp_path):
    numbered(tmp_path, range(3))
    with pytest.raises(SourceError, match=r"x%06d.png: no picture of this numbered sequence found$"):
        open_video_or_camera(tmp_path / "x%06d.png", None)
    with pytest.raises(SourceError, match="folder .*absent not found"):
        open_source(spec_from_argument(str(tmp_path / "absent" / "%06d.png")))
    with pytest.raises(SourceError, match="not a numbered-picture pattern"):
        open_source(spec_from_argument(str(tmp_path / "%s.png")))
    assert open_source(spec_from_argument(str(tmp_path / "%06d.png"))).length == 3  # transfer and the viewer read it too


def test_a_file_whose_name_holds_a_percent_sign_is_that_file(tmp_path):
    """`video "clip 100%.mp4"` was read as a numbered-picture pattern (review 26)."""
    from tracker.assets import DEMO_CLIP

    clip = tmp_path / "clip 100%.mp4"
    clip.write_bytes(DEMO_CLIP.read_bytes())
    with open_video_or_camera(clip, None) as source:
        assert source.length == 150 and not isinstance(source, SequenceSource)
    with pytest.raises(SourceError, match="no such file, and not a numbered-picture pattern"):
        open_video_or_camera(tmp_path / "gone 100%.mp4", None)


def test_closing_or_seeking_a_video_stops_its_read_ahead_first():
    """The source was released while its frames, still held (a Ctrl-C or an error inside ``with
    source:``), had a thread inside ``cap.read()``: FFmpeg crashed or hung the process (review 29)."""
    def readers() -> int:
        return sum(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())

    before = readers()
    source = VideoSource(DEMO_CLIP, read_ahead=3)
    stream = source.frames()
    assert [next(stream).index for _ in range(3)] == [0, 1, 2] and readers() == before + 1
    source.seek(40)
    assert readers() == before and next(source.frames()).index == 40  # the old frames stopped, the new ones read
    held = source.frames()
    next(held)
    source.close()
    assert readers() == before
    assert list(held) == []  # what was held just ends


def test_ctrl_c_ends_a_live_source_and_cuts_a_file_short():
    with until_interrupted(ArraySource(frames(1), live=True)) as stop:
        raise KeyboardInterrupt
    assert not stop.early  # a camera's usual end
    with until_interrupted(ArraySource(frames(1))) as stop:
        raise KeyboardInterrupt
    assert stop.early
    with until_interrupted(ArraySource(frames(1))) as stop:
        pass
    assert not stop.early


def test_video_command_reads_a_camera(fake_camera, tmp_path, capsys):
    fake_camera(8)
    out = tmp_path / "cam"
    argv = ["video", "--camera", "0", "--csv", str(out / "a.csv"), "--json", str(out / "a.json"), "--pts-dir", str(out / "pts"),
            "--out", str(out / "a.mp4"), "--threads", "1", "--max-frames", "6"]
    assert main(argv) == 0
    rows = list(csv.reader((out / "a.csv").read_text().splitlines()))[1:]
    assert sorted({int(r[0]) for r in rows}) == [1, 2, 3, 4, 5, 6]  # a face in every frame of the clip's start
    saved = json.loads((out / "a.json").read_text())
    assert saved["source"] == "webcam 0" and len(saved["frames"]) == 6 and saved["fps"] == 30.0
    assert int(cv2.VideoCapture(str(out / "a.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) >= 6  # paced by the wall clock
    assert len(list((out / "pts").glob("*.pts"))) == 6
    assert "Ctrl-C stops and saves" in capsys.readouterr().err


def test_video_command_keeps_a_camera_recording_at_ctrl_c_and_when_the_camera_stops(fake_camera, tmp_path, capsys):
    fake_camera(4, interrupt=True)
    assert main(["video", "--camera", "2", "--csv", str(tmp_path / "a.csv"), "--threads", "1"]) == 0
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 1 + 4
    fake_camera(3)  # the camera stops delivering: a warning, and the frames so far are kept
    assert main(["video", "--camera", "2", "--csv", str(tmp_path / "b.csv"), "--threads", "1"]) == 0
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 1 + 3
    assert "warning: webcam 2: stopped delivering frames" in capsys.readouterr().err


def test_bench_times_frames_recorded_from_a_camera(fake_camera, tmp_path):
    fake_camera(5)
    assert main(["bench", "--camera", "1", "--frames", "3", "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "b.json")]) == 0
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["video"] == "webcam 1" and result["frames"] == 3 and result["size"] == [640, 480]


@pytest.mark.parametrize("argv", [["video", "--csv", "x.csv"], ["video", str(DEMO_CLIP), "--camera", "0", "--csv", "x.csv"],
                                  ["bench", "--video", str(DEMO_CLIP), "--camera", "0"]])
def test_a_file_or_a_camera_not_both(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "camera" in err[0]


def test_a_missing_camera_is_one_line(tmp_path, capsys):
    if 9 in probe_cameras(9):
        pytest.skip("this machine has a camera at index 9")
    assert main(["video", "--camera", "9", "--csv", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no camera at index 9" in err[0]
    assert not (tmp_path / "a.csv").exists()


def test_a_real_camera_delivers_frames():
    cameras = probe_cameras()
    if not cameras:
        pytest.skip("no camera on this machine (the commands' camera path is covered with a fake camera above)")
    camera = CameraSource(cameras[0])
    got = load_frames(camera, 3)  # closes the camera
    assert len(got) == 3 and got[0].shape[:2] == (camera.size[1], camera.size[0])


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_library_module_imports_the_command_line_app_or_the_offline_tools():
    """The CLI and the tools sit on top of the library; nothing below them reaches up."""
    library = [p for d in ("tracker", "engines", "ui", "training", "benchmarks") for p in (REPO / d).rglob("*.py")
               if not p.is_relative_to(REPO / "tracker" / "cli") and not p.is_relative_to(REPO / "tracker" / "tools")]
    assert len(library) > 40
    wrong = {str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.startswith(("tracker.cli", "tracker.tools")))
             for p in library}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_video_command_searches_beside_the_tracking_on_a_camera_and_inline_on_files(fake_camera, tmp_path, monkeypatch):
    """``--detect-lag``: 3 (a worker process) by default on a camera, 0 (inline) on a file, and
    what the user asks for on either."""
    import tracker.cli.stream
    from tracker.assets import DEMO_CLIP
    from tracker.cli import main
    from tracker.pipeline import LIVE_DETECT_LAG, Tracker

    made = []

    class Recording(Tracker):
        def __init__(self, config):
            made.append(config.detect_lag)
            super().__init__(config)

    monkeypatch.setattr(tracker.cli.stream, "Tracker", Recording)
    fake_camera(4)
    runs = [["--camera", "0"], [str(DEMO_CLIP), "--max-frames", "4"], ["--camera", "0", "--detect-lag", "0"],
            [str(DEMO_CLIP), "--max-frames", "4", "--detect-lag", "2"]]
    for i, argv in enumerate(runs):
        assert main(["video", *argv, "--csv", str(tmp_path / f"{i}.csv")]) == 0
    assert made == [LIVE_DETECT_LAG, 0, 0, 2]


def test_a_camera_hands_out_its_newest_frame_not_its_oldest(monkeypatch):
    """A tracker slower than the camera must work on what the camera sees now: read one after
    another, the driver's queue handed out ever older frames (0.8-2 s behind, user test 8)."""
    import threading

    import tracker.sources

    class Camera:  # delivers a frame (holding its number) each time the test allows one; then stops
        def __init__(self, device):
            self.n, self.allowed, self.released = 0, threading.Semaphore(0), threading.Event()

        def isOpened(self):
            return True

        def read(self):
            if self.n > 0:
                self.allowed.acquire()
            self.n += 1
            return (self.n <= 8, np.full((4, 4, 3), self.n, np.uint8))

        def get(self, prop):
            return 30.0

        def release(self):
            self.released.set()

    monkeypatch.setattr(tracker.sources.cv2, "VideoCapture", Camera)
    monkeypatch.setattr(tracker.sources, "CAMERA_STALL_S", 0.5)
    camera = CameraSource(0)
    assert camera.read()[0, 0, 0] == 1  # the frame read on opening (the camera holds the next)

    def deliver(k: int) -> int:
        for _ in range(k):
            camera.cap.allowed.release()
        end = time.monotonic() + 10
        while camera.cap.n < k + 1 + done[0] and time.monotonic() < end:
            time.sleep(0.005)
        time.sleep(0.05)  # the grabber keeps what it read
        done[0] += k
        return camera.read()[0, 0, 0]

    done = [0]
    assert deliver(4) == 5  # frames 2-5 came while "tracking": the newest, not frame 2
    with pytest.raises(SourceError, match="stopped delivering frames"):
        camera.read()  # each frame once: nothing new within the stall limit
    assert deliver(2) == 7
    camera.cap.allowed.release()
    camera.cap.allowed.release()  # frame 8, then the camera's 9th read fails: it has stopped
    camera._grabber.join(timeout=10)
    assert camera.read()[0, 0, 0] == 8  # what it delivered before stopping still comes first
    with pytest.raises(SourceError, match="stopped delivering frames"):
        camera.read()
    camera.close()
    assert camera.cap.released.is_set()


def test_closing_a_stalled_camera_returns_and_the_camera_is_freed_when_its_read_does(monkeypatch):
    import threading

    import tracker.sources

    unstall = threading.Event()

    class Camera:  # the first frame, then a read that blocks (an unplugged USB camera)
        def __init__(self, device):
            self.reads, self.released = 0, threading.Event()

        def isOpened(self):
            return True

        def read(self):
            self.reads += 1
            if self.reads > 1:
                unstall.wait(10)
            return True, np.zeros((4, 4, 3), np.uint8)

        def get(self, prop):
            return 30.0

        def release(self):
            self.released.set()

    monkeypatch.setattr(tracker.sources.cv2, "VideoCapture", Camera)
    camera = CameraSource(0)
    t0 = time.monotonic()
    camera.close()
    assert time.monotonic() - t0 < 3 and not camera.cap.released.is_set()  # not released under a blocked read
    unstall.set()
    assert camera.cap.released.wait(10)  # the grabber frees it when the read returns


def test_webcam_without_a_camera_is_one_line_not_an_empty_window(monkeypatch, capsys):
    import ui.launch

    if 9 in probe_cameras(9):
        pytest.skip("this machine has a camera at index 9")
    monkeypatch.setattr(ui.launch, "display_problem", lambda: None)
    monkeypatch.setattr(ui.launch, "qt_start_problem", lambda: None)
    monkeypatch.setattr(ui.launch, "launch", lambda *a, **k: pytest.fail("the window was opened"))
    assert main(["webcam", "--device", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no camera at index 9" in err[0]


def test_pictures_are_fingerprinted_as_they_are_read_not_after(tmp_path):
    """``images`` hashed a picture after tracking it: a file replaced meanwhile was recorded as the
    new one beside the old one's outputs, and one deleted was an internal error (review 36)."""
    from tracker.assets import DEMO_IMAGE
    from tracker.fileio import file_digest
    from tracker.sources import ImageSource

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(DEMO_IMAGE.read_bytes())
    b.write_bytes(DEMO_IMAGE.read_bytes())
    warned = []
    source = ImageSource([a, b], "pictures", warn=warned.append, digests=True)
    frames = source.frames()
    next(frames)
    read_as = file_digest(a, whole=True)
    a.write_bytes(b"replaced while tracked")
    b.unlink()
    assert source.digests == {a: read_as} and list(frames) == [] and warned and "b.jpg" in warned[0]


def test_an_array_source_says_which_frame_is_none_and_takes_any_iterable():
    """User test 37: ``ArraySource([img, None, img, img])`` ended the stream at the None unsaid
    (the README's ``track(None)`` says so in one line), and a generator raised a TypeError."""
    from tracker.errors import SourceError
    from tracker.sources import ArraySource

    img = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(SourceError, match="frame 2 is None"):
        list(ArraySource([img, None, img, img]).frames())
    warned = []
    source = ArraySource((f for f in [None, img, None, img]), warn=warned.append)
    assert [f.index for f in source.frames()] == [1, 3] and source.skipped == 2 and len(warned) == 2
    assert (source.length, source.size) == (4, (64, 48))
    for bad in (np.zeros((0, 5, 3), np.uint8), "frame.jpg", np.zeros((8, 8, 5), np.uint8)):  # named and passed like None (verify 37)
        warned = []
        assert [f.index for f in ArraySource([img, bad, img], warn=warned.append).frames()] == [0, 2]
        assert len(warned) == 1 and "frames in memory: frame 2" in warned[0]
