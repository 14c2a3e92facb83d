"""Stills of turned heads: the 300-W val faces turned in the picture's plane, one pass against settling.

    python -m benchmarks.bench_roll [--data ../shared/data/300w] [--angles 0 20 40 60] [--json docs/results/roll_s25.json]

Each val picture is turned about its face's centre by each angle (counter-clockwise, the canvas
grown to hold the whole picture: ``benchmarks.robustness.turned``) and its annotated points with it.  Two configurations run in the same process:
``box_passes=0`` (each face run once, from the detector's upright box: the reference, stills
before session 25; since session 27 a face only the CNN found is also tried turned,
``Tracker._orient``) and the default (``Tracker._settle`` re-runs a face from the crop its
landmarks give, turned with the face, until they agree).  The face scored is the one whose
landmarks' centre is nearest the annotated centre (a miss counts as an error of 1).  Prints
AUC@0.08, median NME, failure rate, faces found and the median time a picture per angle.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.bench_boxes import val_options, val_pictures
from benchmarks.robustness import turned
from tracker.fileio import atomic_write_json, read_image
from tracker.metrics import auc, nme
from tracker.pipeline import Tracker, TrackerConfig
from tracker.pts import pts_beside, read_pts

ANGLES = (0.0, 20.0, 40.0, 60.0)


def measure(config: TrackerConfig, pictures: list[Path], angles: list[float]) -> dict:
    tracker = Tracker(config)
    out = {}
    for degrees in angles:
        errors, found, ms = [], 0, []
        for path in pictures:
            image, truth = turned(read_image(path), read_pts(pts_beside(path), expected=68), degrees)
            t = time.perf_counter()
            faces = tracker.track(image).faces
            ms.append(1e3 * (time.perf_counter() - t))
            centre = truth.mean(axis=0)
            face = min(faces, key=lambda f: np.linalg.norm(np.nanmean(f.landmarks, axis=0) - centre), default=None)
            found += face is not None
            errors.append(nme(face.landmarks, truth) if face is not None else 1.0)
        e = np.array(errors)
        out[f"{degrees:g}"] = {"auc08": auc(e), "median_nme": float(np.median(e)), "failure_rate": float(np.mean(e > 0.08)),
                               "found": found, "median_ms": float(np.median(ms))}
    tracker.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_roll", description=__doc__.split("\n\n")[0])
    val_options(ap)
    ap.add_argument("--angles", type=float, nargs="+", default=list(ANGLES), help="degrees (default: %(default)s)")
    args = ap.parse_args(argv)
    pictures = val_pictures(args)
    base = TrackerConfig(mode="image", threads=1)
    runs = {"one pass (box_passes=0)": measure(replace(base, box_passes=0), pictures, args.angles),
            f"settled (box_passes={base.box_passes})": measure(base, pictures, args.angles)}
    print(f"{len(pictures)} val pictures; AUC@0.08 / median NME / failure rate / faces found / median ms a picture, by angle")
    print("| angle | " + " | ".join(runs) + " |")
    print("|---|" + "---|" * len(runs))
    for angle in next(iter(runs.values())):
        cells = [f"{r[angle]['auc08']:.4f} / {100 * r[angle]['median_nme']:.2f}% / {100 * r[angle]['failure_rate']:.1f}% / "
                 f"{r[angle]['found']} / {r[angle]['median_ms']:.0f} ms" for r in runs.values()]
        print(f"| {angle}° | " + " | ".join(cells) + " |")
    if args.json:
        atomic_write_json(args.json, {"command": "python -m benchmarks.bench_roll", "faces": len(pictures), "angles": args.angles,
                                      "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
