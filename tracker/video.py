"""Video files: opening and decoding (behind ``tracker.sources.VideoSource``), and writing.

Reading is defensive: an unopenable file is one clear error; a stream that dies mid-way ends
the clip with a warning and everything tracked so far is kept; a frame that cannot be decoded
in between is passed, and the frames after it keep their numbers.  An output video is written to a
temporary file and renamed when complete.
"""
from __future__ import annotations

import errno
import math
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from tracker.errors import SourceError, UsageError, count_of
from tracker.fileio import (
    IMAGE_EXTENSIONS,
    WriteError,
    check_writable,
    interrupts_held,
    locked_temp_file,
    make_parents,
    quiet_opencv,
    remove_if_empty,
    remove_stale_temp_files,
)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
WRITABLE_VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v")  # the containers OpenCV writes MPEG-4 video into
# What cv2.imread reads: one picture, never a video.  FFmpeg would open most of them as a clip of
# one frame (a truncated JPEG too, decoding its grey half), so `video photo.jpg` would "work".
PICTURE_EXTENSIONS = IMAGE_EXTENSIONS + (".jp2", ".pxm", ".sr", ".ras", ".exr", ".pic")


class VideoError(SourceError):
    """A video cannot be opened or decoded; one line naming the file and the reason."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # 0 when the container gives no frame rate (``frame_rate``)
    frames: int  # as reported by the container (may be 0 or wrong for broken files)
    width: int
    height: int


def _file_api() -> int:
    """FFmpeg only: when it fails, OpenCV would try its own AVI/MJPEG parser next, which prints to
    stderr directly ("Unexpected element...") and reads nothing FFmpeg cannot."""
    return cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY


def file_not_found(path: Path | None) -> str:
    """The one line for a video or frame source that is not there; a shell pattern's
    (``frames/*.jpg``, quoted) says how a numbered sequence is given (user test 25)."""
    hint = "; a numbered sequence is given as its printf pattern (frames/%06d.jpg)" if any(
        c in str(path) for c in "*?[") else ""
    return f"{path}: file not found{hint}"


def open_video(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """A video file (a numbered picture sequence is ``tracker.sources.SequenceSource``'s)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(file_not_found(path))
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video (run_tracker images --input reads a folder of pictures)")
    if path.suffix.lower() in PICTURE_EXTENSIONS:
        raise VideoError(f"{path}: a picture ({path.suffix}), not a video (run_tracker images reads pictures)")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file")
    cap = cv2.VideoCapture(str(path), _file_api())
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open as a video (unsupported or corrupt)")
    info = VideoInfo(frame_rate(cap.get(cv2.CAP_PROP_FPS)), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0),
                     int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if info.width <= 0 or info.height <= 0:  # e.g. a text file named .jpg: "opens", decodes nothing
        cap.release()
        raise VideoError(f"{path}: no decodable frame (corrupt, or not a video)")
    return cap, info


READ_AHEAD = 3  # frames a file command decodes ahead of the frame being tracked
# Containers that store their frame count: elsewhere (.mkv, .webm, ...) OpenCV estimates it from the
# longest stream's duration, so complete files with a longer audio track or a variable frame rate
# "ended early" too (user test 10).
COUNTED_CONTAINERS = (".mp4", ".mov", ".m4v", ".3gp", ".avi")


MAX_FPS = 240.0  # above: a container's time base (1000 in a browser's .webm, 90,000), not a frame rate
FALLBACK_FPS = 30.0  # what a video is written at when its source's rate is unknown


def frame_rate(reported: float | None) -> float:
    """A container's or camera's reported rate when it is a frame rate (above 0, at most
    ``MAX_FPS``: a time-lapse's 0.5 is one), else 0: unknown.  The one rule for every reader and
    writer (a source reporting 1000 fps was timed as unknown, its annotated copy written at 1000
    fps, 33x too fast; at 90,000 no copy could be written; review 37)."""
    rate = float(reported or 0.0)
    return rate if np.isfinite(rate) and 0.0 < rate <= MAX_FPS else 0.0
UNDECODABLE_RUN = 8  # failed reads in a row before the reported end that are read past, one lost frame each


def read_frames(cap: cv2.VideoCapture, warn: Callable[[str], None] | None = None, source: str = "",
                ahead: int = 0, release: bool = True, timed: bool = False, first: int = 0) -> Iterator:
    """Frames until the end; a stream that stops before its reported end is warned about once.
    A stream without any frame yields nothing: the caller says so in its own words.  ``timed``:
    (frame, the container's time of it in seconds) pairs instead, read as the frame is decoded
    (a variable-frame-rate video's frames are not evenly spaced; ``VideoSource``).  ``first``: the
    frame the capture was sought to (a seek's stream is that much shorter than the reported length).

    A frame that cannot be decoded before the reported end (a corrupt packet) costs one failed
    read, and FFmpeg reads on after it: up to ``UNDECODABLE_RUN`` of them in a row are read past,
    each yielded as None (timed: (None, NaN)) once a good frame follows, so that every later frame
    keeps its number (stopping there lost the rest of the video; dropping the frame unseen would
    score every later one against the wrong annotation).  The caller says so (``VideoSource``).

    ``ahead > 0``: a background thread decodes up to that many frames ahead while the caller
    works on the current one (OpenCV releases the GIL while decoding, so on two cores decoding
    no longer adds to a frame's latency).  Frames, the warning and errors come in the same order
    as without it; the capture is released (unless ``release`` is False: the caller's
    ``VideoSource`` keeps it to seek) only after that thread has stopped."""
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    period = 1.0 / fps if (fps := frame_rate(cap.get(cv2.CAP_PROP_FPS))) else 0.0
    gap = (0, 0)  # the widest skip in the container's times: (frames it skips, the frame after which)
    last = float("nan")
    reads = _reads(cap, UNDECODABLE_RUN if expected else 0)
    if ahead > 0:
        reads = read_ahead(reads, ahead)
    n = 0  # frames yielded, lost ones included
    lost = 0  # failed reads since the last good frame
    try:
        for ok, frame, seconds in reads:
            if not decoded(ok, frame):
                lost += 1
                if lost <= UNDECODABLE_RUN and first + n + lost < expected:
                    continue
                if warn and expected and 0 < n < expected - first - 1:
                    # Frames FFmpeg dropped without a failed read (damaged inter-coded data) leave the
                    # stream short and every later frame numbered too low; the times show where (review 36).
                    skipped = (f"; its times skip {count_of(gap[0], 'frame')} after frame {gap[1]}: frames may be missing there, "
                               "and the later ones numbered too low") if gap[0] else ""
                    if Path(source).suffix.lower() in COUNTED_CONTAINERS:
                        warn(f"{source}: stream ended after frame {first + n} of {expected} (truncated or corrupt){skipped}; "
                             "kept what was read")
                    else:
                        warn(f"{source}: stream ended after frame {first + n}, where its length suggested about {expected} (a truncated "
                             f"file, or only an audio track longer than the video or a variable frame rate){skipped}; kept what was read")
                return
            for _ in range(lost):
                n += 1
                yield (None, float("nan")) if timed else None
            if period and not lost and math.isfinite(seconds - last) and (skip := round((seconds - last) / period) - 1) > gap[0]:
                gap = (skip, first + n)
            last, lost = seconds, 0
            n += 1
            yield (frame, seconds) if timed else frame
    finally:
        reads.close()
        if release:
            cap.release()


def decoded(ok: bool, frame: np.ndarray | None) -> bool:
    """Whether a ``cap.read()`` gave a frame."""
    return bool(ok) and frame is not None and frame.size > 0


def _reads(cap: cv2.VideoCapture, past: int = 0) -> Iterator[tuple[bool, np.ndarray | None, float]]:
    """``cap.read()`` results, each with the frame's time in the container (seconds), up to and
    including the first failed one, or the ``past + 1``-th failed one in a row."""
    failed = 0
    while True:
        ok, frame = cap.read()
        yield ok, frame, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        failed = 0 if decoded(ok, frame) else failed + 1
        if failed > past:
            return


T = TypeVar("T")


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, consumed by a background thread at most ``depth`` items ahead of the caller.

    Same order; an exception raised by ``items`` is raised here at its place in the sequence.
    Closing this generator (the caller stops early, raises, or is interrupted by Ctrl-C) stops
    the thread and waits for it, so nothing reads from ``items`` afterwards."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():  # a timeout, not a blocking put: a stopped caller takes nothing
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed over to the caller's thread, raised there
            put((False, exc))

    def get():
        # A Ctrl-C inside Queue.get could leave the queue's lock held (Python cannot make `with
        # lock:` safe against it; 35-42% of interrupts there, user test 20), and the worker, stuck
        # taking it, never ended: the join below hung for good.  Interrupts are held while it is
        # taken and delivered between short waits.
        while True:
            with interrupts_held():
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    pass

    worker = threading.Thread(target=work, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            more, item = get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        worker.join()


def check_video_output(path: Path, option: str = "") -> None:
    """A UsageError unless `path` names a container the writer can fill (else FFmpeg writes an
    MPEG-4 stream into `x.jpg`, or refuses `.webm` only after printing its own complaint)."""
    if Path(path).suffix.lower() not in WRITABLE_VIDEO_EXTENSIONS:
        raise UsageError(f"{option + ' ' if option else ''}{path}: an output video must be one of {', '.join(WRITABLE_VIDEO_EXTENSIONS)}")


MAX_HOLD_S = 2.0  # a paced frame longer on screen than this was a pause (the viewer's Space, Ctrl-Z)


class AtomicVideoWriter:
    """cv2.VideoWriter to a temporary file, renamed onto the target by `close()` once the file
    reads back complete.  As a context manager it closes on success and deletes the temporary
    file on any exception (Ctrl-C included); one a killed process left (SIGKILL) is deleted by the
    next writer of that output.

    ``paced``: the frames come from a live source at whatever rate they are processed, so each
    stays in the video until the next one came (at ``fps``, at least once, at most
    ``MAX_HOLD_S``: a longer wait is a pause, not a scene): the video then lasts as long as the
    recording did, where one frame each played a camera recording 1.5-4x too fast (user test 8).
    A frame is written when the next one comes (or at ``close``).  An unknown ``fps`` (0, or a
    time base: ``frame_rate``) is written at ``FALLBACK_FPS``."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], paced: bool = False):
        self.path = Path(path)
        check_video_output(self.path)
        check_writable(self.path)  # a folder or read-only target fails now, not at the rename after the whole clip
        self._made = make_parents(self.path)  # removed again by abort() where empty
        remove_stale_temp_files(self.path)  # a killed run's (SIGKILL leaves no time to delete it)
        # Locked while written and named for this writer alone (a fixed name had two writers of
        # one output write into one file; review 36), its name fitting where the output's does.
        self._lock, tmp = locked_temp_file(self.path, container=True)
        self.tmp = Path(tmp)
        # The encoder wants even sides and crops an odd one (a 641x479 clip came out 640x478 while
        # its CSV's points were in 641x479; user test 18): a black pixel row or column is added
        # at the right or bottom instead, so every pixel keeps its coordinates.
        self._pad = (size[0] % 2, size[1] % 2)
        fps = frame_rate(fps) or FALLBACK_FPS
        with quiet_opencv():
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[0] + self._pad[0], size[1] + self._pad[1]))
        if not self.writer.isOpened():
            self._release_stand_in()
            remove_if_empty(self._made)
            raise VideoError(f"{self.path}: cannot create the output video")
        self.size = size
        self.fps, self.paced = fps, paced
        self._max_hold = max(1, int(MAX_HOLD_S * fps))  # frames a gap or a pause is shown at most (a 0.4 fps time-lapse's: 0)
        self.frames = 0
        self.finished = False
        self._start = 0.0
        self._held: np.ndarray | None = None  # paced: the frame on screen until the next comes
        self._next_at = 0  # unpaced: the source index the next frame should have

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.finished:
            self.close()

    def write(self, frame: np.ndarray, now: float | None = None, at: int | None = None) -> None:
        """Add a frame; ``now``: when it came (``time.perf_counter()``, by default the call's) if
        paced; ``at``: its index in its source (0-based) if not: the source's frames missing before
        it (a numbered sequence's absent or unreadable pictures) are filled with the last one, so
        that the video's frame k is still the CSV's and the .pts' frame k + 1 (user test 13); a gap
        longer than ``MAX_HOLD_S`` is not a pause in one shot but numbers far apart (pictures
        named by the time of day: one frame for each missing number made millions; review 26),
        and is shown that long only."""
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        if any(self._pad):
            frame = cv2.copyMakeBorder(frame, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_CONSTANT, value=0)
        if not self.paced:
            if at is not None and at > self._next_at:
                self._put(frame if self._held is None else self._held, min(at - self._next_at, self._max_hold))
            self._next_at = (self._next_at if at is None else max(at, self._next_at)) + 1
            self._put(frame, 1)
            self._held = frame  # (unpaced: only what a gap is filled with)
            return
        now = time.perf_counter() if now is None else now
        if self._held is None:
            self._start = now
        else:
            wanted = int((now - self._start) * self.fps) - self.frames  # the slots until this frame came
            copies = max(1, min(wanted, self._max_hold))
            self._put(self._held, copies)
            if copies < wanted:  # a pause: the frames after it keep their spacing, not the pause's
                self._start = now - self.frames / self.fps
        self._held = frame

    def _put(self, frame: np.ndarray, copies: int) -> None:
        for _ in range(copies):
            self.writer.write(frame)
        self.frames += copies

    def close(self) -> None:
        with interrupts_held():
            try:
                if self._held is not None and self.paced:
                    self._put(self._held, 1)
                self._held = None
                self.writer.release()
                self.finished = True
                # cv2.VideoWriter reports no write error: a full disk leaves a file without its index
                # (an MP4 without its moov atom), which only reading it back reveals.
                if self.frames and _frames_in(self.tmp) < self.frames:  # (FFmpeg would complain about an empty file)
                    full = shutil.disk_usage(self.tmp.parent).free < 1 << 20
                    raise OSError(errno.ENOSPC if full else errno.EIO, os.strerror(errno.ENOSPC) if full else
                                  f"the video written reads back incomplete ({self.frames} frames written)")
                os.replace(self.tmp, self.path)
                self._unlock()
            except BaseException as exc:  # also e.g. a folder made at the target meanwhile: name it, leave no hidden file
                self.abort()
                if isinstance(exc, OSError):
                    raise WriteError(self.path, exc) from exc
                raise

    def abort(self) -> None:
        """Give up: delete the temporary file and the folders made for it where empty; an existing
        file at ``path`` stays untouched."""
        self.writer.release()
        self.finished = True
        self._release_stand_in()
        remove_if_empty(self._made)

    def _release_stand_in(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._lock >= 0:  # (once: the number may be another file's after it is closed)
            os.close(self._lock)
            self._lock = -1


def _frames_in(path: Path) -> int:
    """The frame count a written video's container reports; 0 when it cannot be opened."""
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path), _file_api())
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    finally:
        cap.release()
