"""Where frames come from, and the one loop that tracks them.

A ``FrameSource`` is a camera, a video file, a numbered picture sequence (``frames/%06d.jpg``),
pictures (a folder, a list, one file) or frames already in memory.  Every consumer (each
command, the viewer's worker, ``bench``, the soak benchmark) reads it through ``frames()`` and
tracks it with ``track_stream``, so reading, skipping bad input and timing a frame happen in one
place each:

* ``frames()`` yields ``SourceFrame``s in order.  A problem that does not stop the stream (a video
  cut short, a frame it cannot decode, an unreadable picture in a folder, a camera that stops) goes to the source's ``warn``
  callback and the stream goes on or ends with what was read; without ``warn`` it raises
  ``SourceError``.  A video opened with ``read_ahead > 0`` is decoded by a background thread
  while the current frame is tracked (OpenCV releases the GIL while decoding).
* ``read()`` / ``seek()`` / ``position`` let the viewer step and jump; a source that is seeked
  must be opened with ``read_ahead=0`` (frames decoded ahead would be those of the old position).
* ``track_stream(tracker, source)`` resets the tracker (a new stream is a new scene) and yields a
  ``TrackedFrame`` per frame, ``track_ms`` being the wall time of ``Tracker.track`` alone.

No Qt here: the viewer's thread uses these classes as the commands do.
"""
from __future__ import annotations

import bisect
import itertools
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from tracker.detector import BoxError, Detection
from tracker.errors import SourceError
from tracker.fileio import IMAGE_KINDS, ImageReadError, decode_file, file_digest, list_images, picture_array, read_image
from tracker.video import (
    PICTURE_EXTENSIONS,
    READ_AHEAD,
    UNDECODABLE_RUN,
    VideoError,
    decoded,
    file_not_found,
    frame_rate,
    open_video,
    quiet_opencv,
    read_frames,
)

if TYPE_CHECKING:
    from tracker.pipeline import FrameResult, Tracker

MAX_CAMERA_INDEX = 4
CAMERA_FPS = 30.0  # what a recording of a camera that does not report its rate is written at
CAMERA_STALL_S = 5.0  # a camera that delivers no frame for this long has stopped
SIZE_VOTERS = 5  # a numbered sequence's size: the most common among its first pictures
WARNED_RUNS = 5  # runs of undecodable frames of a video each said in a warning; the rest are counted
SEQUENCE_FPS = 30.0  # numbered pictures carry no rate; FFmpeg's and OpenCV's default for them
CAMERA = "webcam"  # the word that names a camera wherever a command takes a file (--target webcam, --source webcam)

Warn = Callable[[str], None]


@dataclass(frozen=True)
class SourceSpec:
    """What to open: kind 'webcam' (device index), 'video' (a file or a numbered sequence's
    pattern), 'folder' or 'image' (path)."""

    kind: str
    path: Path | None = None
    device: int = 0

    @property
    def label(self) -> str:
        return f"webcam {self.device}" if self.kind == CAMERA else str(self.path)


def spec_from_argument(source: str | Path | None, device: int = 0) -> SourceSpec:
    """A command-line source (``webcam``, a folder, a picture or a video) -> a SourceSpec;
    whether it exists is checked on opening.  Pictures are told apart by their extension."""
    if source is None or str(source) == CAMERA:
        return SourceSpec(CAMERA, device=device)
    path = Path(source)
    if path.is_dir():
        return SourceSpec("folder", path)
    picture = path.suffix.lower() in PICTURE_EXTENSIONS and not is_numbered(path)  # frames/%06d.jpg: a sequence, read as a video
    return SourceSpec("image" if picture else "video", path)


def probe_cameras(max_index: int = MAX_CAMERA_INDEX) -> list[int]:
    """Indices 0..max_index that open and deliver a frame."""
    found = []
    for i in range(max_index + 1):
        if sys.platform.startswith("linux") and not Path(f"/dev/video{i}").exists():
            continue  # no device node: skip the slow (and noisy) open attempt
        with quiet_opencv():
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened() and cap.read()[0]:
                    found.append(i)
            finally:
                cap.release()
    return found


@dataclass(frozen=True)
class SourceFrame:
    """One frame: its 0-based position in the source, the BGR picture, its file (pictures only),
    and its time in seconds (``Tracker.track``'s timestamp; None for unrelated pictures)."""

    index: int
    image: np.ndarray
    path: Path | None = None
    time: float | None = None


class FrameSource:
    """Base of every source.  ``length``: frames when known, else 0 (a camera, a video whose
    container does not say); ``fps``: the recorded rate (0 when unknown; a camera that does not
    say is taken at ``CAMERA_FPS``); ``size``: (width,
    height) of the first frame; ``live``: a camera (runs until stopped, cannot seek);
    ``sequence``: consecutive frames of one scene (track over time) rather than unrelated pictures."""

    label: str = ""
    length: int = 0
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    live: bool = False
    sequence: bool = True
    position: int = 0  # index of the next frame read() returns
    skipped: int = 0  # frames that could not be read, warned about and passed (``frames()`` with ``warn``)

    def __init__(self, warn: Warn | None = None):
        self.warn = warn

    @property
    def seekable(self) -> bool:
        return not self.live

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end; SourceError when it cannot be read."""
        raise NotImplementedError

    def frames(self) -> Iterator[SourceFrame]:
        """The frames from ``position`` on (see the module's docstring for problems on the way)."""
        while True:
            try:
                image = self.read()
            except SourceError as exc:
                if self.warn is None:
                    raise
                self.warn(str(exc))
                if self.live:
                    return
                self.skipped += 1
                continue
            if image is None:
                return
            index = self.position - 1  # read() may pass frames that do not exist (a sequence's missing numbers)
            yield SourceFrame(index, image, self.path_at(index), self.time_at(index))

    def path_at(self, index: int) -> Path | None:
        return None

    def time_at(self, index: int) -> float | None:
        """The time of frame `index` in seconds at the recorded rate; None when the rate is
        unknown or not a frame rate (a container's 0 or 90,000)."""
        rate = frame_rate(self.fps)
        return index / rate if self.sequence and rate else None

    def seek(self, index: int) -> None:
        if self.live:
            raise SourceError(f"{self.label}: cannot seek in a live source")
        # a length the container does not give (0) bounds nothing: every seek went to frame 0 (review 37)
        self.position = max(int(index), 0) if self.length <= 0 else int(np.clip(index, 0, self.length - 1))

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CameraSource(FrameSource):
    """A camera by index.  Opening reads the first frame, so a camera that delivers nothing fails
    here, in one line, and ``size`` is known before tracking starts.

    A thread reads the camera as fast as it delivers and keeps only the newest frame, which
    ``read()`` returns (each frame once): a tracker slower than the camera then works on what the
    camera sees now.  Read one after another, the driver's queue (4 frames on V4L2) handed out
    frames ever older: the picture lagged 0.8-2 s behind at 7 fps (user test 8)."""

    live = True

    def __init__(self, device: int = 0, warn: Warn | None = None):
        super().__init__(warn)
        self.label = f"webcam {device}"
        with quiet_opencv():
            self.cap = cv2.VideoCapture(device)
            ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok or first is None:
            self.cap.release()
            raise SourceError(f"no camera at index {device}, or it delivers no frames (found: {probe_cameras() or 'none'})")
        rate = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = frame_rate(rate) or CAMERA_FPS
        self.size = (first.shape[1], first.shape[0])
        self._newest: np.ndarray | None = first  # not yet returned by read()
        self._newest_at = self._read_at = time.monotonic()  # when it came; when the frame read() returned did
        self._ended = self._closing = False
        self._changed = threading.Condition()
        self._grabber = threading.Thread(target=self._grab, name=f"{self.label} grabber", daemon=True)
        self._grabber.start()

    def _grab(self) -> None:
        try:
            while not self._closing and not self._ended:
                try:
                    ok, frame = self.cap.read()  # blocks until the camera's next frame
                except cv2.error:  # some backends raise when the camera is unplugged
                    ok, frame = False, None
                with self._changed:
                    if not ok or frame is None:
                        self._ended = True
                    else:
                        self._newest, self._newest_at = frame, time.monotonic()
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()
            if self._closing:
                self.cap.release()  # close() gave up waiting for a blocked read: the device is freed here

    def read(self) -> np.ndarray | None:
        with self._changed:
            self._changed.wait_for(lambda: self._newest is not None or self._ended or self._closing, CAMERA_STALL_S)
            frame, self._newest, at = self._newest, None, self._newest_at
        if frame is None:
            raise SourceError(f"{self.label}: stopped delivering frames")
        self.position += 1
        self._read_at = at
        return frame

    def time_at(self, index: int) -> float | None:
        # The camera's clock, not the index: frames a slower tracker never read are dropped.
        return self._read_at

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        # A stalled camera can block its read for seconds: the window closes without waiting for
        # it, and the grabber releases the capture when the read returns (never under it).
        self._grabber.join(timeout=1.0)
        if not self._grabber.is_alive():
            self.cap.release()  # (a second release, after the grabber's own, does nothing)


class VideoSource(FrameSource):
    """A video file; ``read_ahead`` frames decoded in the background by ``frames()``."""

    def __init__(self, path: Path, read_ahead: int = 0, warn: Warn | None = None):
        super().__init__(warn)
        self.label = str(path)
        self.cap, info = open_video(path)  # VideoError (a SourceError) for a missing or undecodable file
        self.length, self.fps, self.size = max(info.frames, 0), info.fps, (info.width, info.height)
        self.read_ahead = read_ahead
        self._last_time: float | None = None  # the time given to the frame before (``_clock``)
        self._last_stamp = float("nan")  # and the container's time of it
        self._reading: Iterator | None = None  # the frames being read (``_stop_reading``)
        self._runs_passed = 0  # runs of undecodable frames said (``_passed``)

    def read(self) -> np.ndarray | None:
        # as frames(): a frame that cannot be decoded before the reported end is passed, not the end
        for _ in range(UNDECODABLE_RUN + 1):
            ok, frame = self.cap.read()
            self.position += 1
            if decoded(ok, frame):
                return frame
            if self.position >= self.length:
                break
        self.position -= 1  # the failed read at the end is no frame
        return None

    def frames(self) -> Iterator[SourceFrame]:
        # read_frames says once, after the last good frame, that the stream ended early; a run of
        # frames it could not decode before that is said here, as a sequence's unreadable
        # pictures are: passed (their numbers kept, their CSV rows and .pts absent) and counted.
        self._stop_reading()
        self._reading = read_frames(self.cap, self.warn, self.label, self.read_ahead, release=False, timed=True, first=self.position)
        lost = 0
        for image, stamp in self._reading:
            self.position += 1
            if image is None:
                lost += 1
                continue
            if lost:
                self._passed(self.position - 1 - lost, lost)
                lost = 0
            yield SourceFrame(self.position - 1, image, time=self._clock(self.position - 1, stamp))

    def _passed(self, first: int, count: int) -> None:
        """Say that frames ``first`` .. ``first + count - 1`` (0-based) could not be decoded."""
        which = f"frame {first + 1}" if count == 1 else f"frames {first + 1}-{first + count}"
        problem = f"{self.label}: {which} of {self.length} could not be decoded (corrupt); passed, later frames keep their numbers"
        if self.warn is None:
            raise SourceError(problem)
        if self._runs_passed < WARNED_RUNS:  # a badly damaged clip would flood the terminal and result.json
            self.warn(problem)
        elif self._runs_passed == WARNED_RUNS:
            self.warn(f"{self.label}: more frames could not be decoded; they are passed and counted, not listed")
        self._runs_passed += 1
        self.skipped += count

    def _stop_reading(self) -> None:
        """Stop the frames being read, and their read-ahead thread, before the capture is sought
        or released: released while that thread was inside ``cap.read()``, FFmpeg crashed the
        process or hung it for good (3 segfaults, an abort and a hang in 16 runs that closed the
        source with its frames still held; review 29)."""
        if self._reading is not None:
            self._reading.close()
            self._reading = None

    def _clock(self, index: int, stamp: float) -> float | None:
        """Frame `index`'s time: the frame before's moved on by the container's own step between
        their `stamp`s (seconds), so that a variable-frame-rate video (a phone's) is smoothed at its
        frames' true spacing, not at its average rate; by a frame period where the container's
        times do not run forward (none given, or one repeated: comparing with the time handed out
        instead kept every later frame a period behind: review 28c); None where the rate is not a
        frame rate (``time_at``)."""
        if self.time_at(index) is None:
            return None
        if self._last_time is None:
            t = stamp if np.isfinite(stamp) else self.time_at(index)
        elif np.isfinite(stamp) and np.isfinite(self._last_stamp) and stamp > self._last_stamp:
            t = self._last_time + (stamp - self._last_stamp)
        else:
            t = self._last_time + 1.0 / self.fps
        self._last_time, self._last_stamp = t, stamp
        return t

    def seek(self, index: int) -> None:
        self._stop_reading()
        super().seek(index)
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.position)
        self._last_time, self._last_stamp = None, float("nan")  # the next frame's own time, wherever it is

    def close(self) -> None:
        self._stop_reading()
        self.cap.release()


class ImageSource(FrameSource):
    """Pictures in a given order (a folder's, a list's, or one file); unrelated to each other."""

    sequence = False

    def __init__(self, paths: Sequence[Path], label: str, warn: Warn | None = None, digests: bool = False):
        super().__init__(warn)
        self.paths, self.label, self.length = list(paths), label, len(paths)
        # `digests`: each picture's ``file_digest`` as it is read, before it is tracked (``images``
        # records it: taken after the tracking, a file replaced meanwhile was recorded as the new
        # one beside the old one's outputs, and one deleted was an internal error; review 36)
        self.digests: dict[Path, str] | None = {} if digests else None

    def read(self) -> np.ndarray | None:
        if self.position >= self.length:
            return None
        path = self.paths[self.position]
        self.position += 1  # an unreadable picture is passed, not retried
        try:
            image = read_image(path)
            if self.digests is not None:
                self.digests[path] = file_digest(path, whole=True)
            return image
        except ImageReadError as exc:
            raise SourceError(str(exc)) from None
        except OSError as exc:
            raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None

    def path_at(self, index: int) -> Path | None:
        return self.paths[index] if 0 <= index < self.length else None


# One printf conversion for the number (%d, %06d, %4d) in a file name; %% is a literal %.
NUMBERED_NAME = re.compile(r"((?:[^%]|%%)*)%0?[0-9]*d((?:[^%]|%%)*)")


def is_numbered(path: Path) -> bool:
    """Whether `path` names a numbered picture sequence (a printf pattern), not a file: a file
    that exists is itself whatever its name (``clip 100%.mp4`` was taken for a pattern; review 26)."""
    return "%" in Path(path).name and not Path(path).exists()


def numbered_pictures(pattern: Path) -> list[tuple[int, Path]]:
    """(number, file) of every file ``pattern`` (``frames/%06d.jpg``) names, by number.  A file
    matches when printf would write its name for its number (``%06d``: 000007, and 1234567 past
    six digits; ``%d``: 7, not 007), so each number has one file at most."""
    parts = NUMBERED_NAME.fullmatch(pattern.name)
    if parts is None:
        raise VideoError(f"{pattern}: no such file, and not a numbered-picture pattern (one %d, %06d ... in the file name)")
    if not pattern.parent.is_dir():
        raise VideoError(f"{pattern}: folder {pattern.parent} not found")
    prefix, suffix = (re.escape(p.replace("%%", "%")) for p in parts.groups())
    candidate = re.compile(f"{prefix}( *[0-9]+){suffix}")
    found = []
    for path in pattern.parent.iterdir():
        m = candidate.fullmatch(path.name)
        if m and pattern.name % int(m.group(1)) == path.name and not path.is_dir():
            found.append((int(m.group(1)), path))
    return sorted(found)


def clip_files(path: Path | None, name: str) -> dict[str, Path | None]:
    """What reading the clip at `path` reads, by name for ``fileio.check_outputs_apart``: the
    file, or every picture of a numbered sequence (an output named like one would replace it)."""
    if path is None or not is_numbered(path):
        return {name: path}
    try:
        pictures = numbered_pictures(Path(path))
    except VideoError:
        pictures = []  # opening the clip says what is wrong with it
    return {name: path, **{f"a picture of {name} ({p.name})": p for _, p in pictures}}


class SequenceSource(ImageSource):
    """Numbered pictures given as a printf pattern (``frames/%06d.jpg``, as FFmpeg and OpenCV name
    them) read as one clip at ``SEQUENCE_FPS``: every file the pattern matches, by number, from any
    first number.  Read here rather than by OpenCV's CAP_IMAGES, which ends the clip silently at
    the first missing number or unreadable picture and finds no sequence starting past 4.

    Frame k is picture number first + k: a missing number keeps its frame number without a frame,
    as an unreadable picture does, so that outputs named by frame number (a .pts per frame, as
    300VW names its annotations) stay paired with the pictures after a gap.  With ``warn``, an
    unreadable picture is passed with a warning naming it and missing numbers get one warning;
    without it an unreadable picture raises ``SourceError`` (see the module's docstring)."""

    sequence = True
    fps = SEQUENCE_FPS

    def __init__(self, pattern: Path, warn: Warn | None = None):
        pattern = Path(pattern)
        numbered = numbered_pictures(pattern)
        if not numbered:
            raise VideoError(f"{pattern}: no picture of this numbered sequence found")
        numbers = [n for n, _ in numbered]
        super().__init__([p for _, p in numbered], str(pattern), warn)
        # frame index -> picture, by number: memory follows the pictures, not the numbers' span
        # (pictures numbered by date and time leave gaps of millions)
        self.frame_of = [n - numbers[0] for n in numbers]  # sorted, one per picture
        self.length = numbers[-1] - numbers[0] + 1
        if warn and (missing := self.length - len(numbered)):
            start, end = next((n + 1, m - 1) for n, m in zip(numbers, numbers[1:]) if m > n + 1)
            gap = pattern.name % start + (f" to {pattern.name % end}" if end > start else "")
            warn(f"{pattern}: {missing} {'number' if missing == 1 else 'numbers'} missing in the sequence "
                 f"(first gap: {gap}); they keep their frame numbers, without a frame (an annotated video shows the one before)")
        # The clip's size (the output video is opened before the frames are read): the most common
        # among its first readable pictures, so that a stray first one (a thumbnail) is what is skipped.
        sizes: list[tuple[int, int]] = []
        for path in self.paths:
            if len(sizes) == SIZE_VOTERS:
                break
            try:
                shape = decode_file(path).shape  # not converted: its warnings come once, with the clip's frames
            except ImageReadError:
                continue  # reported when the clip reaches it
            sizes.append((shape[1], shape[0]))
        if not sizes:
            raise VideoError(f"{pattern}: none of the {len(numbered)} pictures of this numbered sequence is readable")
        self.size = max(sizes, key=sizes.count)  # the first of the most common

    def read(self) -> np.ndarray | None:
        k = bisect.bisect_left(self.frame_of, self.position)  # a missing number is passed: the next picture keeps its own
        if k == len(self.frame_of):
            self.position = self.length
            return None
        self.position = self.frame_of[k] + 1  # an unreadable picture is passed, not retried
        path = self.paths[k]
        try:
            image = read_image(path, self.label)  # warned once for the clip, not on every frame
        except ImageReadError as exc:
            raise SourceError(str(exc)) from None
        # A picture of another size is not a frame of this clip (a stray file, a thumbnail):
        # resizing it would stretch it, its landmarks would not be in its own pixels, and a face
        # is followed from one frame to the next in pixel coordinates.  So it is skipped.
        if (image.shape[1], image.shape[0]) != self.size:
            raise SourceError(f"{path}: {image.shape[1]}x{image.shape[0]}, not the "
                              f"{self.size[0]}x{self.size[1]} of the sequence's pictures")
        return image

    def path_at(self, index: int) -> Path | None:
        k = bisect.bisect_left(self.frame_of, index)
        return self.paths[k] if k < len(self.frame_of) and self.frame_of[k] == index else None

    def seek(self, index: int) -> None:
        super().seek(index)
        # onto the picture at or before a missing number: reading passes a gap forwards, so
        # stepping back into one would show the same frame again
        self.position = self.frame_of[max(bisect.bisect_right(self.frame_of, self.position) - 1, 0)]


class ArraySource(FrameSource):
    """Frames already in memory, any iterable of them (timing without decoding, tests).  An item
    that is no picture (None, what ``cv2.imread`` returns for a file it could not read; an empty
    array, a string) is a ``SourceError`` naming the frame, warned about and passed when ``warn``
    is given: None ended the stream unsaid (user test 37)."""

    def __init__(self, frames: Iterable[np.ndarray | None], label: str = "frames in memory", fps: float = 0.0, live: bool = False,
                 warn: Warn | None = None):
        super().__init__(warn)
        self.images, self.label, self.fps, self.live = list(frames), label, fps, live
        self.length = len(self.images)
        first = next((image for image in self.images if image is not None), None)
        self.size = (first.shape[1], first.shape[0]) if first is not None else (0, 0)

    def read(self) -> np.ndarray | None:
        if self.position >= self.length:
            return None
        self.position += 1
        image = self.images[self.position - 1]
        try:
            picture_array(image, f"{self.label}: frame {self.position}")  # (the frame named; tracking reads it itself)
        except ImageReadError as exc:
            raise SourceError(str(exc)) from None
        return image


def open_source(spec: SourceSpec, read_ahead: int = 0, warn: Warn | None = None) -> FrameSource:
    """Open what ``spec`` names; SourceError (one line) when it cannot be opened."""
    if spec.kind == CAMERA:
        return CameraSource(spec.device, warn)
    if spec.kind == "video" and spec.path is not None and is_numbered(spec.path):  # a pattern: no such file exists
        return open_clip(spec.path, read_ahead, warn)
    if spec.path is None or not spec.path.exists():
        raise SourceError(file_not_found(spec.path))
    if spec.kind == "folder" or spec.path.is_dir():
        if not spec.path.is_dir():
            raise SourceError(f"{spec.path}: not a folder")
        images = list_images(spec.path)
        if not images:
            raise SourceError(f"{spec.path}: no images ({IMAGE_KINDS}) in this folder")
        return ImageSource(images, str(spec.path), warn)
    if spec.kind == "image":
        return ImageSource([spec.path], str(spec.path), warn)
    return open_clip(spec.path, read_ahead, warn)


def open_clip(path: Path, read_ahead: int = 0, warn: Warn | None = None) -> FrameSource:
    """A video file, or a numbered picture sequence when the file name holds a ``%`` (``frames/%06d.jpg``)."""
    return SequenceSource(path, warn) if is_numbered(path) else VideoSource(path, read_ahead, warn)


def open_video_or_camera(path: Path | None, camera: int | None, warn: Warn | None = None) -> FrameSource:
    """What a command that reads a video reads: camera ``camera`` when given, else the video
    file at ``path`` (decoded ``READ_AHEAD`` frames ahead) or the numbered sequence it names."""
    return CameraSource(camera, warn) if camera is not None else open_clip(path, READ_AHEAD, warn)


def load_frames(source: FrameSource, limit: int | None = None, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The first ``limit`` frames (None: all) in memory, resized to ``size`` (width, height) when
    given; the source is closed after."""
    with source:
        return [f.image if size is None or (f.image.shape[1], f.image.shape[0]) == size else cv2.resize(f.image, size)
                for f in itertools.islice(source.frames(), limit)]


@dataclass(frozen=True)
class TrackedFrame:
    """A source's frame and what the tracker made of it; ``track_ms``: wall time of ``Tracker.track``."""

    index: int
    image: np.ndarray
    result: FrameResult
    track_ms: float
    path: Path | None = None
    boxes: list[Detection] | None = None  # the caller's boxes for this frame, when it gave some
    time: float | None = None  # the frame's time in seconds (``SourceFrame.time``), None for unrelated pictures

    @property
    def fps(self) -> float:
        return 1000.0 / max(self.track_ms, 1e-3)


BoxesFor = Callable[[SourceFrame], "list[Detection] | None"]


def track_stream(tracker: Tracker, source: FrameSource, *, limit: int | None = None, boxes: BoxesFor | None = None,
                 on_bad_boxes: Callable[[SourceFrame, BoxError], None] | None = None) -> Iterator[TrackedFrame]:
    """Track ``source`` from its current position: at most ``limit`` frames; ``boxes(frame)``:
    the caller's face boxes for a frame (None: the detector's), a frame whose boxes do not fit
    the picture going to ``on_bad_boxes`` (without it, the ``BoxError`` is raised)."""
    tracker.reset()  # a new stream: no track survives from the frames before it
    for frame in itertools.islice(source.frames(), limit):
        given = boxes(frame) if boxes else None
        t0 = time.perf_counter()
        try:
            result = tracker.track(frame.image, boxes=given, timestamp=frame.time)
        except BoxError as exc:
            if on_bad_boxes is None:
                raise
            on_bad_boxes(frame, exc)
            continue
        yield TrackedFrame(frame.index, frame.image, result, 1000 * (time.perf_counter() - t0), frame.path, given, frame.time)


@dataclass
class Interruption:
    """What ``until_interrupted`` saw: `seen`, a Ctrl-C (or SIGTERM); `early`, one that cut a
    file's run short (a camera's is its normal end)."""

    seen: bool = False
    early: bool = False


@contextmanager
def until_interrupted(source: FrameSource) -> Iterator[Interruption]:
    """Ctrl-C ends the stream where it is, like the end of its file, and what was tracked is kept:
    a camera runs until stopped; a file's run cut short says so (``early``), so that the command
    saves the frames done and exits 130 (they were deleted: an hour's tracking lost to stopping
    early; user test 18)."""
    stop = Interruption()
    try:
        yield stop
    except KeyboardInterrupt:
        stop.seen, stop.early = True, not source.live
