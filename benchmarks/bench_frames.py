"""What reading a caller's frame of another depth costs (``tracker.fileio.to_bgr8``).

    python -m benchmarks.bench_frames [--repeats 20] [--json F]

Times the conversion of 1080p and 4K frames in each depth a caller hands ``Tracker.track``
(uint8 BGR, 16-bit, float 0-1, float 0-255, float -1 to 1, float BGRA) beside the floor of any
conversion, one OpenCV pass over the same frame (``cv2.convertScaleAbs``) in the same process.
Target: a float 1080p frame within 10 ms (a 30 fps video's frame budget is 33 ms, and the tracker
spends ~13 ms on a face), i.e. a few passes over it, not tens.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from tracker.fileio import atomic_write_json, to_bgr8

SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}


def frames(height: int, width: int) -> dict[str, np.ndarray]:
    """One smooth picture (what a camera sees: no noise-only statistics) in every depth."""
    rng = np.random.default_rng(0)
    small = rng.random((height // 40, width // 40, 3), dtype=np.float32)
    unit = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return {"uint8": (unit * 255).round().astype(np.uint8), "uint16": (unit * 65535).astype(np.uint16),
            "float 0-1": unit, "float 0-255": unit * 255, "float -1..1": unit * 2 - 1,
            "float BGRA 0-1": cv2.cvtColor(unit, cv2.COLOR_BGR2BGRA)}


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    print(f"{'size':6} {'depth':16} {'to_bgr8 ms':>11} {'one pass ms':>12} {'ratio':>6}")
    for size, (height, width) in SIZES.items():
        for depth, frame in frames(height, width).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (-1..1 is stretched, with a warning)
                ms = best_ms(lambda f=frame: to_bgr8(f, "frame"), args.repeats)
            floor = best_ms(lambda f=frame: cv2.convertScaleAbs(f, alpha=1.0), args.repeats)
            rows.append({"size": size, "depth": depth, "to_bgr8_ms": ms, "one_pass_ms": floor})
            print(f"{size:6} {depth:16} {ms:11.2f} {floor:12.2f} {ms / max(floor, 1e-9):6.1f}")
    if args.json:
        atomic_write_json(args.json, {"repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
