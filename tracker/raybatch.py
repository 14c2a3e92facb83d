"""``batch300vw --ray``: one Ray task per video, on a local Ray or an existing cluster.

A task runs ``track_300vw_video``, the function the local ``--jobs`` pool runs, so the outputs
(written by the workers, all or nothing per video) are the same; every node must see ROOT and
OUT at the same paths (a shared file system).  Ray re-runs a task whose worker died or raised
something unexpected once (``max_retries=1``); after that the video is reported as failed and
the others go on.  Imported only for ``--ray``: Ray is the optional ``[cluster]`` extra.
"""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator

import ray

from tracker.batch import VideoJob, VideoOutcome, crashed, track_300vw_video
from tracker.errors import UsageError

LOCAL = "local"  # --ray without an address: a Ray started for this run (also Ray's own name for that)


@ray.remote(num_cpus=0)
class FrameCounter:
    """Frames tracked by all tasks, for the driver's progress bar."""

    def __init__(self):
        self.frames = 0

    def add(self, k: int) -> None:
        self.frames += k

    def total(self) -> int:
        return self.frames


@ray.remote(num_cpus=1, max_retries=1, retry_exceptions=True)
def track_video_task(job: VideoJob, counter) -> VideoOutcome:
    # Ray reuses a worker process for many tasks, so its Tracker is built once (the per-process
    # cache in tracker.batch), like a pool worker's.
    return track_300vw_video(job, lambda k: counter.add.remote(k))


def connect(address: str, cpus: int | None) -> bool:
    """Start a local Ray (``LOCAL``, limited to ``cpus``; None: the cores Ray finds, container
    limits included) or join the cluster at ``address``
    (``auto``: ``RAY_ADDRESS`` or the one started on this machine by ``ray start``).  Returns
    True when this call connected (the caller shuts down); False when this process already had
    Ray (a caller's own ``ray.init``, e.g. the tests)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}  # workers' messages come back in the outcomes
    # ray.init answers SIGTERM with sys.exit: the command's own answer (Ctrl-C's path, which
    # reports what was finished and shuts Ray down in ray_outcomes) is put back.
    own = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        if address == LOCAL:
            ray.init(address=LOCAL, num_cpus=cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as exc:  # no cluster there: the user's address to fix, one line (it read "internal error"; review 26)
        raise UsageError(f"--ray {address}: {str(exc).strip().splitlines()[0]}") from None
    finally:
        if own is not None:
            signal.signal(signal.SIGTERM, own)
    return True


def ray_outcomes(jobs: list[VideoJob], on_frames: Callable[[int], None], address: str, cpus: int | None) -> Iterator[VideoOutcome]:
    """Track the videos as Ray tasks; outcomes in completion order."""
    if not jobs:
        return
    started = connect(address, cpus)
    try:
        counter = FrameCounter.remote()
        refs = {track_video_task.remote(job, counter): job for job in jobs}
        pending, seen = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            total = ray.get(counter.total.remote())
            on_frames(total - seen)
            seen = total
            for ref in ready:
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # both attempts died or raised
                    outcome = crashed(refs[ref], getattr(exc, "cause", None) or exc)
                yield outcome
    finally:
        if started:
            ray.shutdown()
