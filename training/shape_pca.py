"""Build the 68-point PCA shape model: ``python -m training.shape_pca``.

Generalised Procrustes analysis of the training annotations (``splits/train.txt``) and their
mirror images (so the model is left/right symmetric), then PCA keeping 98% of the variance.
Writes ``tracker/assets/shape_pca.npz`` and ``tracker/assets/SHAPE_PCA_CARD.md``.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from tracker.assets import record
from tracker.fileio import atomic_save_npz, atomic_write_text
from tracker.pts import pts_beside, read_pts
from tracker.shape_model import ASSET, normalise, similarity_align
from training import INSTALLED
from training.template import DEFAULT_300W, FLIP_PERMUTATION


def mirror(shape: np.ndarray) -> np.ndarray:
    m = shape[FLIP_PERMUTATION].copy()
    m[:, 0] = -m[:, 0]
    return m


def procrustes(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Align (N,68,2) shapes to their evolving mean; returns the aligned, normalised shapes."""
    aligned = np.stack([normalise(s) for s in shapes])
    mean = aligned[0]
    for _ in range(iterations):
        mean = normalise(aligned.mean(axis=0))
        aligned = np.stack([normalise(_apply(similarity_align(s, mean), s)) for s in aligned])
    return aligned


def _apply(transform, pts):
    scale, R, t = transform
    return scale * pts @ R.T + t


def build(shapes: np.ndarray, keep_variance: float = 0.98) -> dict[str, np.ndarray]:
    data = procrustes(np.concatenate([shapes, np.stack([mirror(s) for s in shapes])]))
    mean = data.mean(axis=0)
    X = (data - mean).reshape(len(data), -1)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    var = s**2 / (len(data) - 1)
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), keep_variance) + 1)
    return {"mean": mean, "components": vt[:k].reshape(k, 68, 2), "eigenvalues": var[:k]}


CARD = """# PCA shape model (`shape_pca.npz`)

68-point iBUG shape model used to complete and clean the DenseReg landmarks (`tracker/shape_model.py`).

- Data: the {n} annotated faces of the 300-W training split (`splits/train.txt`: AFW, Helen
  train, LFPW train) and their mirror images; the validation split is not used.
- Recipe: generalised Procrustes analysis (similarity), normalised to centroid 0 / RMS radius 1;
  PCA keeping {keep:.0%} of the variance: {k} components.
- Command: `python -m training.shape_pca` (deterministic).
- SHA-256: `{sha}`
- Licence: derived from the 300-W annotations (research use only).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--out", type=Path, default=ASSET, required=INSTALLED, help="default: the package's own (in a checkout)")
    args = ap.parse_args(argv)
    train = (args.data / "splits" / "train.txt").read_text().split()
    shapes = np.stack([read_pts(pts_beside(args.data / rel), expected=68) for rel in train])
    model = build(shapes)
    atomic_save_npz(args.out, **{k: v.astype(np.float32) for k, v in model.items()})
    sha = record(args.out) if args.out.parent == ASSET.parent else hashlib.sha256(args.out.read_bytes()).hexdigest()
    k = len(model["eigenvalues"])
    atomic_write_text(args.out.parent / "SHAPE_PCA_CARD.md", CARD.format(n=len(shapes), keep=0.98, k=k, sha=sha))
    print(f"wrote {args.out}: {k} components from {len(shapes)} shapes (+ mirrors), sha256 {sha[:12]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
