"""``run_tracker bench``: per-stage latency and end-to-end fps next to dlib, in the same run.

The tracker (video mode) and dlib's HOG detector + 68-point predictor run over the same frames
of the same clip (default: the bundled demo clip at 640x480), alternating per pass, so machine
noise hits both; the table reports medians and 90th percentiles, and the speed-up ratio.
Without dlib's 68-point predictor (the ``[cnn]`` extra) the tracker is timed alone and a note
says so: the JSON then has ``null`` for dlib and the ratio.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from tracker.detector import CNN_EXTRA, detect_faces, dlib_landmarks, dlib_models_problem
from tracker.fileio import atomic_write_json, check_writable
from tracker.pipeline import Tracker, TrackerConfig
from tracker.video import open_video, read_frames


def load_frames(path: Path, limit: int, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    cap, _ = open_video(path)
    frames = []
    for f in read_frames(cap, source=str(path)):
        frames.append(cv2.resize(f, size) if (f.shape[1], f.shape[0]) != size else f)
        if len(frames) >= limit:
            break
    return frames


def time_dlib(frames: list[np.ndarray]) -> list[float]:
    out = []
    for f in frames:
        t = time.perf_counter()
        gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        dets = detect_faces(gray)
        if dets:
            dlib_landmarks(gray, dets[0])
        out.append(1000 * (time.perf_counter() - t))
    return out


def run_bench(args) -> int:
    from tracker.commands import DEMO_CLIP

    video = args.video or DEMO_CLIP
    if args.json:
        check_writable(args.json)  # now, not after minutes of timing
    frames = load_frames(video, args.frames)
    if not frames:
        raise ValueError(f"{video}: no decodable frame")
    with_dlib = dlib_models_problem() is None
    if not with_dlib:
        print(f"note: dlib not timed (its 68-point predictor comes with {CNN_EXTRA}); the tracker alone", file=sys.stderr)
    tracker = Tracker(TrackerConfig.from_args(args, mode="video"))
    stages: dict[str, list[float]] = {}
    totals, dlib_ms = [], []
    for f in frames[:5]:  # warm-up: engine allocations, first detection
        tracker.track(f)
    for rep in range(args.repeats):
        tracker.reset()
        for f in frames:
            t = time.perf_counter()
            r = tracker.track(f)
            totals.append(1000 * (time.perf_counter() - t))
            for k, v in r.timings.items():
                stages.setdefault(k, []).append(v)
        if with_dlib:
            dlib_ms += time_dlib(frames)
    n = len(totals)

    def stat(v, count=n):
        a = np.array(v + [0.0] * (count - len(v)))  # a stage that skipped a frame took 0 ms there
        return {"median_ms": float(np.median(a)), "mean_ms": float(a.mean()), "p90_ms": float(np.percentile(a, 90))}

    result = {
        "video": str(video),
        "frames": n,
        "size": [frames[0].shape[1], frames[0].shape[0]],
        "engine": tracker.engine.describe(),
        "refine": not args.no_refine,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "stages": {k: stat(v) for k, v in stages.items()},
        "tracker_total": stat(totals),
        "dlib_hog_plus_68": stat(dlib_ms) if with_dlib else None,
    }
    tm = result["tracker_total"]["median_ms"]
    dm = result["dlib_hog_plus_68"]["median_ms"] if with_dlib else None
    result["tracker_fps"] = 1000.0 / tm
    result["dlib_fps"] = 1000.0 / dm if dm else None
    result["speedup_vs_dlib"] = dm / tm if dm else None
    print(f"{n} frames of {video} at {result['size'][0]}x{result['size'][1]}, {result['engine']}")
    print(f"{'stage':<22}{'median ms':>10}{'mean ms':>10}{'p90 ms':>10}")
    rows = list(result["stages"].items()) + [("tracker total", result["tracker_total"]), ("dlib HOG + 68 points", result["dlib_hog_plus_68"])]
    for k, v in rows:
        if v is not None:
            print(f"{k:<22}{v['median_ms']:>10.2f}{v['mean_ms']:>10.2f}{v['p90_ms']:>10.2f}")
    if dm:
        print(f"tracker {result['tracker_fps']:.1f} fps, dlib {result['dlib_fps']:.1f} fps: {result['speedup_vs_dlib']:.2f}x dlib")
    else:
        print(f"tracker {result['tracker_fps']:.1f} fps (dlib not timed)")
    if args.json:
        atomic_write_json(args.json, result)
    return 0
