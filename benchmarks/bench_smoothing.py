"""Jitter against lag of the One Euro landmark filter, over its two parameters.

    run_tracker batch300vw data/synth_val30 --out out/synth_nosmooth --no-smooth
    python -m benchmarks.bench_smoothing --pred out/synth_nosmooth --root data/synth_val30 [--json F]

Replays the unsmoothed per-frame landmarks of a batch300vw run through the filter offline and
prints, per (min_cutoff, beta), the AUC@0.08 and median NME over all annotated frames (lag on
moving faces costs accuracy) and the jitter on the still frames of synthetic clips (mean
frame-to-frame motion in % of the eye distance), beside the unfiltered reference.  Offline
replay ignores one effect of the live filter (the next crop follows the smoothed points); the
chosen setting is then checked live with batch300vw with and without --no-smooth.  Targets: jitter
<= 0.5% with no AUC loss against the unfiltered run.
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from tracker.batch import find_300vw_videos
from tracker.fileio import atomic_write_json
from tracker.metrics import auc, eye_distance, nme
from tracker.pts import read_pts
from tracker.smoothing import OneEuro
from tracker.video import FALLBACK_FPS, open_video

MIN_CUTOFFS = (0.5, 1.0, 2.0, 4.0)
BETAS = (0.05, 0.2, 0.5, 1.0, 2.0)


def load_tracks(pred: Path, root: Path) -> list[tuple[list, int, float]]:
    """Per video: [(predicted (68,2) or None, truth (68,2) or None) per frame], still frames, fps."""
    videos = []
    for name, video in find_300vw_videos(root):
        annot = sorted((root / name / "annot").glob("*.pts"))
        if not (pred / name).is_dir() or not annot:
            continue
        meta = root / name / "synth.json"
        still = int(json.loads(meta.read_text())["static_frames"]) if meta.exists() else 0
        frames = []
        for i in range(1, int(annot[-1].stem) + 1):
            p, g = pred / name / f"{i:06d}.pts", root / name / "annot" / f"{i:06d}.pts"
            frames.append((read_pts(p) if p.exists() else None, read_pts(g) if g.exists() else None))
        cap, info = open_video(video)
        cap.release()
        videos.append((frames, still, info.fps or FALLBACK_FPS))  # (0: the clip gives no rate)
    return videos


def replay(videos, min_cutoff: float | None, beta: float = 0.0, face_deadband: float | None = 0.01) -> dict[str, float]:
    """Metrics of the tracks filtered with these parameters (None: unfiltered)."""
    errors, jitter = [], []
    for frames, still, fps in videos:
        make = (lambda: OneEuro(min_cutoff, beta, face_deadband=face_deadband)) if min_cutoff is not None else (lambda: None)
        filt, prev = make(), None
        for i, (points, truth) in enumerate(frames):
            if points is None:  # the tracker lost the face: a new track starts afterwards
                filt, prev = make(), None
                if truth is not None:
                    errors.append(np.inf)
                continue
            out = filt(points, i / fps, max(eye_distance(points), 1.0)) if filt else points
            if truth is not None:
                errors.append(nme(out, truth))
                if i < still and prev is not None:
                    jitter.append(np.linalg.norm(out - prev, axis=1).mean() / eye_distance(truth))
            prev = out
    e = np.array(errors)
    return {"auc08": auc(e), "nme_median": float(np.median(e)), "jitter_pct": 100 * float(np.mean(jitter)) if jitter else float("nan")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pred", type=Path, required=True, help="output of batch300vw --no-smooth")
    ap.add_argument("--root", type=Path, required=True, help="the 300VW-style folder it tracked")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    videos = load_tracks(args.pred, args.root)
    if not videos:
        raise SystemExit(f"error: no tracked videos of {args.root} under {args.pred}")
    rows = {"unfiltered": replay(videos, None)}
    rows.update({f"{m:g}/{b:g}": replay(videos, m, b) for m, b in itertools.product(MIN_CUTOFFS, BETAS)})
    # the shipped setting with One Euro's speed alone (before session 21: no term for the face's own move)
    rows.update({f"{m:g}/{b:g} no face": replay(videos, m, b, None) for m, b in ((0.5, 1.0),)})
    print(f"{len(videos)} videos, {sum(len(f) for f, _ in videos)} frames")
    print(f"{'min_cutoff/beta':<18} {'AUC@.08':>8} {'median':>7} {'jitter %':>8}")
    for name, r in rows.items():
        print(f"{name:<18} {r['auc08']:>8.4f} {r['nme_median']:>7.4f} {r['jitter_pct']:>8.3f}")
    if args.json:
        atomic_write_json(args.json, {"pred": str(args.pred), "root": str(args.root), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
