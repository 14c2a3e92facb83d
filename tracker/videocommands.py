"""What the ``video`` and ``batch300vw`` subcommands do.

``batch300vw`` layout: ``ROOT/NNN/vid.avi|mp4`` with ``ROOT/NNN/annot/000001.pts``...; output
``OUT/NNN/000001.pts`` per tracked frame (frame numbers 1-based like the annotations),
``OUT/NNN/result.json`` (per-video metrics, written last: the video is finished), and
``OUT/summary.json`` + ``OUT/ced.png`` over all videos.  A killed run restarted with the same
command redoes only the unfinished video, from its first frame, after removing its partial
frames: the final outputs are exactly those of an uninterrupted run.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tracker.commands import COORDINATES, face_to_json, largest_face
from tracker.fileio import atomic_write_image, atomic_write_json, atomic_write_text, safe_output_path
from tracker.metrics import auc, ced, eye_distance, failure_rate, score_faces
from tracker.pipeline import FaceResult, Tracker, TrackerConfig
from tracker.pts import PtsError, read_pts, write_pts
from tracker.video import VIDEO_EXTENSIONS, AtomicVideoWriter, VideoError, annotate, open_video, read_frames


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
    from tqdm import tqdm

    cap, info = open_video(args.input)
    tracker = Tracker(TrackerConfig(mode="video", engine=args.engine, threads=args.threads, refine=not args.no_refine,
                                    smooth=not args.no_smooth, video_cnn_every=max(args.cnn_every, 0)))
    writer = AtomicVideoWriter(args.out, info.fps, (info.width, info.height)) if args.out else None
    rows, frames_json = [], []
    subject = Subject(sticky=True)
    t_start = time.perf_counter()
    n = 0
    for n, frame in enumerate(tqdm(read_frames(cap, _warn, str(args.input)), total=info.frames or None, unit="frame",
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
        raise VideoError(f"{args.input}: no decodable frame")
    if writer:
        writer.close()
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
        raise NotADirectoryError(f"{root}: not a folder")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        vids = sorted(p for p in d.iterdir() if p.stem == "vid" and p.suffix.lower() in VIDEO_EXTENSIONS)
        if vids:
            out.append((d.name, vids[0]))
    if not out:
        raise FileNotFoundError(f"{root}: no 300VW videos (expected NNN/vid.avi or NNN/vid.mp4)")
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


def track_300vw_video(job: tuple[str, str, str, str, TrackerConfig]) -> tuple[str, str]:
    """Track one video and write its frames + result.json; returns (name, message)."""
    name, video, annot, out_dir, config = job
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob("*.pts"):  # partial frames of a killed run: redo the video cleanly
            stale.unlink()
        tracker = Tracker(config)
        cap, info = open_video(Path(video))
        warnings: list[str] = []
        subject = Subject(sticky=config.mode == "video")
        n = detections = 0
        t0 = time.perf_counter()
        for n, frame in enumerate(read_frames(cap, warnings.append, video), start=1):
            face = subject.pick(tracker.track(frame).faces)
            if face is not None:
                write_pts(out / f"{n:06d}.pts", face.landmarks)
                detections += face.detected
        seconds = time.perf_counter() - t0
        metrics = evaluate_video(out, Path(annot))
        # detections: frames whose subject came from the detector rather than from tracking, i.e.
        # the first acquisition plus one per re-detection after a loss (every frame in --stills).
        atomic_write_json(out / "result.json", {"video": video, "frames": n, "seconds": round(seconds, 2), "detections": detections,
                                                "warnings": warnings, **metrics})
        for w in warnings + metrics["malformed_annotations"]:
            print(f"warning: {w}", file=sys.stderr)
        return name, f"{n} frames, AUC@0.08 {metrics['auc08'] if metrics['auc08'] is not None else 'n/a'}"
    except (VideoError, OSError, ValueError) as exc:
        return name, f"skipped: {exc}"


def _die_with_parent() -> None:
    """Worker initializer: if the batch process is killed (even with SIGKILL), its workers die
    too, so no orphan keeps writing into the output folder while a resumed run starts."""
    try:
        import ctypes
        import signal as _signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(_signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: best effort


def run_batch300vw(args) -> int:
    from tqdm import tqdm

    videos = find_300vw_videos(args.root)
    # --stills: every frame is an independent picture (detection each frame, no tracking, no
    # smoothing): the reference that tracking must match or beat on the same frames.  Compare
    # runs with the same --cnn-every setting (0 for HOG only in both), so that the comparison is
    # about tracking, not about detectors.
    config = TrackerConfig(mode="image" if args.stills else "video", engine=args.engine, threads=max(1, args.threads // max(1, args.jobs)),
                           refine=not args.no_refine, smooth=not args.no_smooth,
                           cnn_fallback=args.cnn_every > 0, video_cnn_every=max(args.cnn_every, 0))
    jobs, done = [], 0
    for name, video in videos:
        out = safe_output_path(args.out, name)
        if (out / "result.json").exists():
            done += 1
            continue
        jobs.append((name, str(video), str(args.root / name / "annot"), str(out), config))
    failed = 0
    if args.jobs > 1:
        pool = ProcessPoolExecutor(max_workers=args.jobs, initializer=_die_with_parent)
        results = pool.map(track_300vw_video, jobs)
    else:  # in-process: a killed run leaves no worker behind
        pool, results = None, map(track_300vw_video, jobs)
    try:
        for name, msg in tqdm(results, total=len(jobs), unit="video", file=sys.stderr, disable=not sys.stderr.isatty()):
            print(f"{name}: {msg}")
            failed += msg.startswith("skipped")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary = summarise_300vw(args.out, [n for n, _ in videos])
    atomic_write_json(args.out / "summary.json", summary)
    if summary["curves"]:
        from tracker.plots import ced_plot

        atomic_write_image(args.out / "ced.png", ced_plot({f"all videos (AUC {summary['auc08']:.3f})": summary["curves"]["all"]}))
    jitter = "" if summary["jitter_static"] is None else f", jitter on still frames {100 * summary['jitter_static']:.2f}% of the eye distance"
    print(f"done: {len(jobs) - failed} videos tracked, {done} already done, {failed} skipped; overall "
          f"AUC@0.08 {summary['auc08']:.4f}, FR@0.08 {summary['fr08']:.4f}, NME {summary['nme_mean']:.4f} over {summary['frames']} annotated frames, "
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
        per_video[name] = {k: r.get(k) for k in ("frames", "annotated_frames", "missing", "detections", "nme_mean", "auc08", "fr08", "auc08_49", "jitter_static")}
    e = np.array(all_errors, float)
    finite = np.isfinite(e)
    jit = [v["jitter_static"] for v in per_video.values() if v.get("jitter_static") is not None]
    return {
        "videos": per_video,
        "jitter_static": float(np.mean(jit)) if jit else None,
        "detections": sum(v.get("detections") or 0 for v in per_video.values()),
        "frames": len(e),
        "nme_mean": float(e[finite].mean()) if finite.any() else float("nan"),
        "auc08": auc(e) if len(e) else float("nan"),
        "fr08": failure_rate(e) if len(e) else float("nan"),
        "curves": {"all": [list(map(float, c)) for c in ced(e)]} if len(e) else {},
    }
