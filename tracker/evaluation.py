"""Scoring what the tracker wrote against ground truth on disk: a folder of pictures (``eval``)
and the videos of a 300VW-style batch (``batch300vw``).  The numbers themselves (NME, CED, AUC,
failure rate) are ``tracker.metrics``'; this module finds the files, picks the face and the
stage to score, and formats the table.

Predictions are ``<stem>.json`` (every stage of every face, as ``images`` writes them) or
``<stem>.pts``; ground truth is ``<stem>.pts``.  A face without a prediction is a failure.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tracker.errors import MissingInputError, NotAFolderError
from tracker.fileio import read_list
from tracker.metrics import auc, ced, eye_distance, failure_rate, score_faces
from tracker.pts import PtsError, read_pts
from tracker.stages import Stage, last_stage

FINAL = "final"  # score a face's last stage (a file's only method for a baseline's)


def _final_name(stages: dict) -> str:
    """The final stage of a face read from JSON: the last tracker ``Stage`` present, else the
    file's only method (a baseline's, e.g. 'dlib')."""
    return last_stage(stages) if any(s in stages for s in Stage) else list(stages)[-1]


def load_prediction(pred_dir: Path, stem: str, stage: str, truth: np.ndarray | None = None) -> np.ndarray | None:
    """(68,2) predicted points, or None when there is none (or the prediction file is
    unreadable, which is reported).  With several faces in the picture, the face scored is the
    one nearest the ground truth (its centroid), as usual on 300-W: a correct detection of
    another person in the photo is not an error of the landmark stage."""
    js, pts = pred_dir / f"{stem}.json", pred_dir / f"{stem}.pts"
    try:
        if js.exists():
            candidates = []
            for face in json.loads(js.read_text()).get("faces", []):
                stages = face["stages"]
                name = stage if stage != FINAL else _final_name(stages)
                if name in stages:
                    points = np.array([[np.nan if v is None else v for v in p] for p in stages[name]["points"]], np.float64)
                    if points.shape != (68, 2):
                        raise ValueError(f"{len(points)} points")
                    candidates.append(points)
            if not candidates:
                return None
            if truth is None or len(candidates) == 1:
                return candidates[0]
            centre = truth.mean(axis=0)
            return min(candidates, key=lambda p: np.linalg.norm(np.nanmean(p, axis=0) - centre))
        if stage == FINAL and pts.exists():
            return read_pts(pts, expected=68)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:  # PtsError, JSON errors: ValueError
        print(f"skipped: {js if js.exists() else pts}: unreadable prediction ({exc})", file=sys.stderr)
    return None


def evaluate_folder(pred_dir: Path, gt: dict[str, Path], stage: str) -> dict:
    pairs = []
    for stem, path in gt.items():
        truth = read_pts(path, expected=68)
        pairs.append((load_prediction(pred_dir, stem, stage, truth), truth))
    return score_faces(pairs)


def ground_truth_files(gt_dir: Path, list_file: Path | None = None) -> dict[str, Path]:
    """Stem -> ground-truth ``.pts``: those of ``list_file`` (paths relative to ``gt_dir``), else
    every ``.pts`` under ``gt_dir``; a missing one is an error (not a silently smaller test set)."""
    if not gt_dir.is_dir():
        raise NotAFolderError(f"{gt_dir}: not a folder")
    if list_file:
        rels = read_list(list_file)
        gt = {Path(r).with_suffix("").as_posix(): (gt_dir / r).with_suffix(".pts") for r in rels}
    else:
        gt = {p.relative_to(gt_dir).with_suffix("").as_posix(): p for p in sorted(gt_dir.rglob("*.pts"))}
    missing = [str(p) for p in gt.values() if not p.exists()]
    if missing:
        raise MissingInputError(f"{missing[0]}: ground truth missing ({len(missing)} files)")
    if not gt:
        raise MissingInputError(f"{gt_dir}: no .pts ground truth found")
    return gt


def evaluate_predictions(pred_dir: Path, gt: dict[str, Path], stage: str = FINAL) -> dict[str, dict]:
    """Scores per method: every stage found (``final``) or the one asked for, plus dlib's
    baseline when ``pred_dir/dlib`` exists; a stage no face has is dropped."""
    if not pred_dir.is_dir():
        raise NotAFolderError(f"{pred_dir}: not a folder")
    stages = [s.value for s in Stage] if stage == FINAL and any(pred_dir.rglob("*.json")) else [stage]
    rows = {s: evaluate_folder(pred_dir, gt, s) for s in stages}
    if (pred_dir / "dlib").is_dir():
        rows["dlib"] = evaluate_folder(pred_dir / "dlib", gt, FINAL)
    return {k: v for k, v in rows.items() if v["missing"] < v["faces"]} or rows


def score_table(rows: dict[str, dict]) -> list[str]:
    """The lines ``eval`` prints (and writes beside its JSON as Markdown)."""
    header = (f"{'method':<10} {'faces':>5} {'missing':>7} {'points':>6} {'NME68':>7} {'median':>7} {'AUC@.08':>8} {'FR@.08':>7} "
              f"{'NME49':>7} {'AUC49':>7} {'FR49':>6}")
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['faces']:>5} {r['missing']:>7} {r['points_scored']:>6.0%} {r['nme_mean']:>7.4f} {r['nme_median']:>7.4f} "
                     f"{r['auc08']:>8.4f} {r['fr08']:>7.3f} {r['nme49_mean']:>7.4f} {r['auc08_49']:>7.4f} {r['fr08_49']:>6.3f}")
    return lines + ["NME: mean over faces with a prediction (median over all, missing = inf); AUC/FR count a missing face as a failure.",
                    "points: mean share of the 68 points scored (a stage may report invisible points as missing; DenseReg does).",
                    "With several faces in a picture, the predicted face nearest the ground truth is scored."]


def ced_curves(rows: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One CED curve per method, labelled with its AUC (for ``tracker.plots.ced_plot``)."""
    return {f"{k} (AUC {v['auc08']:.3f})": ced(np.array([np.inf if e is None else e for e in v["errors"]])) for k, v in rows.items()}


def evaluate_video(pred_dir: Path, annot_dir: Path) -> dict:
    """Per-frame NME against every annotated frame (a frame without prediction = failure);
    malformed annotation files are listed and left out."""
    pairs, bad = [], []
    for gt_path in sorted(annot_dir.glob("*.pts")) if annot_dir.is_dir() else []:
        try:
            truth = read_pts(gt_path, expected=68)
        except PtsError as exc:
            bad.append(str(exc))
            continue
        pred_path = pred_dir / gt_path.name
        pairs.append((read_pts(pred_path, expected=68) if pred_path.exists() else None, truth))
    result = score_faces(pairs)
    result["annotated_frames"] = result.pop("faces")
    result["jitter_static"] = static_jitter(pred_dir, annot_dir)
    return {**result, "malformed_annotations": bad}


def static_jitter(pred_dir: Path, annot_dir: Path) -> float | None:
    """Mean frame-to-frame landmark motion over the still frames of a synthetic clip, as a
    fraction of the outer-eye-corner distance (None for clips without synth.json)."""
    meta = annot_dir.parent / "synth.json"
    if not meta.exists():
        return None
    steps = []
    for i in range(2, int(json.loads(meta.read_text())["static_frames"]) + 1):
        a, b, g = pred_dir / f"{i - 1:06d}.pts", pred_dir / f"{i:06d}.pts", annot_dir / f"{i:06d}.pts"
        if a.exists() and b.exists() and g.exists():
            truth = read_pts(g)
            iod = eye_distance(truth)
            steps.append(np.linalg.norm(read_pts(b) - read_pts(a), axis=1).mean() / iod)
    return float(np.mean(steps)) if steps else None


def summarise_300vw(out: Path, names: list[str]) -> dict:
    """Every finished video's ``result.json`` under ``out`` pooled: overall NME/AUC/FR and CED
    over all annotated frames, detections, jitter, and the per-video rows."""
    per_video, all_errors = {}, []
    for name in names:
        res = out / name / "result.json"
        if not res.exists():
            continue
        r = json.loads(res.read_text())
        e = [np.inf if x is None else x for x in r["errors"]]
        all_errors += e
        keys = ("frames", "annotated_frames", "missing", "detections", "nme_mean", "auc08", "fr08", "auc08_49", "jitter_static")
        per_video[name] = {k: r.get(k) for k in keys}
    e = np.array(all_errors, float)
    finite = np.isfinite(e)
    jit = [v["jitter_static"] for v in per_video.values() if v.get("jitter_static") is not None]
    return {
        "videos": per_video,
        "jitter_static": float(np.mean(jit)) if jit else None,
        "detections": sum(v.get("detections") or 0 for v in per_video.values()),
        "frames": len(e),
        # null, not NaN (invalid JSON), when no video has annotations: there is nothing to score
        "nme_mean": float(e[finite].mean()) if finite.any() else None,
        "auc08": auc(e) if len(e) else None,
        "fr08": failure_rate(e) if len(e) else None,
        "curves": {"all": [list(map(float, c)) for c in ced(e)]} if len(e) else {},
    }
