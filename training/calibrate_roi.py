"""Calibrate ``tracker.crop.roi_from_box`` against ``roi_from_landmarks`` on the train split.

``python -m training.calibrate_roi [--detector hog|cnn] [--limit N]`` runs a detector on
training images, matches each annotated face to its detection, and prints the box-relative
scale and shift that make a detector crop equal, in the median, to the landmark crop used in
training.  The printed pair is that detector's entry of ``BOX_CALIBRATION`` in
``tracker/crop.py``.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from tracker.crop import roi_from_landmarks
from tracker.detector import detect_faces, detect_faces_cnn
from tracker.fileio import read_image
from tracker.pts import pts_beside, read_pts
from training.template import DEFAULT_300W


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    args = ap.parse_args(argv)
    rels = (DEFAULT_300W / "splits" / "train.txt").read_text().split()[:: max(1, 1932 // args.limit)]
    shifts, scales = [], []
    for rel in rels:
        image = read_image(DEFAULT_300W / rel)
        pts = read_pts(pts_beside(DEFAULT_300W / rel))
        roi = roi_from_landmarks(pts)
        dets = detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) if args.detector == "hog" else detect_faces_cnn(image)
        for d in dets:
            cx, cy = (d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2
            if abs(cx - roi.cx) < d.width / 2 and d.y0 < pts[:, 1].mean() < d.y1:
                shifts.append((cy - roi.cy) / d.width)
                scales.append(roi.size / d.width)
                break
    print(f"{len(shifts)} of {len(rels)} faces detected")
    print(f'BOX_CALIBRATION["{args.detector}"] = ({np.median(scales):.3f}, {np.median(shifts):.3f})  # (scale, shift up)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
