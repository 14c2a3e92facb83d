"""Time DenseReg backbone widths and depths in ONNX Runtime, to size a configuration.

    python -m benchmarks.bench_widths [--widths 1,1.25,1.5,1.75,2] [--decoder-blocks 2] [--runs 200]
                                      [--threads 2] [--json docs/results/bench_widths.json]

Each candidate, a width of the compact backbone (``training.model.RealtimeNet``, 128 px crop,
decoding in the graph as shipped) times a number of blocks at stride 4 (``NetConfig.decoder_blocks``),
is exported with random weights (speed does not depend on them) and timed at batch 1.  The
candidates run interleaved in one loop, so that the noise of a shared machine hits them alike:
compare the ratios to the first (width 1 with 2 blocks: the shipped ``realtime``), not absolute
numbers across runs.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engines.onnx_engine import OnnxEngine
from tracker.fileio import atomic_write_json
from training.deploy import export
from training.model import CONFIGS, DenseReg

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_widths", description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="1,1.25,1.5,1.75,2")
    ap.add_argument("--decoder-blocks", default="2", help="comma-separated block counts at stride 4 (2: shipped)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_widths.json")
    args = ap.parse_args(argv)
    candidates = [(float(w), int(b)) for w in args.widths.split(",") for b in args.decoder_blocks.split(",")]
    torch.manual_seed(0)
    engines, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for w, b in candidates:
            # Registered for this process only, so that the deployable (decoding included) is
            # built and exported by the same code as the shipped network.
            name = f"w{w}-d{b}"
            CONFIGS[name] = replace(CONFIGS["realtime"], width=w, decoder_blocks=b)
            net = DenseReg(CONFIGS[name])
            params[w, b] = sum(p.numel() for p in net.parameters())
            path = Path(tmp) / f"{name}.onnx"
            export("densereg", {"config": name, "variant": "quantized"}, net.state_dict(), path)
            engines[w, b] = OnnxEngine(path, threads=args.threads)
        x = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)
        for e in engines.values():
            for _ in range(20):  # warm-up: allocations, thread pools
                e.infer({"image": x})
        times: dict[tuple[float, int], list[float]] = {c: [] for c in candidates}
        for _ in range(args.runs):
            for c, e in engines.items():
                t0 = time.perf_counter()
                e.infer({"image": x})
                times[c].append((time.perf_counter() - t0) * 1e3)
    base = float(np.median(times[candidates[0]]))
    rows = []
    print(f"{'width':>6}{'blocks':>7}{'weights':>11}{'median ms':>11}{'p10':>8}{'p90':>8}{'x first':>9}"
          f"   ({args.runs} runs, {args.threads} threads, 128x128, batch 1)")
    for w, b in candidates:
        a = np.asarray(times[w, b])
        row = {"width": w, "decoder_blocks": b, "weights": params[w, b], "median_ms": float(np.median(a)),
               "p10_ms": float(np.percentile(a, 10)), "p90_ms": float(np.percentile(a, 90)), "ratio": float(np.median(a)) / base}
        rows.append(row)
        print(f"{w:>6g}{b:>7}{row['weights']:>11,}{row['median_ms']:>11.2f}{row['p10_ms']:>8.2f}{row['p90_ms']:>8.2f}{row['ratio']:>9.2f}")
    report = {"threads": args.threads, "runs": args.runs, "cpu": platform.processor() or platform.machine(),
              "onnxruntime": __import__("onnxruntime").__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
