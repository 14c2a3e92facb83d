"""The viewer's tracking thread: it owns the source and the Tracker and sends results to the
GUI by signals; the GUI thread never runs inference.  Frames are tracked by ``track_stream``,
as in every command: the stream is made anew after opening, seeking, an engine change or an
error (a new stream resets the tracker: the frames are no longer consecutive).

The GUI talks to it only through a command queue (``open``, ``play``, ``step``, ``seek``,
``engine``, ``visibility``, ``template_maps``); ``stop()`` sets a flag and waits for ``run`` to return (never
``QThread.terminate()``, which can kill the thread inside ONNX Runtime holding locks).  At most
one result is in flight: the thread waits for ``frame_consumed()`` before sending the next, so
a slow GUI makes it skip work instead of queueing frames without bound.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from PyQt5.QtCore import QThread, pyqtSignal

from engines.base import EngineError
from tracker.assets import AssetError
from tracker.errors import SourceError
from tracker.pipeline import LIVE_DETECT_LAG, FrameResult, Tracker, TrackerConfig
from tracker.sources import FrameSource, SourceSpec, TrackedFrame, open_source, track_stream


@dataclass(frozen=True)
class FramePacket:
    """One tracked frame for the GUI.  index: the frame's position in the source (0-based);
    length: frames in the source (0 = live); track_ms: wall time of ``Tracker.track``; redraw:
    the frame on screen sent again with more maps (not a new frame: not recorded, not timed)."""

    frame: np.ndarray
    result: FrameResult
    index: int
    length: int
    track_ms: float
    redraw: bool = False


@dataclass(frozen=True)
class SourceInfo:
    label: str
    length: int
    fps: float
    seekable: bool
    sequence: bool
    live: bool = False


class TrackerThread(QThread):
    frameReady = pyqtSignal(object)  # FramePacket
    sourceOpened = pyqtSignal(object)  # SourceInfo
    engineReady = pyqtSignal(str)  # the engine's description
    failed = pyqtSignal(str)  # one line for the user
    playingChanged = pyqtSignal(bool)

    def __init__(self, config: TrackerConfig, parent=None, visibility: bool = False, template_maps: bool = False):
        super().__init__(parent)
        # visibility: the transfer overlay keeps its paint off occluders (~8 ms a frame, so only while
        # it is on: ``set_visibility``); template_maps: the parts and transfer overlays read the
        # template fitted to the landmarks (~20 ms a face, so only while one is on:
        # ``set_template_maps``); an interactive view searches for new faces beside the tracking
        self.config = replace(config, visibility=visibility, template_maps=template_maps, detect_lag=LIVE_DETECT_LAG)
        self._commands: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._consumed = threading.Event()
        self._consumed.set()
        self._tracker: Tracker | None = None
        self._source: FrameSource | None = None
        self._stream: Iterator[TrackedFrame] | None = None
        self._playing = False
        self._next_due = 0.0
        self._last: FramePacket | None = None  # the packet on screen

    # -- called from the GUI thread ----------------------------------------------------------

    def open(self, spec: SourceSpec) -> None:
        self._commands.put(("open", spec))

    def play(self, playing: bool) -> None:
        self._commands.put(("play", playing))

    def step(self, delta: int) -> None:
        self._commands.put(("step", delta))

    def seek(self, index: int) -> None:
        self._commands.put(("seek", index))

    def set_engine(self, kind: str) -> None:
        self._commands.put(("engine", kind))

    def set_visibility(self, on: bool) -> None:
        self._commands.put(("visibility", on))

    def set_template_maps(self, on: bool) -> None:
        self._commands.put(("template_maps", on))

    def frame_consumed(self) -> None:
        self._consumed.set()

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Ask the loop to end and wait for it; True when the thread has finished."""
        self._stopping.set()
        self._consumed.set()
        return self.wait(timeout_ms)

    # -- the thread --------------------------------------------------------------------------

    def run(self) -> None:
        self._load_tracker(self.config)
        while not self._stopping.is_set():
            # Block on the command queue while paused; while playing only until the next frame
            # is due (a video plays at its own frame rate, a webcam as fast as it delivers).
            wait = max(0.0, self._next_due - time.perf_counter()) if self._playing else 0.1
            try:
                command = self._commands.get(timeout=wait) if wait > 0 else self._commands.get_nowait()
            except queue.Empty:
                command = None
            if command is not None:
                self._handle(*command)
                continue  # drain every pending command before the next frame
            if self._playing:
                self._advance()
        if self._source is not None:
            self._source.close()

    def _handle(self, command: str, value) -> None:
        if command == "open":
            self._open(value)
        elif command == "play":
            source = self._source
            if value and source is not None and source.seekable and source.sequence and 0 < source.length <= source.position:
                self._seek(0)  # Play at the end of a clip plays it again (it did nothing)
            self._set_playing(bool(value) and source is not None)
        elif command == "engine":
            self._load_tracker(replace(self.config, engine=value))
        elif command == "visibility":
            self.config = replace(self.config, visibility=bool(value))
            if self._tracker is not None:
                self._tracker.set_visibility(bool(value))
        elif command == "template_maps":
            self.config = replace(self.config, template_maps=bool(value))
            if self._tracker is not None and self._set_template_maps(self._tracker) and self._last is not None:
                # the frame on screen (a paused clip, a still) gets them now, not at the next frame
                last = self._last
                try:
                    result = self._tracker.add_template_maps(last.result)
                except Exception as exc:  # a worker must report, never die silently (as in _advance)
                    self.failed.emit(f"template maps failed on frame {last.index}: {type(exc).__name__}: {exc}")
                    return
                self._send(replace(last, result=result, redraw=True))
        elif self._source is None:
            return
        elif command == "step":
            if value < 0 and not self._source.seekable:
                return  # a camera cannot step back (the button is off; the Left key lands here)
            self._set_playing(False)
            if value < 0:
                self._step_back()
            else:
                self._advance()
        elif command == "seek":
            self._seek(value)
            self._advance()

    def _set_playing(self, playing: bool) -> None:
        if playing != self._playing:
            self._playing = playing
            self._next_due = time.perf_counter()
            self.playingChanged.emit(playing)

    def _load_tracker(self, config: TrackerConfig) -> None:
        try:
            tracker = Tracker(replace(config, template_maps=False))  # a missing shape model must not cost the tracking
        except (AssetError, EngineError, OSError, ValueError, RuntimeError, ImportError) as exc:
            self.failed.emit(f"engine '{config.engine}' unavailable: {exc}")
            return
        except Exception as exc:  # a worker must report, never die silently (an escaped error aborts PyQt)
            self.failed.emit(f"engine '{config.engine}' unavailable: {type(exc).__name__}: {exc}")
            return
        self._tracker, self.config = tracker, config
        self._set_template_maps(tracker)
        self._stream = None
        self.engineReady.emit(self._tracker.describe())

    def _set_template_maps(self, tracker: Tracker) -> bool:
        """The config's template maps on `tracker`; False (the overlays read the network's maps)
        with a message where the shape model cannot be loaded, or when they are off."""
        try:
            tracker.set_template_maps(self.config.template_maps)
        except (AssetError, OSError, ValueError) as exc:  # the shape model's file missing or damaged
            self.failed.emit(f"template maps unavailable, parts and transfer read the network's maps: {exc}")
            return False
        return self.config.template_maps

    def _open(self, spec: SourceSpec) -> None:
        self._set_playing(False)
        if self._source is not None:
            self._source.close()
            self._source = None
        self._stream = None
        try:
            source = open_source(spec, warn=self.failed.emit)  # no read-ahead: the viewer seeks
        except SourceError as exc:
            self.failed.emit(str(exc))
            return
        self._source = source
        mode = "video" if source.sequence else "image"
        if mode != self.config.mode:
            if self._tracker is None:  # (no engine loaded: the next one is loaded for this source)
                self.config = replace(self.config, mode=mode)
            else:
                self._load_tracker(replace(self.config, mode=mode))
        self.sourceOpened.emit(SourceInfo(spec.label, _shown_length(source), source.fps, source.seekable, source.sequence, source.live))
        self._advance()  # show the first frame at once
        self._set_playing(source.sequence)  # clips and cameras play, folders wait for "next"

    def _seek(self, index: int) -> None:
        try:
            self._source.seek(index)
        except SourceError as exc:
            self.failed.emit(str(exc))
        self._stream = None  # frames are no longer consecutive

    def _step_back(self) -> None:
        """Send the readable frame before the one on screen.  A seek to the frame before lands,
        where that one cannot be read, on the next readable one: the frame on screen again, so
        stepping back could never pass an unreadable picture or frame (review 37).  Nothing before
        it: it stays."""
        here = self._last.index if self._last is not None else self._source.position
        for target in range(here - 1, -1, -1):
            self._seek(target)
            packet = self._read_packet()
            if packet is None:
                return
            if packet.index < here:
                self._send(packet)
                return

    def _advance(self) -> None:
        """Read, track and send one frame."""
        packet = self._read_packet()
        if packet is not None:
            self._send(packet)

    def _read_packet(self) -> FramePacket | None:
        """Read and track the next frame; None at the end, or on a failure (said)."""
        source = self._source
        if source is None:
            return None
        if source.fps > 0 and not source.live:  # a file plays at its own rate, a camera as fast as it delivers
            self._next_due = max(self._next_due + 1.0 / source.fps, time.perf_counter() - 0.5)
        index = source.position
        try:
            packet = self._next_packet(source)
        except SourceError as exc:
            self._stream = None
            self.failed.emit(str(exc))
            if source.live:
                self._set_playing(False)
            return None
        except Exception as exc:  # a worker must report, never die silently
            self._stream = None
            self.failed.emit(f"tracking failed on frame {index}: {type(exc).__name__}: {exc}")
            self._set_playing(False)
            return None
        if packet is None:
            self._stream = None
            self._set_playing(False)
        return packet

    def _send(self, packet: FramePacket) -> None:
        """Emit once the GUI has taken the last packet (at most one in flight)."""
        while not self._consumed.wait(0.05):
            if self._stopping.is_set():
                return
        self._consumed.clear()
        self._last = packet
        self.frameReady.emit(packet)

    def _next_packet(self, source: FrameSource) -> FramePacket | None:
        """The next frame tracked (untracked while no engine could be loaded); None at the end."""
        length = _shown_length(source)
        if self._tracker is None:
            while True:
                try:
                    frame = source.read()
                    break
                except SourceError as exc:  # said and passed, as frames() does with the tracker (review 37b)
                    if source.live:
                        raise
                    self.failed.emit(str(exc))
            index = source.position - 1  # after the read: a sequence's read passes its missing numbers
            return None if frame is None else FramePacket(frame, FrameResult([], {}, index), index, length, 0.0)
        if self._stream is None:
            self._stream = track_stream(self._tracker, source)
        tracked = next(self._stream, None)
        if tracked is None:
            return None
        return FramePacket(tracked.image, tracked.result, tracked.index, length, tracked.track_ms)


def _shown_length(source: FrameSource) -> int:
    """Frames for the GUI: 0 for a camera (live); a video whose length is unknown still has a
    start to rewind to."""
    return 0 if source.live else max(source.length, 1)
