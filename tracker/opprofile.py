"""``bench --profile``: where each model's time goes, per ONNX Runtime operator type.

The models (DenseReg and every refiner stage of the configuration) are profiled in sessions of
their own, created with ONNX Runtime's profiling on, inside a second Tracker that tracks the same
frames after the timed passes: profiling never slows what ``bench`` times.  ONNX Runtime writes
its JSON trace under a temporary prefix; the files are deleted once read.
"""
from __future__ import annotations

import bisect
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from tracker.pipeline import Tracker, TrackerConfig, parallelism
from tracker.sources import ArraySource, track_stream

SKIP_CALLS = 1  # a session's first call allocates its memory arena: not representative
OUTSIDE_KERNELS = "(outside kernels)"


def summarise(events: list[dict], skip_calls: int = SKIP_CALLS) -> dict:
    """ONNX Runtime trace events -> per-operator-type share of the run time.

    Kernel times of the calls after the first ``skip_calls`` (all calls when there are no more)
    are summed per operator type; the run time not spent in any kernel is the row
    ``(outside kernels)``, so the rows add up to 100% and to ``ms_per_call``."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"])
    skipped = skip_calls if len(runs) > skip_calls else 0
    runs = runs[skipped:]
    if not runs:
        return {"calls": 0, "skipped_calls": 0, "ms_per_call": None, "kernels_per_call": None, "ops": []}
    starts = [r["ts"] for r in runs]
    per_op: dict[str, float] = {}
    kernels = 0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > starts[i] + runs[i]["dur"]:
            continue  # a call left out
        op = e.get("args", {}).get("op_name", "?")
        per_op[op] = per_op.get(op, 0.0) + e["dur"]
        kernels += 1
    total = float(sum(r["dur"] for r in runs))
    outside = total - sum(per_op.values())
    if outside > 0:
        per_op[OUTSIDE_KERNELS] = outside
    calls = len(runs)
    ops = [{"op": op, "percent": 100.0 * us / total, "ms_per_call": us / calls / 1000.0}
           for op, us in sorted(per_op.items(), key=lambda kv: -kv[1])]
    return {"calls": calls, "skipped_calls": skipped, "ms_per_call": total / calls / 1000.0, "kernels_per_call": kernels / calls, "ops": ops}


def profile_models(config: TrackerConfig, frames: list[np.ndarray]) -> dict[str, dict]:
    """Track ``frames`` with profiled ONNX Runtime sessions; model file name -> ``summarise``."""
    from engines.onnx_engine import OnnxEngine

    config = replace(config, engine="onnx")  # the profile is ONNX Runtime's, whatever engine was timed
    tracker = Tracker(config)
    with tempfile.TemporaryDirectory(prefix="densereg-profile-") as tmp:
        threads = parallelism(config, "onnx")[1]  # what each of the tracker's calls runs on
        # split and run as the tracker's own (its calls side by side, the int8 graphs one face a call)
        engines = [OnnxEngine(path, threads, profile_prefix=str(Path(tmp) / path.stem), calls=own.calls,
                              one_sample_per_call=own.one_sample_per_call) for path, own in zip(tracker.model_files, tracker._engines)]
        # The same Tracker with its sessions swapped for profiled ones of the same files
        # (DenseReg, then its refiner stages in order).
        tracker.engine = engines[0]
        tracker.refiners = [replace(stage, infer=engine.infer) for stage, engine in zip(tracker.refiners, engines[1:])]
        for _ in track_stream(tracker, ArraySource(frames)):
            pass
        out = {}
        for path, engine in zip(tracker.model_files, engines):
            trace = engine.end_profiling()
            out[path.name] = summarise(json.loads(trace.read_text()))
            trace.unlink()
    return out


def profile_lines(profiles: dict[str, dict], threads: int) -> list[str]:
    """The printed table: one block per model, operator types by share of time."""
    lines = [f"ONNX Runtime op profile (profiled sessions, CPU, {threads} thread(s) a call, one pass over the same frames after the timing; "
             f"first call of each session left out)"]
    for name, p in profiles.items():
        if not p["calls"]:
            lines.append(f"{name}: not called")
            continue
        lines.append(f"{name}: {p['calls']} calls, {p['ms_per_call']:.2f} ms per call, {p['kernels_per_call']:.0f} kernels per call")
        lines.append(f"  {'op type':<24}{'% time':>8}{'ms/call':>10}")
        lines += [f"  {o['op']:<24}{o['percent']:>8.1f}{o['ms_per_call']:>10.3f}" for o in p["ops"]]
    return lines
