"""What the ``video`` and ``batch300vw`` subcommands do.

``batch300vw`` layout: ``ROOT/NNN/vid.avi|mp4`` with ``ROOT/NNN/annot/000001.pts``...; output
``OUT/NNN/000001.pts`` per tracked frame (frame numbers 1-based like the annotations),
``OUT/NNN/result.json`` (per-video metrics, written last: the video is finished), and
``OUT/summary.json`` + ``OUT/ced.png`` over all videos.  A video's folder is filled under a
hidden name and renamed when complete, so ``OUT/NNN`` is finished or absent: a killed run
restarted with the same command redoes only the unfinished videos, and the final outputs are
exactly those of an uninterrupted run.  The videos run in this process, in a local process pool
(``--jobs``) or as Ray tasks (``--ray``, ``tracker/raybatch.py``), all through
``track_300vw_video``; the summary is always computed here, from the written outputs.
"""
from __future__ import annotations

import csv
import functools
import io
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracker.commands import COORDINATES, face_to_json, largest_face
from tracker.detector import cnn_missing_note
from tracker.errors import MissingInputError, NotAFolderError, UsageError
from tracker.fileio import (
    atomic_output_dir,
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    remove_partial_dirs,
    safe_output_path,
)
from tracker.metrics import auc, ced, eye_distance, failure_rate, score_faces
from tracker.pipeline import FaceResult, Tracker, TrackerConfig
from tracker.pts import PtsError, read_pts, write_pts
from tracker.video import READ_AHEAD, VIDEO_EXTENSIONS, AtomicVideoWriter, VideoError, annotate, open_video, read_frames

log = logging.getLogger(__name__)


CNN_SILENCE = " (--cnn-every 0: HOG only, without this note)"


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


class Subject:
    """Which face a per-frame ``.pts`` file holds (300VW annotates one subject per video): the
    face written last while its track lasts, else the largest face.  Taking the best-scoring
    face instead made the output flip between two people from one frame to the next."""

    def __init__(self, sticky: bool):
        self.sticky = sticky  # only video mode has track ids that persist across frames
        self.track_id: int | None = None

    def pick(self, faces: list[FaceResult]) -> FaceResult | None:
        if not faces:
            return None
        same = [f for f in faces if self.sticky and f.track_id == self.track_id]
        face = same[0] if same else largest_face(faces)
        self.track_id = face.track_id
        return face


def run_video(args) -> int:
    from contextlib import nullcontext

    from tqdm import tqdm

    cap, info = open_video(args.input)
    for path in (args.csv, args.json):
        if path is not None:
            check_writable(path)  # before the run, not after it
    if args.cnn_every > 0 and (note := cnn_missing_note(CNN_SILENCE)):
        print(note, file=sys.stderr)
    tracker = Tracker(TrackerConfig.from_args(args, mode="video", smooth=not args.no_smooth, video_cnn_every=args.cnn_every))
    rows, frames_json = [], []
    subject = Subject(sticky=True)
    t_start = time.perf_counter()
    n = 0
    # The annotated video goes to a hidden temporary file, deleted on any failure or Ctrl-C.
    with AtomicVideoWriter(args.out, info.fps, (info.width, info.height)) if args.out else nullcontext() as writer:
        for n, frame in enumerate(tqdm(read_frames(cap, _warn, str(args.input), READ_AHEAD), total=info.frames or None, unit="frame",
                                       file=sys.stderr, disable=not sys.stderr.isatty()), start=1):
            t0 = time.perf_counter()
            result = tracker.track(frame)
            fps = 1.0 / max(time.perf_counter() - t0, 1e-6)
            if writer:
                writer.write(annotate(frame, result, fps))
            face = subject.pick(result.faces)
            if args.pts_dir and face is not None:
                write_pts(safe_output_path(args.pts_dir, f"{n:06d}.pts"), face.landmarks)
            if args.csv:
                for f in result.faces:
                    rows.append([n, f.track_id, round(f.score, 4)] + [round(float(v), 2) for v in f.landmarks.ravel()])
            if args.json:
                frames_json.append({"frame": n, "faces": [face_to_json(f) for f in result.faces], "timings_ms": result.timings})
        if n == 0:
            raise VideoError(f"{args.input}: no decodable frame (corrupt, or not a video)")
    if args.csv:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["frame", "track_id", "score"] + [f"{a}{i}" for i in range(1, 69) for a in ("x", "y")])
        w.writerows(rows)
        atomic_write_text(args.csv, buf.getvalue())
    if args.json:
        atomic_write_json(args.json, {"source": str(args.input), "coordinates": COORDINATES, "fps": info.fps, "frames": frames_json})
    elapsed = time.perf_counter() - t_start
    print(f"done: {n} frames in {elapsed:.1f}s ({n / elapsed:.1f} fps, engine {tracker.engine.describe()})"
          + (f"; wrote {args.out}" if args.out else ""))
    return 0


def find_300vw_videos(root: Path) -> list[tuple[str, Path]]:
    """(name, video path) for every NNN/vid.* folder, sorted."""
    if not root.is_dir():
        raise NotAFolderError(f"{root}: not a folder")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        vids = sorted(p for p in d.iterdir() if p.stem == "vid" and p.suffix.lower() in VIDEO_EXTENSIONS)
        if vids:
            out.append((d.name, vids[0]))
    if not out:
        raise MissingInputError(f"{root}: no 300VW videos (expected NNN/vid.avi or NNN/vid.mp4)")
    return out


def evaluate_video(pred_dir: Path, annot_dir: Path) -> dict:
    """Per-frame NME against every annotated frame (a frame without prediction = failure);
    malformed annotation files are listed and left out."""
    pairs, bad = [], []
    for gt_path in sorted(annot_dir.glob("*.pts")) if annot_dir.is_dir() else []:
        try:
            truth = read_pts(gt_path, expected=68)
        except PtsError as exc:
            bad.append(str(exc))
            continue
        pred_path = pred_dir / gt_path.name
        pairs.append((read_pts(pred_path, expected=68) if pred_path.exists() else None, truth))
    result = score_faces(pairs)
    result["annotated_frames"] = result.pop("faces")
    result["jitter_static"] = static_jitter(pred_dir, annot_dir)
    return {**result, "malformed_annotations": bad}


def static_jitter(pred_dir: Path, annot_dir: Path) -> float | None:
    """Mean frame-to-frame landmark motion over the still frames of a synthetic clip, as a
    fraction of the outer-eye-corner distance (None for clips without synth.json)."""
    import json

    meta = annot_dir.parent / "synth.json"
    if not meta.exists():
        return None
    steps = []
    for i in range(2, int(json.loads(meta.read_text())["static_frames"]) + 1):
        a, b, g = pred_dir / f"{i - 1:06d}.pts", pred_dir / f"{i:06d}.pts", annot_dir / f"{i:06d}.pts"
        if a.exists() and b.exists() and g.exists():
            truth = read_pts(g)
            iod = eye_distance(truth)
            steps.append(np.linalg.norm(read_pts(b) - read_pts(a), axis=1).mean() / iod)
    return float(np.mean(steps)) if steps else None


@dataclass(frozen=True)
class VideoJob:
    """One video of a batch: where it is, where its outputs go, how to track it."""

    name: str
    video: Path
    annot: Path
    out: Path
    config: TrackerConfig


@dataclass(frozen=True)
class VideoOutcome:
    name: str
    message: str  # one line for the log
    ok: bool
    warnings: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def _process_tracker(config: TrackerConfig) -> Tracker:
    """One Tracker per process (the batch itself, a pool worker or a Ray worker), reused for
    every video it gets: building one loads and verifies the models (0.3-0.8 s here)."""
    return Tracker(config)


FRAMES_PER_REPORT = 25  # frame-progress granularity: one report a second or so, cheap even as a Ray call


def track_300vw_video(job: VideoJob, on_frames: Callable[[int], None] | None = None) -> VideoOutcome:
    """Track one video into ``job.out`` (frames + result.json), all or nothing: the outputs are
    written to a hidden folder renamed onto ``job.out`` when complete.  ``on_frames(k)``: k more
    frames tracked.  Bad input is an outcome with ``ok=False``; anything else raises."""
    warnings: list[str] = []
    try:
        tracker = _process_tracker(job.config)
        tracker.reset()  # a new video: no track survives from the previous one
        cap, _ = open_video(job.video)
        subject = Subject(sticky=job.config.mode == "video")
        with atomic_output_dir(job.out) as out:
            n = detections = 0
            t0 = time.perf_counter()
            for n, frame in enumerate(read_frames(cap, warnings.append, str(job.video), READ_AHEAD), start=1):
                face = subject.pick(tracker.track(frame).faces)
                if face is not None:
                    write_pts(out / f"{n:06d}.pts", face.landmarks)
                    detections += face.detected
                if on_frames and n % FRAMES_PER_REPORT == 0:
                    on_frames(FRAMES_PER_REPORT)
            if on_frames:
                on_frames(n % FRAMES_PER_REPORT)
            if n == 0:
                raise VideoError(f"{job.video}: no decodable frame (corrupt, or not a video)")
            seconds = time.perf_counter() - t0
            metrics = evaluate_video(out, job.annot)
            # detections: frames whose subject came from the detector rather than from tracking, i.e.
            # the first acquisition plus one per re-detection after a loss (every frame in --stills).
            atomic_write_json(out / "result.json", {"video": str(job.video), "frames": n, "seconds": round(seconds, 2),
                                                    "detections": detections, "warnings": warnings, **metrics})
        scored = f"AUC@0.08 {metrics['auc08']:.4f}" if metrics["annotated_frames"] else "no annotations: nothing to score"
        return VideoOutcome(job.name, f"{n} frames, {scored}", True, tuple(warnings + metrics["malformed_annotations"]))
    except (VideoError, OSError, ValueError) as exc:
        return VideoOutcome(job.name, f"skipped: {exc}", False, tuple(warnings))


def crashed(job: VideoJob, exc: BaseException) -> VideoOutcome:
    """The outcome of a video whose worker raised something unexpected or died."""
    log.debug("%s failed", job.name, exc_info=exc)
    lines = str(exc).strip().splitlines()
    return VideoOutcome(job.name, f"failed: {type(exc).__name__}" + (f": {lines[0]}" if lines else ""), False)


def _die_with_parent(parent: int) -> None:
    """If the batch process is killed (even with SIGKILL), its workers die too, so no orphan
    keeps writing into the output folder while a resumed run starts."""
    try:
        import ctypes
        import signal as _signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(_signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: best effort
    if os.getppid() != parent:  # killed before the line above: it would never fire
        os._exit(1)


_pool_frames = None  # in a pool worker: the frame counter shared with the batch process


def _init_pool_worker(frames, parent: int) -> None:
    global _pool_frames
    _pool_frames = frames
    _die_with_parent(parent)


def _count_pool_frames(k: int) -> None:
    with _pool_frames.get_lock():
        _pool_frames.value += k


def local_outcomes(jobs: list[VideoJob], on_frames: Callable[[int], None], workers: int) -> Iterator[VideoOutcome]:
    """Track the videos on this machine, ``workers`` at a time; outcomes in completion order."""
    if workers <= 1:  # in-process: a killed run leaves no worker behind
        for job in jobs:
            try:
                outcome = track_300vw_video(job, on_frames)
            except Exception as exc:  # a bug or a broken model must not stop the other videos
                outcome = crashed(job, exc)
            yield outcome
        return
    frames = multiprocessing.Value("q", 0)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_pool_worker, initargs=(frames, os.getpid()))
    try:
        futures = {pool.submit(track_300vw_video, job, _count_pool_frames): job for job in jobs}
        pending, seen = set(futures), 0
        while pending:
            ready, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            total = frames.value
            on_frames(total - seen)
            seen = total
            for f in ready:
                yield crashed(futures[f], f.exception()) if f.exception() else f.result()
    finally:
        pool.shutdown(cancel_futures=True)


def run_batch300vw(args) -> int:
    from tqdm import tqdm

    if args.ray is not None:
        try:
            from tracker.raybatch import ray_outcomes
        except ImportError:
            raise UsageError("--ray needs Ray, which is not installed: pip install 'densereg-tracker[cluster]' (or 'ray>=2.9')") from None
        outcomes = functools.partial(ray_outcomes, address=args.ray, cpus=args.jobs)
    else:
        outcomes = functools.partial(local_outcomes, workers=args.jobs or 1)
    videos = find_300vw_videos(args.root)
    # --stills: every frame is an independent picture (detection each frame, no tracking, no
    # smoothing): the reference that tracking must match or beat on the same frames.  Compare
    # runs with the same --cnn-every setting (0 for HOG only in both), so that the comparison is
    # about tracking, not about detectors.  With --ray every video task takes one CPU and one
    # network thread: videos in parallel use cores better than threads within a video.
    threads = 1 if args.ray is not None else max(1, args.threads // (args.jobs or 1))
    config = TrackerConfig.from_args(args, mode="image" if args.stills else "video", threads=threads, smooth=not args.no_smooth,
                                     cnn_fallback=args.cnn_every > 0, video_cnn_every=args.cnn_every)
    if args.cnn_every > 0 and (note := cnn_missing_note(CNN_SILENCE)):
        print(note, file=sys.stderr)
    jobs, done = [], 0
    for name, video in videos:
        out = safe_output_path(args.out, name)
        if (out / "result.json").exists():
            done += 1
            continue
        jobs.append(VideoJob(name, video, args.root / name / "annot", out, config))
    remove_partial_dirs(args.out)  # what a killed run was writing
    failed = 0
    bars = {"file": sys.stderr, "disable": not sys.stderr.isatty()}
    with tqdm(total=len(jobs), unit="video", position=0, **bars) as video_bar, tqdm(unit="frame", position=1, **bars) as frame_bar:
        for outcome in outcomes(jobs, frame_bar.update):
            for w in outcome.warnings:
                tqdm.write(f"warning: {w}", file=sys.stderr)
            tqdm.write(f"{outcome.name}: {outcome.message}", file=sys.stdout)
            failed += not outcome.ok
            video_bar.update()
    remove_partial_dirs(args.out)  # those of attempts that died and were retried
    summary = summarise_300vw(args.out, [n for n, _ in videos])
    atomic_write_json(args.out / "summary.json", summary)
    if summary["curves"]:
        from tracker.plots import ced_plot

        atomic_write_image(args.out / "ced.png", ced_plot({f"all videos (AUC {summary['auc08']:.3f})": summary["curves"]["all"]}))
    jitter = "" if summary["jitter_static"] is None else f", jitter on still frames {100 * summary['jitter_static']:.2f}% of the eye distance"
    if summary["frames"]:
        overall = (f"AUC@0.08 {summary['auc08']:.4f}, FR@0.08 {summary['fr08']:.4f}, NME {summary['nme_mean']:.4f} over "
                   f"{summary['frames']} annotated frames")
    else:
        overall = f"no annotations (NNN/annot/*.pts): nothing to score; the tracked .pts are in {args.out}"
    print(f"done: {len(jobs) - failed} videos tracked, {done} already done, {failed} skipped or failed (rerun to retry); overall {overall}, "
          f"{summary['detections']} detector (re)acquisitions{jitter}")
    return 1 if failed else 0


def summarise_300vw(out: Path, names: list[str]) -> dict:
    import json

    per_video, all_errors = {}, []
    for name in names:
        res = out / name / "result.json"
        if not res.exists():
            continue
        r = json.loads(res.read_text())
        e = [np.inf if x is None else x for x in r["errors"]]
        all_errors += e
        keys = ("frames", "annotated_frames", "missing", "detections", "nme_mean", "auc08", "fr08", "auc08_49", "jitter_static")
        per_video[name] = {k: r.get(k) for k in keys}
    e = np.array(all_errors, float)
    finite = np.isfinite(e)
    jit = [v["jitter_static"] for v in per_video.values() if v.get("jitter_static") is not None]
    return {
        "videos": per_video,
        "jitter_static": float(np.mean(jit)) if jit else None,
        "detections": sum(v.get("detections") or 0 for v in per_video.values()),
        "frames": len(e),
        # null, not NaN (invalid JSON), when no video has annotations: there is nothing to score
        "nme_mean": float(e[finite].mean()) if finite.any() else None,
        "auc08": auc(e) if len(e) else None,
        "fr08": failure_rate(e) if len(e) else None,
        "curves": {"all": [list(map(float, c)) for c in ced(e)]} if len(e) else {},
    }
