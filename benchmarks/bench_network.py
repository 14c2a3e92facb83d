"""Time the DenseReg network per face crop in ONNX Runtime beside dlib's 68-point predictor.

    python -m benchmarks.bench_network [--onnx tracker/assets/densereg_realtime.onnx] [--image IMG]
                                       [--runs 300] [--threads 2] [--json runs/bench_network.json]

Both run on the same face of the same image, interleaved in one loop, so that the noise of a
shared machine hits them alike (compare the two columns, not absolute numbers across runs).
Without a trained ONNX file the realtime network is exported with random weights first (needs
torch): its speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engines.onnx_engine import OnnxEngine
from tracker.crop import to_network_input, warp_image
from tracker.detector import detect_faces, dlib_landmarks
from tracker.fileio import atomic_write_json, read_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = REPO / "tracker" / "assets" / "densereg_realtime.onnx"
DEFAULT_IMAGE = REPO / "tracker" / "assets" / "demo" / "astronaut.jpg"


def random_weights_onnx(folder: Path) -> Path:
    import torch

    from training.deploy import build_deployable, export

    torch.manual_seed(0)
    options = {"config": "realtime", "variant": "quantized"}
    module, _, _ = build_deployable("densereg", options)
    path = folder / "densereg_random.onnx"
    export("densereg", options, module.net.state_dict(), path)
    return path


def summarise(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)), "p90_ms": float(np.percentile(a, 90)), "runs": len(a)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_network", description=__doc__.split("\n")[0])
    ap.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "runs" / "bench_network.json")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)

    image = read_image(args.image)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = detect_faces(gray)
    if not faces:
        raise SystemExit(f"{args.image}: no face found by the HOG detector")
    det = faces[0]
    roi = det.roi()

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx if args.onnx.exists() else random_weights_onnx(Path(tmp))
        engine = OnnxEngine(onnx_path, threads=args.threads)
        size = engine.session.get_inputs()[0].shape[-1]
        pair = to_network_input(np.stack([warp_image(image, roi, size)] * 2))
        for _ in range(20):  # warm-up: allocations, thread pools, caches
            engine.infer({"image": pair[:1]})
            dlib_landmarks(gray, det)
        times: dict[str, list[float]] = {"crop+preprocess": [], "onnx batch 1": [], "onnx batch 2 (per crop)": [], "dlib 68-point": []}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            x = to_network_input(warp_image(image, roi, size))
            t1 = time.perf_counter()
            engine.infer({"image": x})
            t2 = time.perf_counter()
            engine.infer({"image": pair})
            t3 = time.perf_counter()
            dlib_landmarks(gray, det)
            t4 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, (t3 - t2) / 2, t4 - t3)):
                times[key].append(dt * 1e3)

    rows = {k: summarise(v) for k, v in times.items()}
    print(f"{'stage':<26}{'median ms':>10}{'p10':>8}{'p90':>8}   ({args.runs} runs, {args.threads} threads, {size}x{size} crop)")
    for k, r in rows.items():
        print(f"{k:<26}{r['median_ms']:>10.2f}{r['p10_ms']:>8.2f}{r['p90_ms']:>8.2f}")
    report = {
        "onnx": str(onnx_path if args.onnx.exists() else "realtime network, random weights"),
        "image": str(args.image), "crop_size": size, "threads": args.threads, "device": engine.device,
        "cpu": platform.processor() or platform.machine(), "onnxruntime": __import__("onnxruntime").__version__,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": rows,
    }
    atomic_write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
