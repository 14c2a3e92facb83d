"""Reading video files: the read-ahead thread keeps order, warnings and errors as a plain read."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_CLIP
from tracker.sources import SourceError, VideoSource
from tracker.video import READ_AHEAD, UNDECODABLE_RUN, open_video, read_ahead, read_frames


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_read_ahead_keeps_order_and_raises_at_the_failing_item():
    def items():
        for i in range(10):
            time.sleep(0.001 * (i % 3))  # uneven producer: order must not depend on timing
            yield i
        raise RuntimeError("decoder died")

    got = []
    with pytest.raises(RuntimeError, match="decoder died"):
        for i in read_ahead(items(), depth=2):
            got.append(i)
            time.sleep(0.002)
    assert got == list(range(10))
    assert not _reader_threads()


def test_read_ahead_stays_within_its_depth_and_stops_when_the_caller_stops():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    gen = read_ahead(items(), depth=3)
    assert next(gen) == 0
    time.sleep(0.2)  # the thread fills the queue, then waits
    # one handed over + 3 queued + 1 waiting to be queued
    assert len(produced) <= 5
    gen.close()
    assert not _reader_threads()
    assert len(produced) <= 5


def test_read_ahead_passes_keyboard_interrupt_through_in_order():
    def items():
        yield 1
        raise KeyboardInterrupt

    gen = read_ahead(items(), depth=2)
    assert next(gen) == 1
    with pytest.raises(KeyboardInterrupt):
        next(gen)


class _FakeCapture:
    """cv2.VideoCapture stand-in: `frames` good reads, then a failure (or an exception)."""

    def __init__(self, frames: int, reported: int, error_at: int | None = None, corrupt: tuple[int, ...] = (), unseen: tuple[int, ...] = ()):
        self.frames, self.reported, self.error_at, self.corrupt, self.unseen = frames, reported, error_at, corrupt, unseen
        self.n = 0
        self.released_while_reading = False
        self.reading = False
        self.released = False

    def get(self, prop):
        # unseen frames: dropped by the decoder without a failed read, their times skipped (25 fps)
        return {cv2.CAP_PROP_FRAME_COUNT: self.reported, cv2.CAP_PROP_FPS: 25.0 if self.unseen else 0,
                cv2.CAP_PROP_POS_MSEC: 40.0 * (self.n - 1)}.get(prop, 0)

    def read(self):
        self.reading = True
        try:
            time.sleep(0.001)
            if self.error_at is not None and self.n == self.error_at:
                raise cv2.error("simulated decoder error")
            if self.n >= self.frames:
                return False, None
            self.n += 1
            while self.n in self.unseen:
                self.n += 1
            if self.n in self.corrupt:  # FFmpeg fails this read and reads on after it
                return False, None
            return True, np.full((4, 4, 3), self.n, np.uint8)
        finally:
            self.reading = False

    def release(self):
        self.released_while_reading |= self.reading
        self.released = True


@pytest.mark.parametrize("ahead", [0, 3])
def test_read_frames_same_frames_and_warning_with_and_without_read_ahead(ahead):
    warnings = []
    cap = _FakeCapture(frames=5, reported=9)
    frames = []
    for f in read_frames(cap, warnings.append, "clip.avi", ahead=ahead):
        frames.append(int(f[0, 0, 0]))
        assert not warnings  # the truncation is reported after the last frame, not before it
    assert frames == [1, 2, 3, 4, 5]
    assert warnings == ["clip.avi: stream ended after frame 5 of 9 (truncated or corrupt); kept what was read"]
    assert cap.released and not cap.released_while_reading
    # where the container stores no count (an estimate from the longest stream), the warning hedges
    warnings.clear()
    list(read_frames(_FakeCapture(frames=5, reported=9), warnings.append, "clip.mkv", ahead=ahead))
    assert len(warnings) == 1 and "suggested about 9" in warnings[0] and "audio track longer" in warnings[0]


@pytest.mark.parametrize("ahead", [0, 3])
def test_an_undecodable_frame_is_read_past_as_none_keeping_later_frames_numbers(ahead):
    def values(cap, **kw):
        return [None if f is None else int(f[0, 0, 0]) for f in read_frames(cap, warnings.append, "clip.avi", ahead=ahead, **kw)]

    warnings = []
    assert values(_FakeCapture(frames=10, reported=10, corrupt=(4, 5))) == [1, 2, 3, None, None, 6, 7, 8, 9, 10] and not warnings
    timed = list(read_frames(_FakeCapture(frames=4, reported=4, corrupt=(1,)), ahead=ahead, timed=True))
    assert timed[0][0] is None and np.isnan(timed[0][1]) and [int(f[0, 0, 0]) for f, _ in timed[1:]] == [2, 3, 4]
    # a run longer than UNDECODABLE_RUN is the end of what can be read
    assert values(_FakeCapture(frames=30, reported=30, corrupt=tuple(range(3, 4 + UNDECODABLE_RUN)))) == [1, 2]
    assert warnings == ["clip.avi: stream ended after frame 2 of 30 (truncated or corrupt); kept what was read"]
    warnings.clear()  # without a reported length, a failed read is the end, as before
    assert values(_FakeCapture(frames=10, reported=0, corrupt=(4,))) == [1, 2, 3] and not warnings


def test_frames_the_decoder_dropped_unseen_are_named_by_the_containers_times():
    """Damaged inter-coded data: FFmpeg dropped 12 frames without a failed read, every later
    frame numbered too low, and the only word was "stream ended" (review 36)."""
    warnings = []
    frames = list(read_frames(_FakeCapture(frames=30, reported=30, unseen=(11, 12, 13)), warnings.append, "clip.avi"))
    assert len(frames) == 27 and warnings == ["clip.avi: stream ended after frame 27 of 30 (truncated or corrupt); its times skip "
                                              "3 frames after frame 10: frames may be missing there, and the later ones numbered "
                                              "too low; kept what was read"]
    warnings.clear()  # a stream that is merely short says nothing about times
    list(read_frames(_FakeCapture(frames=27, reported=30), warnings.append, "clip.avi"))
    assert "times" not in warnings[0]


def test_a_corrupt_mjpeg_frame_keeps_the_rest_of_the_video(tmp_path, corrupt_mjpeg_clip):
    path = tmp_path / "clip.avi"
    corrupt_mjpeg_clip(path)  # frame 6 (0-based) undecodable
    warnings = []
    with VideoSource(path, READ_AHEAD, warnings.append) as source:
        frames = list(source.frames())
    # frame 7 (1-based, as in every output) passed as a sequence's unreadable picture is; the rest kept
    assert [f.index for f in frames] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11] and source.skipped == 1
    assert [round(float(f.image.mean()) / 20) for f in frames] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert warnings == [f"{path}: frame 7 of 12 could not be decoded (corrupt); passed, later frames keep their numbers"]
    with VideoSource(path) as source, pytest.raises(SourceError, match="frame 7 of 12 could not be decoded"):
        list(source.frames())  # without a warn callback, as every source: an error
    with VideoSource(path) as source:  # the viewer's read() passes it too
        got = []
        while (f := source.read()) is not None:
            got.append((source.position, round(float(f.mean()) / 20)))
    assert got == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (8, 7), (9, 8), (10, 9), (11, 10), (12, 11)]


def test_a_badly_damaged_video_says_a_few_runs_of_lost_frames_then_counts_them(monkeypatch):
    import tracker.sources as sources

    warnings = []
    source = VideoSource(DEMO_CLIP, 0, warnings.append)
    fake = _FakeCapture(frames=40, reported=40, corrupt=tuple(range(3, 40, 3)))
    monkeypatch.setattr(source, "cap", fake)
    source.length = 40
    frames = list(source.frames())
    assert len(frames) == 27 and source.skipped == 13 and frames[-1].index == 39
    assert len(warnings) == sources.WARNED_RUNS + 1 and "not listed" in warnings[-1]


@pytest.mark.parametrize("ahead", [0, 3])
def test_read_frames_raises_a_decoder_error_after_the_frames_before_it(ahead):
    cap = _FakeCapture(frames=10, reported=10, error_at=4)
    got = []
    with pytest.raises(cv2.error, match="simulated decoder error"):
        for f in read_frames(cap, ahead=ahead):
            got.append(int(f[0, 0, 0]))
    assert got == [1, 2, 3, 4]
    assert cap.released and not _reader_threads()


def test_read_frames_caller_stopping_early_releases_the_capture():
    cap = _FakeCapture(frames=100, reported=100)
    frames = read_frames(cap, ahead=2)
    next(frames)
    frames.close()
    assert cap.released and not cap.released_while_reading and not _reader_threads()


def test_read_ahead_decodes_the_real_clip_identically():
    plain = [f for _, f in zip(range(12), read_frames(open_video(DEMO_CLIP)[0]))]
    ahead = [f for _, f in zip(range(12), read_frames(open_video(DEMO_CLIP)[0], ahead=3))]
    assert len(plain) == len(ahead) == 12
    assert all(np.array_equal(a, b) for a, b in zip(plain, ahead))


def test_a_paced_recording_lasts_as_long_as_the_live_source_did(tmp_path):
    """Frames of a camera come at the rate they are processed: written once each at the camera's
    30 fps, a 12 s recording played in 2.8 s (user test 8)."""
    from tracker.video import AtomicVideoWriter

    def shade(k: int) -> np.ndarray:
        return np.full((48, 64, 3), 40 * k, np.uint8)

    with AtomicVideoWriter(tmp_path / "live.avi", 10.0, (64, 48), paced=True) as writer:
        # frame 0 on screen 0.5 s, 1 and 2 briefly, 3 through a 60 s pause, 4 for 0.3 s
        for k, now in enumerate((5.0, 5.5, 5.52, 5.6, 65.6)):
            writer.write(shade(k), now)
        writer.write(shade(5), 65.9)
    cap = cv2.VideoCapture(str(tmp_path / "live.avi"))
    shown = []
    while (got := cap.read())[0]:
        shown.append(int(round(got[1].mean() / 40)))
    # each frame until the next came, at least once; the pause held at 2 s (20 frames), not 600
    assert shown == [0] * 5 + [1] + [2] + [3] * 20 + [4] * 3 + [5], shown
    with AtomicVideoWriter(tmp_path / "file.avi", 10.0, (64, 48)) as writer:
        for now in (5.0, 5.5):
            writer.write(shade(0), now)
    assert writer.frames == 2  # a file's frames are its own


def test_an_odd_sized_video_is_padded_not_cropped(tmp_path):
    """The encoder wants even sides: a 641x479 clip came out 640x478, its last pixel column and
    row gone while the CSV's points were in 641x479 (user test 18).  A black one is added."""
    from tracker.video import AtomicVideoWriter

    frame = np.full((479, 641, 3), 200, np.uint8)
    frame[:, -1] = frame[-1] = 60  # the frame's own last column and row
    with AtomicVideoWriter(tmp_path / "o.mp4", 25, (641, 479)) as writer:
        for i in range(3):
            writer.write(frame, at=i)
    ok, back = cv2.VideoCapture(str(tmp_path / "o.mp4")).read()
    assert ok and back.shape == (480, 642, 3)
    assert abs(back[:478, 640].mean() - 60) < 15 and abs(back[478, :640].mean() - 60) < 15  # kept where they were
    assert back[:, 641].mean() < 15 and back[479].mean() < 15 and abs(back[100:300, 100:500].mean() - 200) < 5


def test_a_ctrl_c_is_never_raised_inside_read_aheads_queue(monkeypatch):
    """A Ctrl-C raised inside Queue.get can leave the queue's lock held (CPython cannot make
    `with lock:` safe against it); the reading thread, stuck taking it, never ended and closing
    the stream hung for good (user test 20: a SIGTERM'd ``transfer`` that never exited).  The
    Ctrl-C here arrives while an item is being taken: it must come out after the queue is left,
    and the reading thread end."""
    import os
    import queue
    import signal

    real_get, raised_inside = queue.Queue.get, []

    def get(self, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here unless it is held
            except KeyboardInterrupt:
                raised_inside.append(True)
                raise
        return real_get(self, *args, **kwargs)

    monkeypatch.setattr(queue.Queue, "get", get)
    with pytest.raises(KeyboardInterrupt):
        for _ in read_ahead(iter(range(1000)), 2):
            pass
    assert not raised_inside and not _reader_threads()


def test_a_video_output_with_a_long_name_is_written(tmp_path):
    """Its hidden stand-in is 9 bytes longer: a legal 247-byte name stopped ``video`` and
    ``transfer`` with an internal error (user test 22)."""
    from tracker.video import AtomicVideoWriter, _frames_in

    out = tmp_path / ("m" * 247 + ".mp4")
    with AtomicVideoWriter(out, 10.0, (64, 48)) as writer:
        for i in range(3):
            writer.write(np.full((48, 64, 3), 40 * i, np.uint8), at=i)
    assert _frames_in(out) == 3 and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_two_writers_of_one_video_each_write_their_own_and_a_killed_ones_stand_in_is_removed(tmp_path):
    """A fixed ``.NAME.partial.mp4`` had the second writer write into the first one's published
    video (20 frames became 5) and fail with "reads back incomplete"; a SIGKILLed run's stayed
    for good (review 36)."""
    import subprocess
    import sys

    from tracker.video import AtomicVideoWriter, _frames_in

    out = tmp_path / "same.mp4"
    a, b = AtomicVideoWriter(out, 10.0, (64, 48)), AtomicVideoWriter(out, 10.0, (64, 48))
    assert a.tmp != b.tmp and a.tmp.suffix == ".mp4"
    for i in range(20):
        a.write(np.full((48, 64, 3), 5 * i, np.uint8), at=i)
    for i in range(5):
        b.write(np.full((48, 64, 3), 5 * i, np.uint8), at=i)
    a.close()
    assert _frames_in(out) == 20
    b.close()  # the last one to finish is the output, whole
    assert _frames_in(out) == 5 and [p.name for p in tmp_path.iterdir()] == [out.name]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600 (user test 36)
    # a writer killed mid-way (its lock gone with its process): the next writer of that output removes its stand-in
    code = ("import sys, os, numpy as np; from tracker.video import AtomicVideoWriter; "
            f"w = AtomicVideoWriter({str(out)!r}, 10.0, (64, 48)); w.write(np.zeros((48, 64, 3), np.uint8), at=0); "
            "print(w.tmp, flush=True); os._exit(9)")
    left = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False).stdout.strip())
    assert left.exists() and left.name.startswith(".same.mp4.")
    live = AtomicVideoWriter(out, 10.0, (64, 48))
    assert not left.exists() and live.tmp.exists()
    AtomicVideoWriter(out, 10.0, (64, 48)).abort()  # a live writer's stand-in is left alone
    assert live.tmp.exists()
    live.abort()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
