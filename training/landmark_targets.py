"""Where the annotated landmarks lie in UV: ``python -m training.landmark_targets``.

The DenseReg stage finds landmark k where the predicted UV equals a target UV (paper §4.3).
The template's own landmark UV (``template.npz``: the SFM's iBUG vertices) is not where the
300-W annotators put their points: the network is trained on UV maps of 3DMM fits, and reading
those maps at the annotated points of the training faces shows systematic offsets (the eye
corners ~0.007 UV, ~1.7% of the eye distance, away; the inner lips 0.02).  This reads the ground-truth
UV (``python -m training.groundtruth``) under every annotated point of the training split, the
point snapped to the nearest face pixel when it lies just outside the fit's mask (within 5% of
the eye distance), and takes the per-landmark median.

The jaw keeps the template's frontal contour UV: its observed UV moves with the pose (u_h
spreads 0.05-0.1 over the training faces), and the median made the DenseReg stage worse on val
(0.458 against 0.500) without helping the tracker (docs/RESULTS.md, landmark section).

Writes ``tracker/assets/landmark_targets.npz`` (``target_uv`` (68,2): what the tracker matches;
``observed_uv`` (68,2), ``samples`` (68,): the medians and how many faces gave each) and its card.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import cv2
import numpy as np

from tracker.assets import ASSETS, record
from tracker.fileio import atomic_save_npz, atomic_write_text
from tracker.metrics import REGIONS, eye_distance
from tracker.pts import pts_beside
from training import INSTALLED, REPO
from training.dataset import check_ground_truth, split_faces
from training.template import DEFAULT_300W

ASSET = ASSETS / "landmark_targets.npz"
JAW = slice(0, 17)
SNAP = 0.05  # of the eye distance: an annotation farther than this from the fit's mask is left out


def uv_under_points(uv: np.ndarray, mask: np.ndarray, points: np.ndarray, snap: float) -> np.ndarray:
    """(N,2) UV of the maps under each (N,2) pixel point, read at the nearest mask pixel when
    the point lies outside the mask by at most `snap` pixels; NaN rows otherwise.
    uv: (2,H,W); mask: (H,W) bool."""
    out = np.full((len(points), 2), np.nan)
    if not mask.any():
        return out
    h, w = mask.shape
    outside = np.where(mask, 0, 1).astype(np.uint8)
    # DIST_LABEL_PIXEL: every mask pixel is its own label, so the label of any pixel names its
    # nearest mask pixel
    dist, label = cv2.distanceTransformWithLabels(outside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(mask)
    where = np.zeros((label.max() + 1, 2), np.int64)
    where[label[ys, xs]] = np.stack([xs, ys], 1)
    finite = np.isfinite(points).all(1)
    xi, yi = np.clip(np.round(np.where(finite[:, None], points, 0)).astype(np.int64), 0, [w - 1, h - 1]).T
    near = finite & (dist[yi, xi] <= snap)
    x, y = where[label[yi[near], xi[near]]].T
    out[near] = uv[:, y, x].T
    return out


def observed_targets(gt: Path, data: Path = DEFAULT_300W, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Per-landmark median UV under the annotations of a split's faces, and how many faces gave
    each: ((68,2), (68,))."""
    rows = []
    for rel in split_faces(data, split):
        path = gt / Path(rel).with_suffix(".npz")
        if not path.exists():
            continue
        check_ground_truth(path, pts_beside(data / rel))  # (the targets are the UV under the .pts points)
        with np.load(path) as z:
            points = z["landmarks"][int(z["face_index"])].astype(np.float64)  # the stem's own face of the picture's
            rows.append(uv_under_points(z["uv"].astype(np.float32), z["mask"], points, SNAP * eye_distance(points)))
    if not rows:
        raise SystemExit(f"no ground truth for the {split} split under {gt} (run python -m training.groundtruth first)")
    samples = np.array(rows)
    return np.nanmedian(samples, axis=0), np.isfinite(samples[..., 0]).sum(axis=0)


def targets(template_uv: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """What the tracker matches: the observed UV, but the template's for the jaw."""
    out = observed.copy()
    out[JAW] = template_uv[JAW]
    return out


CARD = """# Landmark targets (`landmark_targets.npz`)

The UV each landmark is looked for at in the DenseReg maps (`tracker/landmarks.py`): the median of
the ground-truth UV under the annotated point over the {faces} faces of the 300-W training split
(`splits/train.txt`), the jaw excepted (it keeps `template.npz`'s frontal contour UV: its
observed UV moves with the head's yaw).  Built by `python -m training.landmark_targets` from the
ground truth of `python -m training.groundtruth` (deterministic).

| array | shape | what |
|---|---|---|
| target_uv | (68,2) | the UV the tracker matches |
| observed_uv | (68,2) | per-landmark median UV under the annotations (jaw included) |
| samples | (68,) | faces whose annotation lay on (or within {snap:.0%} of the eye distance of) the fit's mask |

Shift from the template's landmark UV, median over each region's points (UV units; the template's
eye distance is {iod:.3f}): {shifts}.

SHA-256: `{sha}`

**Licence.** Derived from 300-W annotations (research use only) and the Surrey Face Model
(non-commercial use only).
"""

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.landmark_targets", description=__doc__.split("\n")[0])
    ap.add_argument("--gt", type=Path, default=REPO / "data" / "gt")
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--out", type=Path, default=ASSET, required=INSTALLED, help="default: the package's own (in a checkout)")
    args = ap.parse_args(argv)
    observed, samples = observed_targets(args.gt, args.data)
    with np.load(ASSETS / "template.npz") as z:
        template_uv = z["landmark_uv"].astype(np.float64)
    target = targets(template_uv, observed)
    atomic_save_npz(args.out, target_uv=target.astype(np.float32), observed_uv=observed.astype(np.float32), samples=samples.astype(np.int32))
    sha = record(args.out) if args.out.parent == ASSETS else hashlib.sha256(args.out.read_bytes()).hexdigest()
    shift = np.linalg.norm(target - template_uv, axis=1)
    shifts = ", ".join(f"{name} {np.median(shift[list(idx)]):.4f}" for name, idx in REGIONS.items() if name != "jaw")  # jaw: unmoved
    faces = len(split_faces(args.data, "train"))
    atomic_write_text(args.out.parent / "LANDMARK_TARGETS_CARD.md",
                      CARD.format(faces=faces, snap=SNAP, iod=eye_distance(template_uv), shifts=shifts, sha=sha))
    print(f"wrote {args.out} (sha256 {sha[:12]}): {shifts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
