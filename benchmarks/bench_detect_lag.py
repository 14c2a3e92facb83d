"""Video's periodic search for new faces, inline (``detect_lag=0``) against in the worker process
(``detect_lag=3``, the default for cameras): ms per frame over the same frames, alternating passes.

    python -m benchmarks.bench_detect_lag [--video CLIP] [--passes 2] [--json docs/results/detect_lag.json]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tracker import Tracker, TrackerConfig
from tracker.assets import DEMO_CLIP
from tracker.fileio import atomic_write_json
from tracker.sources import ArraySource, VideoSource, load_frames, track_stream


def run(frames: list[np.ndarray], lags: tuple[int, ...], passes: int, threads: int) -> dict[int, dict]:
    trackers = {lag: Tracker(TrackerConfig(mode="video", detect_lag=lag, threads=threads)) for lag in lags}
    per = {lag: {"total": [], "detect": []} for lag in lags}
    for tracker in trackers.values():  # warm-up, and the worker process started
        for _ in track_stream(tracker, ArraySource(frames[:40])):
            pass
    for _ in range(passes):
        for lag, tracker in trackers.items():
            for tracked in track_stream(tracker, ArraySource(frames)):  # each pass a new stream: the tracker is reset
                per[lag]["total"].append(tracked.track_ms)
                per[lag]["detect"].append(tracked.result.timings.get("detect", np.nan))
    for tracker in trackers.values():
        tracker.close()
    out = {}
    for lag, d in per.items():
        total, detect = np.array(d["total"]), np.array(d["detect"])
        searched = detect[np.isfinite(detect)]
        out[lag] = {"median_ms": float(np.median(total)), "mean_ms": float(total.mean()), "p99_ms": float(np.percentile(total, 99)),
                    "frames_with_search": int(len(searched)), "search_ms_median": float(np.median(searched)) if len(searched) else 0.0}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_detect_lag", description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=DEMO_CLIP)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    frames = load_frames(VideoSource(args.video))
    result = run(frames, (0, 3), args.passes, args.threads)
    print(f"{len(frames)} frames of {args.video}, {args.passes} passes each, alternating")
    print(f"{'detect_lag':>10} {'median ms':>10} {'mean ms':>9} {'p99 ms':>8} {'frames searching':>17} {'their detect ms':>16}")
    for lag, r in result.items():
        print(f"{lag:>10} {r['median_ms']:>10.2f} {r['mean_ms']:>9.2f} {r['p99_ms']:>8.1f} "
              f"{r['frames_with_search']:>17} {r['search_ms_median']:>16.2f}")
    if args.json:
        atomic_write_json(args.json, {"video": str(args.video), "frames": len(frames), "passes": args.passes,
                                      "detect_lag": {str(k): v for k, v in result.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
