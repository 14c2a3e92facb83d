"""Why `--engine torch` is slow on the CPU, and which PyTorch settings help: the DenseReg network
on one face crop in ONNX Runtime (the reference) and in PyTorch with oneDNN (mkldnn) on and off,
at 1 and 2 threads, under OpenMP's default wait policy and under OMP_WAIT_POLICY=PASSIVE.

    python -m benchmarks.bench_torch [--runs 40] [--rounds 2] [--json runs/bench_torch.json]

OpenMP reads its wait policy once, when torch is imported, so each policy runs in its own child
process; the children alternate for --rounds rounds, and inside a child every configuration
runs once per iteration in turn, so that the noise of a shared machine hits them alike.  Needs
torch (the `train` extra).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tracker.fileio import atomic_write_json

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("default", "passive")


def child(policy: str, runs: int) -> dict[str, list[float]]:
    """Times (ms) per configuration, in this process, under one OpenMP wait policy."""
    if policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        os.environ.pop("OMP_WAIT_POLICY", None)
    import cv2
    import torch  # first import: OpenMP takes its wait policy now

    from engines import load_engine
    from tracker.assets import DEMO_IMAGE, verified_asset
    from tracker.crop import to_network_input, warp_image
    from tracker.detector import detect_faces
    from tracker.fileio import read_image

    image = read_image(DEMO_IMAGE)
    d = detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))[0]
    x = {"image": to_network_input(warp_image(image, d.roi(), 128))}
    onnx_path = verified_asset("densereg_realtime.onnx")
    onnx = {t: load_engine(onnx_path, "onnx", t) for t in (1, 2)}
    pt = load_engine(onnx_path, "torch", 2)

    def run(config: tuple[str, int, bool]) -> None:
        kind, threads, mkldnn = config
        if kind == "onnx":
            onnx[threads].infer(x)
            return
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn
        pt.infer(x)

    configs = [("onnx", t, False) for t in (1, 2)] + [("torch", t, m) for t in (1, 2) for m in (True, False)]
    for c in configs:  # warm-up
        for _ in range(3):
            run(c)
    times = {c: [] for c in configs}
    for _ in range(runs):
        for c in configs:
            t0 = time.perf_counter()
            run(c)
            times[c].append(1000 * (time.perf_counter() - t0))
    return {f"{k} {t} thread{'s' * (t > 1)}" + (f", mkldnn {'on' if m else 'off'}" if k == "torch" else ""): v for (k, t, m), v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_torch", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="iterations per child process")
    ap.add_argument("--rounds", type=int, default=2, help="child processes per wait policy (alternating)")
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_torch.json")
    ap.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.runs)))
        return 0

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    times: dict[str, dict[str, list[float]]] = {p: {} for p in POLICIES}
    for _ in range(args.rounds):
        for policy in POLICIES:
            out = subprocess.run([sys.executable, "-m", "benchmarks.bench_torch", "--child", policy, "--runs", str(args.runs)],
                                 cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
            for name, ms in json.loads(out.splitlines()[-1]).items():
                times[policy].setdefault(name, []).extend(ms)
    rows = {}
    print(f"{'configuration':<34}" + "".join(f"{p + ' median':>16}{'p90':>8}" for p in POLICIES) + "   (ms per 128x128 crop)")
    for name in times[POLICIES[0]]:
        stats = {p: {"median_ms": float(np.median(times[p][name])), "p90_ms": float(np.percentile(times[p][name], 90))} for p in POLICIES}
        rows[name] = stats
        print(f"{name:<34}" + "".join(f"{stats[p]['median_ms']:>16.1f}{stats[p]['p90_ms']:>8.1f}" for p in POLICIES))
    report = {"runs_per_config": args.runs * args.rounds, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "torch": __import__("importlib.metadata").metadata.version("torch"),
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "policies": {"default": "libgomp default (spin, then sleep)",
                                                                        "passive": "OMP_WAIT_POLICY=PASSIVE"}, "configs": rows}
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
