"""The run that ``video`` and ``transfer`` share: a source tracked frame by frame into outputs that
go to hidden temporary files as the frames come and are renamed into place when the run ends (at
the source's end, or at a Ctrl-C: the frames done are kept), deleted if it fails.

A command says what it writes of a frame in a ``FrameOutputs``; ``run_stream`` owns the rest, so
that both commands stop, save, count and report progress the same way (each had its own copy of
this loop, and transfer showed no progress at all)."""
from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from tracker.cli.common import EXIT_INTERRUPTED, EXIT_ITEMS_FAILED, EXIT_OK
from tracker.errors import InputError
from tracker.fileio import interrupts_held
from tracker.pipeline import Tracker, TrackerConfig
from tracker.sources import FrameSource, TrackedFrame, track_stream, until_interrupted
from tracker.video import VideoError

PROGRESS_EVERY_S = 30.0  # without a terminal (no progress bar), a progress line this often


class FrameOutputs:
    """What a command writes of each frame.  ``open`` enters its files into the run's stack (atomic
    files: deleted if the run fails); ``render`` does a frame's work (a Ctrl-C may stop it);
    ``commit`` writes it, whole, with Ctrl-C held; ``finish`` ends the files before they are closed
    and renamed (``complete``: the source was read to its end)."""

    def open(self, stack: ExitStack, source: FrameSource) -> None:
        raise NotImplementedError

    def render(self, tracked: TrackedFrame) -> Any:
        return None

    def commit(self, tracked: TrackedFrame, rendered: Any) -> None:
        raise NotImplementedError

    def finish(self, complete: bool) -> None:
        pass


@dataclass
class StreamRun:
    """What ``run_stream`` did: the engine that ran (``Tracker.describe``), frames tracked, frames
    with a face, the 1-based number of the last frame done, whether a Ctrl-C ended it, and its
    wall time."""

    engine: str = ""
    frames: int = 0
    with_face: int = 0
    last: int = 0
    early: bool = False
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)

    def at_frame(self, source: FrameSource) -> str:
        """'frame N of ~M': how far the run got (where a Ctrl-C ended it)."""
        return f"frame {self.last}{f' of ~{source.length}' if source.length else ''}"

    def exit_code(self, source: FrameSource) -> int:
        # frames passed make the run's status 1, as a batch's failed items do (it said all was well; user test 14)
        return EXIT_INTERRUPTED if self.early else EXIT_ITEMS_FAILED if source.skipped else EXIT_OK


def run_stream(source: FrameSource, config: TrackerConfig, outputs: FrameOutputs, *, limit: int | None = None,
               need_face: bool = False) -> StreamRun:
    """Track `source` (at most `limit` frames) with a tracker of `config` into `outputs`, and save
    them.  Nothing is written when no frame could be decoded, or (`need_face`) none had a face: a
    one-line error instead (or the Ctrl-C that came first).  The source is closed when the run
    ends, and at once when the tracker cannot be made (a camera stayed held; review 37)."""
    from tqdm import tqdm

    run = StreamRun()
    t_start = time.perf_counter()
    saved = False
    try:
        with source, Tracker(config) as tracker, ExitStack() as stack:
            run.engine = tracker.describe()
            t_start = time.perf_counter()  # the frames' time, not the models' loading
            outputs.open(stack, source)
            with until_interrupted(source) as stop:
                bar = sys.stderr.isatty()
                said = t_start
                stream = track_stream(tracker, source, limit=limit)
                for tracked in tqdm(stream, total=source.length or None, unit="frame", file=sys.stderr, disable=not bar):
                    rendered = outputs.render(tracked)
                    with interrupts_held():  # a Ctrl-C ends the run after this frame's outputs, not between them
                        outputs.commit(tracked, rendered)
                        run.frames += 1
                        run.with_face += bool(tracked.result.faces)
                        run.last = tracked.index + 1  # frame numbers are 1-based, like the .pts files
                    if not bar and time.perf_counter() - said >= PROGRESS_EVERY_S:  # a log (nohup, CI) heard nothing until the end
                        said = time.perf_counter()
                        print(f"{run.at_frame(source)}, {run.frames / (said - t_start):.1f} fps", file=sys.stderr)
            run.early = stop.early
            if run.frames == 0 or (need_face and run.with_face == 0):  # inside the outputs: no empty file is left behind
                # a camera stopped before its first frame was interrupted too (it said "no decodable frame", exit 2; review 37)
                if stop.early or (stop.seen and run.frames == 0):
                    raise KeyboardInterrupt
                if run.frames == 0:
                    raise VideoError(f"{source.label}: no decodable frame (corrupt, or not a video)")
                raise InputError(f"{source.label}: no face found in any of {run.frames} frames; nothing written")
            with interrupts_held():  # a second Ctrl-C while the run is saved comes after the saving
                outputs.finish(complete=not stop.early)
                stack.close()
                saved = True  # (here: a Ctrl-C held meanwhile is raised as the block ends)
    except KeyboardInterrupt:  # the run had ended and its outputs are saved (the camera was closing): reported as done
        if not saved:
            raise
        print("note: interrupted while saving: the outputs were saved first", file=sys.stderr)
    run.seconds = time.perf_counter() - t_start
    return run
