"""The tracker against dlib on the val faces under picture transformations, as a user runs both.

    python -m benchmarks.robustness [--data ../shared/data/300w] [--work out/robustness] \
        [--only rot30 jpeg10 ...] [--assets DIR --pred DIR] [--json docs/results/robustness.json]

Each condition is a copy of the 80 val pictures (``splits/val.txt``) transformed, with their
annotations transformed alike (0-based pixel centres): turned in the picture's plane about the
face (15, 30, 45 degrees; the canvas grown to keep every pixel), shrunk until the annotated face
is 60 or 30 px wide, mirrored (points re-indexed by the template's iBUG mirror map), saved as
JPEG at quality 10, blurred (sigma = face width / 40), grey, dark (x0.2), bright (x2.8 + 30), and
a grey box over the mouth or over the subject's right eye.  Every condition then goes through
the two commands a user runs, ``run_tracker images --baseline dlib`` and ``run_tracker eval``,
in a separate process each; ``orig`` (the pictures re-saved as PNG) is the reference they are
compared with, in the same run.  ``dlib`` is dlib's 68-point model on dlib's HOG detections
(``--baseline dlib``); the tracker adds its CNN fallback, so where HOG misses faces part of the
gap is detection.

``--assets`` runs the tracker with the models of another folder (``images --assets``: e.g. a
retrained refiner exported there), its predictions in ``--pred`` so the packaged models' are kept.

Prints AUC@0.08 / median NME / FR@0.08 per condition for the tracker's final stage and dlib, and
saves them with ``--json``.  Needs ``../shared/data`` and the ``[cnn]`` extra (dlib's model).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tracker.assets import ASSETS
from tracker.fileio import atomic_write_json, atomic_write_text, read_list
from tracker.pts import pts_beside, read_pts, write_pts
from training.template import DEFAULT_300W

REPO = Path(__file__).resolve().parents[1]
Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def face_width(pts: np.ndarray) -> float:
    return float(np.ptp(pts[:, 0]))


def turned(img: np.ndarray, pts: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Turned counter-clockwise about the face's centre, on a canvas holding the whole picture."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(tuple(map(float, pts.mean(0))), degrees, 1.0)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float) @ m[:, :2].T + m[:, 2]
    m[:, 2] -= corners.min(0)
    size = np.ceil(np.ptp(corners, axis=0)).astype(int) + 1
    return cv2.warpAffine(img, m, (int(size[0]), int(size[1]))), pts @ m[:, :2].T + m[:, 2]


def scaled(img: np.ndarray, pts: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    out = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return out, (pts + 0.5) * [size[0] / w, size[1] / h] - 0.5  # pixel centres


def mirrored(img: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.load(ASSETS / "template.npz") as z:
        mirror = z["flip_permutation"]
    return img[:, ::-1].copy(), np.stack([img.shape[1] - 1 - pts[:, 0], pts[:, 1]], 1)[mirror]


def covered(img: np.ndarray, pts: np.ndarray, points: slice, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """A grey box over the given points, `margin` face widths beyond them."""
    out = img.copy()
    pad = margin * face_width(pts)
    (x0, y0), (x1, y1) = (pts[points].min(0) - pad).astype(int), (pts[points].max(0) + pad).astype(int)
    cv2.rectangle(out, (max(x0, 0), max(y0, 0)), (int(x1), int(y1)), (128, 128, 128), -1)
    return out, pts


def graded(img: np.ndarray, pts: np.ndarray, gain: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    return np.clip(img.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8), pts


CONDITIONS: dict[str, Transform] = {
    "orig": lambda i, p: (i, p),
    "rot15": lambda i, p: turned(i, p, 15),
    "rot30": lambda i, p: turned(i, p, 30),
    "rot45": lambda i, p: turned(i, p, 45),
    "face60": lambda i, p: scaled(i, p, 60 / face_width(p)),
    "face30": lambda i, p: scaled(i, p, 30 / face_width(p)),
    "flip": mirrored,
    "jpeg10": lambda i, p: (i, p),  # the quality is the writer's (SUFFIX)
    "blur": lambda i, p: (cv2.GaussianBlur(i, (0, 0), max(1.0, face_width(p) / 40)), p),
    "gray": lambda i, p: (cv2.cvtColor(i, cv2.COLOR_BGR2GRAY), p),
    "dark": lambda i, p: graded(i, p, 0.2, 0),
    "bright": lambda i, p: graded(i, p, 2.8, 30),
    "occ_mouth": lambda i, p: covered(i, p, slice(48, 68), 0.05),
    "occ_eye": lambda i, p: covered(i, p, slice(36, 42), 0.06),  # the subject's right eye
}
SUFFIX = {"jpeg10": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 10])}


def make_condition(name: str, data: Path, stems: list[str], folder: Path) -> Path:
    """The condition's pictures and annotations in `folder` (made once); its list file."""
    listing = folder / "list.txt"
    if listing.exists():
        return listing
    folder.mkdir(parents=True, exist_ok=True)
    suffix, params = SUFFIX.get(name, (".png", []))
    names = []
    for rel in stems:
        img = cv2.imread(str(data / rel))
        out, pts = CONDITIONS[name](img, read_pts(pts_beside(data / rel)))
        stem = Path(rel).with_suffix("").as_posix().replace("/", "__")
        if not cv2.imwrite(str(folder / f"{stem}{suffix}"), out, params):
            raise OSError(f"{folder / stem}{suffix}: cannot write")
        write_pts(folder / f"{stem}.pts", pts)
        names.append(f"{stem}{suffix}")
    atomic_write_text(listing, "\n".join(names) + "\n")  # last: the condition is complete
    return listing


def score_condition(folder: Path, listing: Path, out: Path, assets: Path | None = None) -> dict:
    """``images --baseline dlib`` then ``eval``, as a user runs them; eval's rows by method."""
    run = [sys.executable, str(REPO / "run_tracker.py")]
    models = [] if assets is None else ["--assets", str(assets)]
    subprocess.run([*run, "images", "--input", str(folder), "--list", str(listing), "--out", str(out), "--baseline", "dlib", "--overwrite",
                    *models], check=True, capture_output=True, text=True)
    scores = out.with_suffix(".json")
    done = subprocess.run([*run, "eval", "--pred", str(out), "--gt", str(folder), "--list", str(listing), "--json", str(scores)],
                          capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: a prediction was unreadable, still scored as missing
        raise RuntimeError(done.stderr.strip())
    return json.loads(scores.read_text())["methods"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--work", type=Path, default=REPO / "out" / "robustness", help="transformed pictures and predictions")
    ap.add_argument("--only", nargs="+", choices=list(CONDITIONS), help="these conditions (orig is always run)")
    ap.add_argument("--assets", type=Path, help="the tracker's models from this folder (images --assets)")
    ap.add_argument("--pred", type=Path, help="predictions and scores (default WORK/pred)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    pred = args.pred or args.work / "pred"
    stems = read_list(args.data / "splits" / "val.txt")
    names = ["orig"] + [n for n in (args.only or CONDITIONS) if n != "orig"]
    rows = {}
    def pct(v: float | None) -> str:  # a median that is a failure (more than half missed) is null in eval's JSON
        return "     —" if v is None else f"{100 * v:5.2f}%"

    print(f"{'condition':10s} {'tracker AUC':>11s} {'median':>7s} {'FR':>6s}   {'dlib AUC':>8s} {'median':>7s} {'FR':>6s}   tracker - dlib AUC")
    for name in names:
        folder = args.work / "data" / name
        methods = score_condition(folder, make_condition(name, args.data, stems, folder), pred / name, args.assets)
        rows[name] = {m: {k: methods[m][k] for k in ("auc08", "nme_median", "fr08", "missing")} for m in ("mdm", "dlib")}
        t, d = rows[name]["mdm"], rows[name]["dlib"]
        print(f"{name:10s} {t['auc08']:11.3f} {pct(t['nme_median']):>7s} {100 * t['fr08']:5.1f}%   {d['auc08']:8.3f} "
              f"{pct(d['nme_median']):>7s} {100 * d['fr08']:5.1f}%   {t['auc08'] - d['auc08']:+.3f}", flush=True)
    if args.json:
        command = "python -m benchmarks.robustness" + ("" if args.assets is None else f" --assets {args.assets}")
        atomic_write_json(args.json, {"faces": len(stems), "reference": "orig", "command": command, "conditions": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
