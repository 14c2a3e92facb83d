"""Frame sources for the viewer: webcam, video file, image folder (no Qt here).

Every source reads frames by index (``read()`` gives the next one, ``seek(i)`` moves) and
raises ``SourceError`` with a one-line message for anything the user should see.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker.errors import TrackerError
from tracker.fileio import ImageReadError, list_images, read_image
from tracker.video import VideoError, open_video, quiet_opencv

MAX_CAMERA_INDEX = 4


class SourceError(TrackerError, RuntimeError):
    """A source cannot be opened or read; one line for the status bar."""


@dataclass(frozen=True)
class SourceSpec:
    """What to open: kind 'webcam' (device index) or 'video' / 'folder' (path)."""

    kind: str
    path: Path | None = None
    device: int = 0

    @property
    def label(self) -> str:
        return f"webcam {self.device}" if self.kind == "webcam" else str(self.path)


def spec_from_argument(source: str | None, device: int = 0) -> SourceSpec:
    """CLI ``--source webcam|FILE|DIR`` -> a SourceSpec (existence is checked on opening)."""
    if source is None or source == "webcam":
        return SourceSpec("webcam", device=device)
    path = Path(source)
    return SourceSpec("folder" if path.is_dir() else "video", path)


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


class FrameSource:
    """Base: ``length`` 0 means live (no seeking); ``fps`` paces playback (0 = as fast as read)."""

    spec: SourceSpec
    length: int = 0
    fps: float = 0.0
    position: int = 0  # index of the next frame read() returns

    @property
    def seekable(self) -> bool:
        return self.length > 0

    @property
    def sequence(self) -> bool:
        """Consecutive frames of one scene (track over time) rather than unrelated pictures."""
        return True

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end."""
        raise NotImplementedError

    def seek(self, index: int) -> None:
        raise SourceError(f"{self.spec.label}: cannot seek in a live source")

    def close(self) -> None:
        pass


class WebcamSource(FrameSource):
    def __init__(self, spec: SourceSpec):
        self.spec = spec
        with quiet_opencv():
            self.cap = cv2.VideoCapture(spec.device)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"no camera at index {spec.device} (found: {probe_cameras() or 'none'})")

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            raise SourceError(f"webcam {self.spec.device}: stopped delivering frames")
        self.position += 1
        return frame

    def close(self) -> None:
        self.cap.release()


class VideoSource(FrameSource):
    def __init__(self, spec: SourceSpec):
        self.spec = spec
        try:
            self.cap, info = open_video(spec.path)
        except VideoError as exc:
            raise SourceError(str(exc)) from None
        self.length, self.fps = max(info.frames, 0), info.fps
        if self.length == 0:
            self.length = 1  # unknown length: still allow rewinding to the start

    def read(self) -> np.ndarray | None:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            return None
        self.position += 1
        return frame

    def seek(self, index: int) -> None:
        index = int(np.clip(index, 0, max(self.length - 1, 0)))
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self.position = index

    def close(self) -> None:
        self.cap.release()


class FolderSource(FrameSource):
    def __init__(self, spec: SourceSpec):
        self.spec = spec
        if not spec.path.is_dir():
            raise SourceError(f"{spec.path}: not a folder")
        self.images = list_images(spec.path)
        if not self.images:
            raise SourceError(f"{spec.path}: no jpg/png/bmp images in this folder")
        self.length = len(self.images)

    @property
    def sequence(self) -> bool:
        return False

    def read(self) -> np.ndarray | None:
        if self.position >= self.length:
            return None
        path = self.images[self.position]
        self.position += 1
        try:
            return read_image(path)
        except ImageReadError as exc:
            raise SourceError(str(exc)) from None

    def seek(self, index: int) -> None:
        self.position = int(np.clip(index, 0, self.length - 1))


def open_source(spec: SourceSpec) -> FrameSource:
    if spec.kind == "webcam":
        return WebcamSource(spec)
    if spec.path is None or not spec.path.exists():
        raise SourceError(f"{spec.path}: file not found")
    return (FolderSource if spec.kind == "folder" or spec.path.is_dir() else VideoSource)(spec)
