"""Score tracker configurations on the 300-W val split, side by side in one run:

    python -m benchmarks.val_configs --config '{}' --config '{"refiners": ["mdm_refiner.onnx"]}' \
        --config '{"assets": "/tmp/other_assets"}' --json out/val_configs.json

Each ``--config`` is a JSON object of ``TrackerConfig`` fields (image mode, 1 thread); the
table gives each stage's AUC@0.08 (points a stage reports missing are left out of its NME, as
``run_tracker eval`` does) and the final landmarks' AUC, median NME and failure rate, scoring
the predicted face nearest the annotation.  The ablations of docs/RESULTS.md's landmark section
were measured this way (models exported beside copies of the shipped assets with
``training.export --out-dir``).  ``--from-truth`` also runs each refiner stage alone from the
annotated landmarks themselves: the error it adds to a perfect start is its precision floor.
``--regions`` adds where the error is: each stage's median NME over the faces, per face region
(jaw, brows, nose, eyes, mouth; a stage's missing points left out).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tracker.fileio import atomic_write_json, read_image
from tracker.metrics import REGIONS, auc, eye_distance, nme
from tracker.pts import pts_beside, read_pts
from tracker.sources import ImageSource, track_stream
from training.template import DEFAULT_300W


def region_errors(points: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Mean point error per region over the eye distance, the region's missing points left out
    (NaN where all are)."""
    e = np.linalg.norm(points - gt, axis=1) / eye_distance(gt)
    return {name: float(np.nanmean(e[list(idx)])) if np.isfinite(e[list(idx)]).any() else np.nan for name, idx in REGIONS.items()}


def score(config: dict, root: Path) -> dict:
    from tracker import Tracker, TrackerConfig

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    if "assets" in fields:
        fields["assets"] = Path(fields["assets"])
    tracker = Tracker(TrackerConfig(mode="image", threads=1, **fields))
    final, stages = [], {"densereg": [], "pca": []}
    regions: dict[str, list[dict[str, float]]] = {"densereg": [], "pca": [], "final": []}
    pictures = [root / rel for rel in (root / "splits" / "val.txt").read_text().split()]
    for tracked in track_stream(tracker, ImageSource(pictures, "300-W val")):
        gt = read_pts(pts_beside(tracked.path), expected=68)
        faces = tracked.result.faces
        if not faces:
            final.append(np.inf)
            for v in stages.values():
                v.append(np.inf)
            continue
        face = min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(0) - gt.mean(0)))
        final.append(nme(face.landmarks, gt))
        regions["final"].append(region_errors(face.landmarks, gt))
        for name, errors in stages.items():
            pts = face.stages[name].points
            seen = ~np.isnan(pts).any(1)
            errors.append(np.linalg.norm(pts[seen] - gt[seen], axis=1).mean() / eye_distance(gt))
            regions[name].append(region_errors(pts, gt))
    e = np.array(final)
    return {"config": config, "auc08": auc(e), "median_nme": float(np.median(e)), "fr08": float(np.mean(e > 0.08)),
            **{f"auc08_{k}": auc(np.array(v)) for k, v in stages.items()},
            "region_median_nme": {stage: {name: float(np.nanmedian([r[name] for r in rows])) if rows else np.nan for name in REGIONS}
                                  for stage, rows in regions.items()}}


def refiner_floor(root: Path) -> dict[str, float]:
    """Median NME of each shipped refiner stage run once from the annotated landmarks."""
    import cv2

    from tracker import Tracker, TrackerConfig
    from tracker.refiner import refine

    tracker = Tracker(TrackerConfig(mode="image", threads=1))
    errors: dict[str, list[float]] = {name: [] for name in tracker.config.refiners}
    for rel in (root / "splits" / "val.txt").read_text().split():
        gt = read_pts(pts_beside(root / rel), expected=68)
        gray = cv2.cvtColor(read_image(root / rel), cv2.COLOR_BGR2GRAY)
        for name, stage in zip(tracker.config.refiners, tracker.refiners):
            errors[name].append(nme(refine(stage.infer, gray, gt, stage.reference, stage.frame.crop)[0].points, gt))
    return {name: float(np.median(e)) for name, e in errors.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.val_configs", description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", default=[], help="a JSON object of TrackerConfig fields (repeatable; default: {})")
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--from-truth", action="store_true", help="also: each refiner stage alone from the annotated landmarks")
    ap.add_argument("--regions", action="store_true", help="also print each stage's median NME per face region")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = [score(json.loads(c), args.data) for c in (args.config or ["{}"])]
    print(f"{'config':60s} {'DenseReg':>9s} {'+PCA':>7s} {'final':>7s} {'median':>7s} {'FR':>6s}")
    for r in rows:
        print(f"{json.dumps(r['config'])[:60]:60s} {r['auc08_densereg']:9.4f} {r['auc08_pca']:7.4f} {r['auc08']:7.4f} "
              f"{100 * r['median_nme']:6.2f}% {100 * r['fr08']:5.1f}%")
    if args.regions:
        print(f"\nmedian NME per region (%): {'config':40s} {'stage':9s} " + " ".join(f"{n:>6s}" for n in REGIONS))
        for r in rows:
            for stage, by_region in r["region_median_nme"].items():
                print(f"{'':27s}{json.dumps(r['config'])[:40]:40s} {stage:9s} " + " ".join(f"{100 * v:6.2f}" for v in by_region.values()))
    result = {"configs": rows}
    if args.from_truth:
        result["refiner_from_truth_median_nme"] = floor = refiner_floor(args.data)
        for name, e in floor.items():
            print(f"{name} from the annotated landmarks: median NME {100 * e:.2f}%")
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
