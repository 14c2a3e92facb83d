"""The ``batch300vw`` runner as a library: the 300VW layout, one job per video, and where the
videos run (this process, a local process pool, or Ray tasks through ``tracker/raybatch.py``).

Layout: ``ROOT/NNN/vid.avi|mp4`` with ``ROOT/NNN/annot/000001.pts``...; a job writes
``OUT/NNN/000001.pts`` per tracked frame (frame numbers 1-based like the annotations) and
``OUT/NNN/result.json`` (per-video metrics, written last; with a baseline, its frames in
``OUT/NNN/dlib/`` and its metrics in the same file) into a hidden folder renamed onto
``OUT/NNN`` when complete, so ``OUT/NNN`` is finished or absent: a killed run restarted with the
same command redoes only the unfinished videos, and the outputs are exactly those of an
uninterrupted run (a finished video whose inputs changed since is tracked or scored again:
``input_fingerprint``, ``subject_annotations``).  ``result.json`` records the options that decided the outputs
(``VideoJob.options``), so that a rerun with other options can tell a finished video is not its
own.  Every runner calls ``track_300vw_video``; ``tracker.evaluation`` scores.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import cv2

from tracker.errors import MissingInputError, NotAFolderError, count_of, skipped_frames
from tracker.evaluation import annotated_face, evaluate_video
from tracker.fileio import WriteError, atomic_output_dir, atomic_write_json, file_digest
from tracker.identity import load_recognizer
from tracker.pipeline import Tracker, TrackerConfig, TrackerMode
from tracker.pts import pts_files, write_pts
from tracker.sources import VideoSource, track_stream
from tracker.video import READ_AHEAD, VIDEO_EXTENSIONS, VideoError
from tracker.writers import NearestSubject, Subject, dlib_faces, frame_pts_name

log = logging.getLogger(__name__)


def find_300vw_videos(root: Path, warn: Callable[[str], None] | None = None, left_out: list[str] | None = None) -> list[tuple[str, Path]]:
    """(name, video path) for every NNN/vid.* folder, sorted.  `warn` hears of a folder that looks
    like a video's but is not tracked (a video under another name, annotations without a video:
    an incomplete download), or holds two vid.* videos; `left_out` gets those folders' names
    (each was left out unseen: user tests 13 and 16)."""
    if not root.is_dir():
        raise NotAFolderError(f"{root}: not a folder")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        # not is_dir(): a link to a video on an unmounted drive is a video that fails, said as such (review 26)
        videos = sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and not p.is_dir())
        # vid.avi before vid.MP4; VID.MP4 is one too (it was left out unsaid beside vid.avi: user test 25)
        named = sorted((p for p in videos if p.stem.lower() == "vid"), key=lambda p: p.name.lower())
        if named:
            out.append((d.name, named[0]))
            if len(named) > 1 and warn:
                warn(f"{d}: holds {' and '.join(p.name for p in named)}: {named[0].name} tracked")
            continue
        if videos:
            why = f"holds {videos[0].name} but no vid.* video (300VW names it vid.avi or vid.mp4)"
        elif (d / "annot").is_dir():
            why = "holds annot/ but no vid.* video (an incomplete download?)"
        else:
            continue
        if warn:
            warn(f"{d}: {why}: left out")
        if left_out is not None:
            left_out.append(d.name)
    if not out:
        inside = " (it is one video's folder: give the folder above it)" if any(p.stem.lower() == "vid" and p.suffix.lower() in VIDEO_EXTENSIONS
                                                                               for p in root.iterdir()) else ""
        raise MissingInputError(f"{root}: no 300VW videos (expected NNN/vid.avi, NNN/vid.mp4 or another of {', '.join(VIDEO_EXTENSIONS)})"
                                + inside)
    return out


def input_fingerprint(video: Path, annot: Path) -> dict:
    """What a video's outputs were made from, recorded in its ``result.json``: the video's
    ``file_digest``, and the annotation files' names and contents (``annotations_digest``).
    A resumed run compares them (user test 16: it reported a finished video's old scores after its
    annotations were corrected, and another root's videos of the same names as its own)."""
    return {"video": file_digest(video), "annotations": annotations_digest(annot)}


def annotations_digest(annot: Path, upto: int | None = None) -> str:
    """The annotation files' names and contents (their times made a copied folder, ``cp -r``, say
    every video's annotations changed: user test 35; ~20 ms for 1,000 files, warm); `upto`: only
    those of frames 1..upto (``subject_annotations``)."""
    notes = hashlib.sha256()
    for path in pts_files(annot) if annot.is_dir() else []:
        if upto is not None and not (path.stem.isdigit() and int(path.stem) <= upto):
            continue
        try:
            notes.update(f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        except OSError:  # a dangling link: scoring lists it as malformed, the video is still scored
            notes.update(f"{path.name} ?\n".encode())
    return notes.hexdigest()[:32]


def subject_annotations(annot: Path, upto: int) -> dict:
    """``result.json``'s record of the annotations that picked the face tracked (``--subject
    annotated``): those of the frames up to the last one whose faces were compared with them.
    Changed, the video is tracked again; any other annotation change only rescores it (review 36:
    a resumed run scored the face the old annotations had picked against the new ones)."""
    return {"upto": upto, "digest": annotations_digest(annot, upto)}


@dataclass(frozen=True)
class VideoJob:
    """One video of a batch: where it is, where its outputs go, how to track it."""

    name: str
    video: Path
    annot: Path
    out: Path
    config: TrackerConfig
    options: dict | None = None  # what decided the outputs, written to result.json (None: not known, recorded as null)
    baseline: str | None = None  # 'dlib': dlib's HOG + 68 points on every frame too, scored beside the tracker
    # Which face the .pts hold: "annotated", the face in the first annotated face's box, followed
    # from there (``Subject.designate``, ``NearestSubject``); "main", the tracker's own choice.
    subject: str = "annotated"


@dataclass(frozen=True)
class VideoOutcome:
    name: str
    message: str  # one line for the log
    ok: bool
    warnings: tuple[str, ...] = ()
    retry: bool = True  # a failure a rerun may not repeat (False: the video itself is unusable)


@functools.lru_cache(maxsize=1)
def _process_tracker(config: TrackerConfig) -> Tracker:
    """One Tracker per process (the batch itself, a pool worker or a Ray worker), reused for
    every video it gets: building one loads and verifies the models (0.3-0.8 s here).  OpenCV's
    thread pool gets the tracker's share of the cores (by default it takes every core, in each
    worker)."""
    cv2.setNumThreads(config.threads)
    return Tracker(config)


FRAMES_PER_REPORT = 25  # frame-progress granularity: one report a second or so, cheap even as a Ray call


def track_300vw_video(job: VideoJob, on_frames: Callable[[int], None] | None = None) -> VideoOutcome:
    """Track one video into ``job.out`` (frames + result.json), all or nothing: the outputs are
    written to a hidden folder renamed onto ``job.out`` when complete.  ``on_frames(k)``: k more
    frames tracked.  Bad input is an outcome with ``ok=False``; anything else raises."""
    warnings: list[str] = []
    try:
        tracker = _process_tracker(job.config)
        video_mode = job.config.mode is TrackerMode.VIDEO
        subject = Subject(recognizer=load_recognizer()) if video_mode else None
        nearest, baseline_nearest = NearestSubject(), NearestSubject()  # (--stills, the baseline: no tracks)
        seek_tracker = seek_baseline = job.subject == "annotated"  # the annotated face not found yet
        with VideoSource(job.video, READ_AHEAD, warnings.append) as source, atomic_output_dir(job.out) as out:
            inputs = input_fingerprint(job.video, job.annot)  # (opened first: a missing or undecodable video is said as such)
            n = detections = consulted = 0  # consulted: the last frame whose annotation was compared with faces
            baseline_seconds = 0.0
            if job.baseline:
                (out / job.baseline).mkdir()
            t0 = time.perf_counter()
            for tracked in track_stream(tracker, source):  # reset first: no track survives from the previous video
                n = tracked.index + 1  # frame numbers are 1-based, like the annotations
                faces = tracked.result.faces
                annotated = annotated_face(job.annot, n, [f.landmarks for f in faces]) if seek_tracker else None
                seek_tracker = seek_tracker and annotated is None
                consulted = n if annotated is not None or (seek_tracker and faces) else consulted
                if subject is not None:
                    face = subject.pick(faces, tracked.image.shape[1::-1], tracked.image)
                    if annotated is not None and faces[annotated] is not face:
                        face = faces[annotated]
                        subject.designate(face, tracked.image)
                else:
                    if annotated is not None:
                        nearest.place(faces[annotated].roi)
                    k = nearest.pick([f.roi for f in faces], tracked.image.shape[1::-1])
                    face = None if k is None else faces[k]
                if face is not None:
                    write_pts(out / frame_pts_name(n), face.landmarks)
                    detections += face.detected
                if job.baseline:
                    t = time.perf_counter()
                    found, compared = _baseline_frame(job.baseline, tracked.image, out / job.baseline / frame_pts_name(n), baseline_nearest,
                                                      job.annot if seek_baseline else None, n)
                    seek_baseline = seek_baseline and not found
                    consulted = max(consulted, n if compared else 0)
                    baseline_seconds += time.perf_counter() - t
                if on_frames and n % FRAMES_PER_REPORT == 0:
                    on_frames(FRAMES_PER_REPORT)
            if on_frames:
                on_frames(n % FRAMES_PER_REPORT)
            if n == 0:
                raise VideoError(f"{job.video}: no decodable frame (corrupt, or not a video)")
            seconds = time.perf_counter() - t0 - baseline_seconds
            # detections: frames whose subject came from the detector rather than from tracking, i.e.
            # the first acquisition plus one per re-detection after a loss (every frame in --stills).
            if job.subject == "annotated":
                inputs["subject_annotations"] = subject_annotations(job.annot, consulted)
            result = {"video": str(job.video), "frames": n, "skipped_frames": source.skipped, "seconds": round(seconds, 2), "detections": detections,
                      "warnings": warnings, "options": job.options, "inputs": inputs,
                      **_scores(job, out, n, {job.baseline: {"seconds": round(baseline_seconds, 2)}} if job.baseline else {})}
            atomic_write_json(out / "result.json", result)
        return _scored(job, result, tuple(warnings))
    except WriteError as exc:  # name the video's folder, not the hidden one it is filled in
        return VideoOutcome(job.name, f"skipped: {job.out}: cannot write ({exc.strerror})", False, tuple(warnings))
    except (VideoError, OSError, ValueError) as exc:
        return VideoOutcome(job.name, f"skipped: {exc}", False, tuple(warnings), retry=not isinstance(exc, VideoError))


# evaluate_video's notes on the annotations themselves: the same for the tracker and a baseline
NOTES = ("malformed_annotations", "annotations_past_end")


def _scores(job: VideoJob, out: Path, frames: int, baseline: dict) -> dict:
    """``result.json``'s scores of the tracked frames in `out` and, under ``baseline``, of each
    baseline's (`baseline`: what its entry keeps, e.g. its seconds)."""
    metrics = evaluate_video(out, job.annot, frames)
    if baseline:
        # the tracker's notes about the annotations (malformed, past the end) hold for the baseline too
        metrics["baseline"] = {name: {**kept, **{k: v for k, v in evaluate_video(out / name, job.annot, frames).items() if k not in NOTES}}
                               for name, kept in baseline.items()}
    return metrics


def _scored(job: VideoJob, result: dict, warnings: tuple[str, ...] = ()) -> VideoOutcome:
    """The outcome line of a video's ``result.json``, and its notes about the annotations."""
    n, baselines = result["frames"], result.get("baseline") or {}
    scored = f"AUC@0.08 {result['auc08']:.4f}" if result["annotated_frames"] else "no annotations: nothing to score"
    if baselines and result["annotated_frames"]:
        scored += "".join(f" ({name} {b['auc08']:.4f})" for name, b in baselines.items())
    notes = list(result["malformed_annotations"])
    if past := result["annotations_past_end"]:
        notes.append(f"{job.annot}: {count_of(past, 'annotation')} past the video's last decoded frame ({n}): scored as missing")
    for who, r in (("", result), *((f"{name}: ", b) for name, b in baselines.items())):
        if other := r["frames_on_another_face"]:
            notes.append(f"{job.annot}: {who}{count_of(other, 'annotated frame')} held another person's face (centred outside "
                         "the annotated face's box): scored as missing")
    skipped = result.get("skipped_frames", 0)  # (not recorded before session 38)
    return VideoOutcome(job.name, f"{count_of(n, 'frame')}{skipped_frames(skipped)}, {scored}", True, tuple(warnings) + tuple(notes))


def rescore_300vw_video(job: VideoJob) -> VideoOutcome:
    """Score a finished video again against its annotations as they are now (they changed since
    it was tracked: ``input_fingerprint``, or it was tracked by a version that did not record
    them); the tracked frames stand, ``result.json`` is rewritten with its inputs."""
    try:
        result = json.loads((job.out / "result.json").read_text())
        kept = {name: {"seconds": b.get("seconds")} for name, b in (result.get("baseline") or {}).items()}
        inputs = input_fingerprint(job.video, job.annot)
        if "subject_annotations" in (result.get("inputs") or {}):  # unchanged, or it would be tracked again
            inputs["subject_annotations"] = result["inputs"]["subject_annotations"]
        result = {**{k: v for k, v in result.items() if k != "baseline"}, "inputs": inputs,
                  **_scores(job, job.out, result["frames"], kept)}
        atomic_write_json(job.out / "result.json", result)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return VideoOutcome(job.name, f"cannot be scored again ({type(exc).__name__}: {exc})", False)
    outcome = _scored(job, result)
    return VideoOutcome(job.name, f"scored again, {outcome.message}", True, outcome.warnings)


def _baseline_frame(name: str, image, pts_path: Path, chooser: NearestSubject, annot: Path | None, frame: int) -> tuple[bool, bool]:
    """A baseline's landmarks of one frame's subject into `pts_path` (nothing without a face).
    dlib's as its users run it on video: a detection on every frame, no tracking, the subject
    the face nearest the one annotated first (``NearestSubject``; `annot`: the annotations while
    that is looked for), else the most prominent.  Whether the annotated face was found here, and
    whether the annotation was compared with faces (for ``subject_annotations``)."""
    if name != "dlib":
        raise ValueError(f"unknown baseline {name!r}")
    faces, _ = dlib_faces(image)
    rois = [box.roi() for box, _ in faces]
    annotated = annotated_face(annot, frame, [points for _, points in faces]) if annot is not None else None
    if annotated is not None:
        chooser.place(rois[annotated])
    k = chooser.pick(rois, image.shape[1::-1])
    if k is not None:
        write_pts(pts_path, faces[k][1])
    return annotated is not None, annot is not None and bool(faces)


def crashed(job: VideoJob, exc: BaseException) -> VideoOutcome:
    """The outcome of a video whose worker raised something unexpected or died."""
    log.debug("%s failed", job.name, exc_info=exc)
    lines = str(exc).strip().splitlines()
    return VideoOutcome(job.name, f"failed: {type(exc).__name__}" + (f": {lines[0]}" if lines else ""), False)


WORKER_DIED = "failed: its worker process died (killed, or out of memory); rerun to retry"


def _die_with_parent(parent: int) -> None:
    """If the batch process is killed (even with SIGKILL), its workers die too, so no orphan
    keeps writing into the output folder while a resumed run starts."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: best effort
    if os.getppid() != parent:  # killed before the line above: it would never fire
        os._exit(1)


_pool_frames = None  # in a pool worker: its own frame counter, shared with the batch process


def _init_pool_worker(frames, parent: int) -> None:
    global _pool_frames
    _pool_frames = frames
    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group; the batch process alone answers it, by terminating
    # the workers (an idle worker interrupted would print a traceback, a busy one start its next
    # video), and SIGTERM, which a forked worker inherits as Ctrl-C from the command, ends a worker at once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _count_pool_frames(k: int) -> None:
    # This worker is the counter's only writer, so it needs no lock: a lock held by a worker
    # killed at that moment would stall the batch and every other worker.
    _pool_frames.value += k


def local_outcomes(jobs: list[VideoJob], on_frames: Callable[[int], None], workers: int) -> Iterator[VideoOutcome]:
    """Track the videos on this machine, ``workers`` at a time; outcomes in completion order.
    Closing the generator early (Ctrl-C) terminates the worker processes and waits for them."""
    if workers <= 1:  # in-process: a killed run leaves no worker behind
        for job in jobs:
            try:
                outcome = track_300vw_video(job, on_frames)
            except Exception as exc:  # a bug or a broken model must not stop the other videos
                outcome = crashed(job, exc)
            yield outcome
        return
    yield from _pool_outcomes(jobs, on_frames, workers)


def _pool_outcomes(jobs: list[VideoJob], on_frames: Callable[[int], None], workers: int) -> Iterator[VideoOutcome]:
    """``workers`` slots, each a one-process executor given one video at a time.  One executor
    for all would fail every video left with ``BrokenProcessPool`` (and terminate the other
    workers) when one worker dies (kill -9, the OOM killer); here only that slot is hit, the video
    it was tracking is known, and the slot goes on in a fresh process.  That video is retried once,
    as a Ray task is (``tracker.raybatch``): the kill may not recur, and a video that kills its
    worker every time is reported as failed instead of retried forever."""
    todo = list(reversed(jobs))  # pop() takes the next one
    counters = [multiprocessing.RawValue("q", 0) for _ in range(min(workers, len(jobs)))]
    pools: list[ProcessPoolExecutor | None] = [None] * len(counters)
    running: dict[Future, tuple[int, VideoJob]] = {}
    retried: set[str] = set()

    def drop(slot: int) -> None:  # its process died: the slot's next video starts a fresh one
        pools[slot].shutdown()
        pools[slot] = None

    def submit(slot: int, job: VideoJob) -> None:
        if pools[slot] is None:
            pools[slot] = ProcessPoolExecutor(max_workers=1, initializer=_init_pool_worker, initargs=(counters[slot], os.getpid()))
        try:
            future = pools[slot].submit(track_300vw_video, job, _count_pool_frames)
        except BrokenProcessPool:  # the process died after its last video, before this one
            drop(slot)
            return submit(slot, job)  # on a fresh executor, which cannot be broken yet
        running[future] = (slot, job)

    try:
        for slot in range(len(pools)):
            submit(slot, todo.pop())
        seen = 0
        while running:
            ready, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            total = sum(c.value for c in counters)
            on_frames(total - seen)
            seen = total
            for f in ready:
                slot, job = running.pop(f)
                exc = f.exception()
                if isinstance(exc, BrokenProcessPool):
                    drop(slot)
                    if job.name not in retried:
                        retried.add(job.name)
                        submit(slot, job)
                        continue
                    outcome = VideoOutcome(job.name, WORKER_DIED, False)
                else:
                    outcome = crashed(job, exc) if exc else f.result()
                if todo:  # before yielding: the slot works while the caller reports
                    submit(slot, todo.pop())
                yield outcome
    except BaseException:  # Ctrl-C, SIGTERM, or the caller stopping early: drop the videos in progress now
        for pool in filter(None, pools):
            for process in list((pool._processes or {}).values()):  # no public way before Python 3.14 (terminate_workers)
                process.terminate()  # what they were writing is a hidden folder, which the caller or a rerun clears
        raise
    finally:
        for pool in filter(None, pools):
            pool.shutdown(cancel_futures=True)  # joins the workers: none is left running, or a zombie
