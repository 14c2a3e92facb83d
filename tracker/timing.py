"""Timing the tracker next to dlib (and MediaPipe) in one process: what ``run_tracker bench`` runs.

The tracker (video mode) and dlib's HOG detector + 68-point predictor (on every face it finds)
run over the same frames of the same clip (default: the bundled demo clip at 640x480),
alternating per pass, so machine noise hits both; the table reports medians and 90th
percentiles, and the speed-up ratio.  With ``--mediapipe-python PATH`` MediaPipe Face Mesh
(``tracker/mediapipe_baseline.py``, in that Python) takes its turn in each pass as well.  The
start-up (import + model load in a fresh process) is measured once per pass; ``--profile`` adds
ONNX Runtime's per-operator profile of every model (``tracker/opprofile.py``).
Without dlib's 68-point predictor (the ``[cnn]`` extra) the tracker is timed alone and a note
says so: the JSON then has ``null`` for dlib and the ratio.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from tracker.detector import detect_faces, dlib_landmarks
from tracker.opprofile import profile_models
from tracker.pipeline import Tracker, TrackerConfig
from tracker.sources import ArraySource, track_stream

WARMUP_FRAMES = 5  # engine allocations, first detection
# Run in a fresh Python: what a user waits for before the first frame (the interpreter's own
# start and exit are the rest of the process's wall time).
STARTUP_CODE = """import json, sys, time
t0 = time.perf_counter()
from tracker import Tracker, TrackerConfig
t1 = time.perf_counter()
tracker = Tracker(TrackerConfig(**json.loads(sys.argv[1])))
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "construct_s": t2 - t1, "construct_ms": tracker.load_ms}))
"""


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU a timing ran on, e.g. "AMD EPYC (x86_64), 2 CPUs": absolute times, and even the
    ratio to dlib, differ between machines (2x and 3.1x against 4.0x: README, Speed), so every
    saved timing names it.  The model is Linux's /proc/cpuinfo "model name" where there is one."""
    model = ""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("model name")), "")
    except OSError:
        pass
    arch = platform.machine() or platform.processor()
    return f"{model} ({arch}), {os.cpu_count()} CPUs" if model else f"{platform.processor() or arch}, {os.cpu_count()} CPUs"


def time_dlib(frames: list[np.ndarray]) -> tuple[list[float], list[int]]:
    """ms per frame and faces per frame: HOG, then 68 points on every face it finds (as the
    tracker does on every face it tracks)."""
    ms, faces = [], []
    for f in frames:
        t = time.perf_counter()
        gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        dets = detect_faces(gray)
        for d in dets:
            dlib_landmarks(gray, d)
        ms.append(1000 * (time.perf_counter() - t))
        faces.append(len(dets))
    return ms, faces


def time_tracker(tracker: Tracker, frames: list[np.ndarray], stages: dict[str, list[float]]) -> tuple[list[float], list[int]]:
    """ms per frame and faces per frame over one pass; per-stage ms appended to ``stages``."""
    ms, faces = [], []
    for tracked in track_stream(tracker, ArraySource(frames)):
        ms.append(tracked.track_ms)
        faces.append(len(tracked.result.faces))
        for k, v in tracked.result.timings.items():
            stages.setdefault(k, []).append(v)
    return ms, faces


def measure_startup(config: TrackerConfig) -> dict:
    """Import + Tracker construction in a fresh process, with the construction's breakdown."""
    fields = {k: v for k, v in asdict(config).items() if k in ("mode", "engine", "threads", "refine", "refiners", "fast_network")}
    root = str(Path(__file__).resolve().parents[1])  # the same code as this process
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", STARTUP_CODE, json.dumps(fields)], capture_output=True, text=True, env=env, timeout=300)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        raise RuntimeError(f"start-up measurement failed: {lines[-1] if lines else r.returncode}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"process_s": wall, **out}


def _stat(v: list[float], count: int) -> dict:
    a = np.array(v + [0.0] * (count - len(v)))  # a stage that skipped a frame took 0 ms there
    return {"median_ms": float(np.median(a)), "mean_ms": float(a.mean()), "p90_ms": float(np.percentile(a, 90))}


def open_mediapipe(python: Path | None, max_faces: int):
    """The Face Mesh worker run by ``python``, or None with a one-line note (absent, or not usable)."""
    if not python:
        return None
    from tracker.mediapipe_baseline import MediaPipeError, MediaPipeFaceMesh

    try:
        return MediaPipeFaceMesh(python, max_faces)
    except MediaPipeError as exc:
        print(f"note: MediaPipe not timed: {exc}", file=sys.stderr)
        return None


def time_mediapipe(mesh, frames: list[np.ndarray], warmup: bool = False) -> tuple[list[float], list[int]] | None:
    """ms and faces per frame over one pass from a fresh Face Mesh (as the worker timed them);
    None, with a one-line note, when the worker fails: the others are still timed."""
    from tracker.mediapipe_baseline import MediaPipeError

    try:
        if not warmup:
            mesh.reset()
        out = [mesh.process(f) for f in frames]
    except MediaPipeError as exc:
        print(f"note: MediaPipe dropped from the run: {exc}", file=sys.stderr)
        return None
    return [ms for ms, _ in out], [n for _, n in out]


def benchmark(config: TrackerConfig, frames: list[np.ndarray], source: str, repeats: int, with_dlib: bool, mediapipe=None,
              profile: bool = False) -> dict:
    """The tracker (and dlib, and ``mediapipe`` from ``open_mediapipe``) over ``frames``,
    ``repeats`` passes each, alternating; the start-up in a fresh process once per pass."""
    from contextlib import nullcontext

    tracker = Tracker(config)
    stages: dict[str, list[float]] = {}
    totals, dlib_ms, mp_ms, startups = [], [], [], []
    faces = {"tracker": [], "dlib": [], "mediapipe": []}
    with mediapipe or nullcontext():
        for _ in track_stream(tracker, ArraySource(frames[:WARMUP_FRAMES])):
            pass
        if with_dlib:  # its first call loads the 68-point model (~0.8 s): not a frame's cost
            time_dlib(frames[:WARMUP_FRAMES])
        if mediapipe and time_mediapipe(mediapipe, frames[:WARMUP_FRAMES], warmup=True) is None:
            mediapipe = None
        for _ in range(repeats):
            startups.append(measure_startup(config))
            ms, n_faces = time_tracker(tracker, frames, stages)
            totals += ms
            faces["tracker"] += n_faces
            if with_dlib:
                ms, n_faces = time_dlib(frames)
                dlib_ms += ms
                faces["dlib"] += n_faces
            if mediapipe:
                timed = time_mediapipe(mediapipe, frames)
                if timed is None:  # no partial column: every row covers the same passes
                    mediapipe, mp_ms, faces["mediapipe"] = None, [], []
                else:
                    mp_ms += timed[0]
                    faces["mediapipe"] += timed[1]
        mediapipe_version = mediapipe.version if mediapipe else None
    n = len(totals)
    startup = min(startups, key=lambda s: s["process_s"])  # the least disturbed of the passes
    result = {
        "video": source,
        "frames": n,  # timed: the clip's frames times the passes
        "passes": repeats,
        "size": [frames[0].shape[1], frames[0].shape[0]],
        "engine": tracker.describe(),
        "densereg": tracker.densereg_asset,
        "refine": config.refine,
        "refiners": list(config.refiners) if config.refine else [],
        "machine": machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "startup": {**startup, "passes_process_s": [s["process_s"] for s in startups]},
        "stages": {k: _stat(v, n) for k, v in stages.items()},
        "tracker_total": _stat(totals, n),
        "dlib_hog_plus_68": _stat(dlib_ms, n) if with_dlib else None,
        "mediapipe_face_mesh": _stat(mp_ms, n) if mp_ms else None,
        "mediapipe_version": mediapipe_version,
        "faces_per_frame": {k: float(np.mean(v)) if v else None for k, v in faces.items()},
    }
    result.update(rates(result))
    if profile:
        result["profile"] = profile_models(config, frames)
    return result


TIMED = {"tracker": "tracker_total", "dlib": "dlib_hog_plus_68", "mediapipe": "mediapipe_face_mesh"}


def rates(result: dict) -> dict:
    """Frames a second of each method a bench `result` timed, and the tracker's ratios to the
    others: frames over time (the mean frame), and by the median frame (``*_median_frame``).
    The tracker's frames are uneven (a face search every 30 frames, ~13 ms more): by the median
    frame it read 10-22% faster than it runs, against dlib's even frames too (user test 15)."""
    out: dict = {}
    for name, key in TIMED.items():
        stat = result.get(key)
        out[f"{name}_fps"] = 1000.0 / stat["mean_ms"] if stat else None
        out[f"{name}_fps_median_frame"] = 1000.0 / stat["median_ms"] if stat else None
    for name in ("dlib", "mediapipe"):
        for how in ("", "_median_frame"):
            theirs = out[f"{name}_fps{how}"]
            out[f"speedup_vs_{name}{how}"] = out[f"tracker_fps{how}"] / theirs if theirs else None
    return out


def print_result(result: dict) -> None:
    """The table ``bench`` prints."""
    video = result["video"]
    passes = result.get("passes", 1)
    print(f"{result['frames'] // passes} frames of {video} x {passes} pass{'es' * (passes != 1)} at {result['size'][0]}x{result['size'][1]}, "
          f"{result['densereg']}, {result['engine']}")
    print(f"{'stage':<26}{'median ms':>10}{'mean ms':>10}{'p90 ms':>10}{'faces/frame':>13}")
    fpf = result["faces_per_frame"]
    rows = [(k, v, None) for k, v in result["stages"].items()] + [
        ("tracker total", result["tracker_total"], fpf["tracker"]),
        ("dlib HOG + 68 points", result["dlib_hog_plus_68"], fpf["dlib"]),
        ("MediaPipe Face Mesh", result["mediapipe_face_mesh"], fpf["mediapipe"]),
    ]
    for k, v, f in rows:
        if v is not None:
            print(f"{k:<26}{v['median_ms']:>10.2f}{v['mean_ms']:>10.2f}{v['p90_ms']:>10.2f}" + (f"{f:>13.2f}" if f is not None else ""))
    s = result["startup"]
    parts = ", ".join(f"{k} {v / 1000:.2f}" for k, v in s["construct_ms"].items())
    print(f"start-up, fresh process: {s['process_s']:.2f} s wall (import {s['import_s']:.2f} s, Tracker() {s['construct_s']:.2f} s: {parts})")
    line = f"frames/s (frames over time): tracker {result['tracker_fps']:.1f}"
    if result["speedup_vs_dlib"]:
        line += f", dlib {result['dlib_fps']:.1f}: {result['speedup_vs_dlib']:.2f}x dlib"
    else:
        line += " (dlib not timed)"
    if result["speedup_vs_mediapipe"]:
        line += f"; MediaPipe {result['mediapipe_fps']:.1f}: {result['speedup_vs_mediapipe']:.2f}x MediaPipe"
    print(line)
    median = f"by the median frame: tracker {result['tracker_fps_median_frame']:.1f}"
    if result["speedup_vs_dlib"]:
        median += f", {result['speedup_vs_dlib_median_frame']:.2f}x dlib"
    if result["speedup_vs_mediapipe"]:
        median += f", {result['speedup_vs_mediapipe_median_frame']:.2f}x MediaPipe"
    print(median + " (a median leaves out occasional slow frames, such as the tracker's face searches)")
