"""What the dense maps on every face cost, and what the opt-in visibility and template maps cost, on the demo clip.

    python -m benchmarks.bench_maps [--frames 150] [--threads 1] [--json docs/results/maps.json]

Every ``FaceResult`` carries its ``maps`` (views into the engine's output for the frame, no
copy): the table gives the bytes a kept FrameResult holds on to per face, and the tracker's ms
per frame with neither opt-in map, with ``TrackerConfig.visibility`` and with
``TrackerConfig.template_maps`` (the template fitted to the landmarks: parts and face transfer),
alternating runs in one process (this machine is shared and noisy: compare the rows, not the
absolute numbers across runs).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tracker.assets import DEMO_CLIP
from tracker.fileio import atomic_write_text
from tracker.pipeline import FaceResult, Tracker, TrackerConfig
from tracker.video import open_video, read_frames


def retained_bytes(face: FaceResult) -> int:
    """Bytes a kept face holds on to through its maps: the whole arrays they are views of."""
    arrays = {}
    for a in (face.maps.uv, face.maps.fg, face.maps.depth):
        base = a if a.base is None else a.base
        arrays[id(base)] = base.nbytes
    return sum(arrays.values()) + face.crop_to_image.nbytes


def load_frames(n: int) -> list[np.ndarray]:
    cap, _ = open_video(DEMO_CLIP)
    frames = read_frames(cap)
    try:
        return [f for _, f in zip(range(n), frames)]
    finally:
        frames.close()


def time_run(config: TrackerConfig, frames: list[np.ndarray]) -> tuple[float, list[int]]:
    """Median ms per frame over one pass, and each face's retained bytes."""
    tracker = Tracker(config)
    ms, sizes = [], []
    for f in frames:
        t = time.perf_counter()
        result = tracker.track(f)
        ms.append(1000 * (time.perf_counter() - t))
        sizes += [retained_bytes(face) for face in result.faces]
    return float(np.median(ms)), sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating passes per setting")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    frames = load_frames(args.frames)
    settings = {"maps only (default)": {}, "maps + visibility": {"visibility": True}, "maps + template maps": {"template_maps": True}}
    runs: dict[str, list[float]] = {name: [] for name in settings}
    sizes: list[int] = []
    for _ in range(args.rounds):
        for name, extra in settings.items():
            ms, s = time_run(TrackerConfig(mode="video", threads=args.threads, **extra), frames)
            runs[name].append(ms)
            sizes += s
    per_face = int(np.median(sizes)) if sizes else 0
    lines = [f"demo clip, {len(frames)} frames, video mode, {args.threads} thread(s), {args.rounds} alternating passes",
             f"dense maps kept per face: {per_face / 1024:.0f} KiB (uv, fg, depth float32 + crop_to_image; views, no copy)",
             "| setting | median ms/frame (best pass) |", "|---|---|"]
    lines += [f"| {name} | {min(v):.2f} |" for name, v in runs.items()]
    print("\n".join(lines))
    if args.json:
        atomic_write_text(args.json, json.dumps({"frames": len(frames), "threads": args.threads, "bytes_per_face": per_face,
                                                 "ms_per_frame": {k: min(v) for k, v in runs.items()}, "passes": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
