"""Soak test: track a looping clip for N minutes and watch memory and speed over time.

    python -m benchmarks.soak [--minutes 30] [--video CLIP] [--json docs/results/soak.json]

Prints RSS and fps every --every seconds and, at the end, RSS growth and fps change from the
first minute (after warm-up) to the last one.  Targets (issue: reliability): < 5% RSS growth and
no fps decay.  The tracker is reset at every loop, like a new video, so re-detection, track
creation and loss all happen over and over.
"""
from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from tracker.assets import DEMO_CLIP
from tracker.fileio import atomic_write_json
from tracker.pipeline import Tracker, TrackerConfig
from tracker.sources import ArraySource, VideoSource, load_frames, track_stream


def rss_mb() -> float:
    """Current resident set size (Linux /proc), falling back to the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--video", type=Path, default=DEMO_CLIP)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    frames = load_frames(VideoSource(args.video), 10_000, (640, 480))
    tracker = Tracker(TrackerConfig(mode="video", threads=args.threads))
    samples, t0 = [], time.time()
    next_sample, n_since, t_since, i = t0 + args.every, 0, time.time(), 0
    print(f"{'minute':>7} {'rss MB':>8} {'fps':>7}")
    while time.time() - t0 < args.minutes * 60:
        for _ in track_stream(tracker, ArraySource(frames)):  # each loop a new stream: the tracker is reset
            i += 1
            n_since += 1
            if time.time() >= next_sample:
                now = time.time()
                samples.append({"minute": (now - t0) / 60, "rss_mb": rss_mb(), "fps": n_since / (now - t_since)})
                print(f"{samples[-1]['minute']:>7.1f} {samples[-1]['rss_mb']:>8.1f} {samples[-1]['fps']:>7.1f}", flush=True)
                n_since, t_since, next_sample = 0, now, now + args.every
            if time.time() - t0 >= args.minutes * 60:
                break
    first = [s for s in samples if 1.0 <= s["minute"] < 2.0] or samples[:2]
    last = [s for s in samples if s["minute"] >= samples[-1]["minute"] - 1.0]
    rss0, rss1 = np.mean([s["rss_mb"] for s in first]), np.mean([s["rss_mb"] for s in last])
    fps0, fps1 = np.mean([s["fps"] for s in first]), np.mean([s["fps"] for s in last])
    result = {"minutes": args.minutes, "frames": i, "samples": samples, "rss_growth_pct": 100 * (rss1 - rss0) / rss0,
              "fps_change_pct": 100 * (fps1 - fps0) / fps0, "engine": tracker.describe()}
    print(f"RSS {rss0:.1f} -> {rss1:.1f} MB ({result['rss_growth_pct']:+.2f}%), "
          f"fps {fps0:.1f} -> {fps1:.1f} ({result['fps_change_pct']:+.1f}%) over {i} frames")
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
