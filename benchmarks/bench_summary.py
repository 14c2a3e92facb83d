"""Saved ``run_tracker bench`` results side by side: frames per second as frames over time (the
mean frame) and by the median frame, with the ratios to dlib and MediaPipe both ways.

    python -m benchmarks.bench_summary docs/results/bench*.json [--json F]

Files that are not ``bench`` results (other benchmarks share the prefix) are passed over.  The
tracker's frames are uneven (a face search every 30 frames), so its median frame is faster than
its throughput; ``bench`` reports frames over time since session 27, the files before it the
median frame in ``tracker_fps``: this table reads both from their ``mean_ms`` and ``median_ms``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tracker.fileio import atomic_write_json
from tracker.timing import rates


def summarise(result: dict) -> dict | None:
    """``tracker.timing.rates`` of a saved bench result; None for a file that is not one."""
    if not isinstance(result, dict) or not isinstance(result.get("tracker_total"), dict):
        return None
    return {"machine": result.get("machine"), "engine": result.get("engine"), **rates(result)}


def _cell(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_summary", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", type=Path, nargs="+", help="JSON files written by run_tracker bench --json")
    ap.add_argument("--json", type=Path, help="also save the table as JSON")
    args = ap.parse_args(argv)
    rows = {}
    for path in args.files:
        row = summarise(json.loads(path.read_text()))
        if row is not None:
            rows[path.name] = row
    if not rows:
        raise SystemExit("error: none of these files is a run_tracker bench result")
    print("| file | tracker fps, frames over time (median frame) | x dlib (median frames) | x MediaPipe (median frames) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tracker_fps']:.1f} ({r['tracker_fps_median_frame']:.1f}) | "
              f"{_cell(r['speedup_vs_dlib'], '.2f')} ({_cell(r['speedup_vs_dlib_median_frame'], '.2f')}) | "
              f"{_cell(r['speedup_vs_mediapipe'], '.2f')} ({_cell(r['speedup_vs_mediapipe_median_frame'], '.2f')}) |")
    if args.json:
        atomic_write_json(args.json, {"command": "python -m benchmarks.bench_summary", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
