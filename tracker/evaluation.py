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

from tracker.errors import MissingInputError, NotAFolderError, UsageError, count_of
from tracker.fileio import listed_paths
from tracker.metrics import auc, ced, eye_distance, failure_rate, score_faces
from tracker.pts import PtsError, pts_beside, pts_files, read_pts, without_extension
from tracker.stages import Stage, last_stage
from tracker.writers import FRAME_PTS_NAME

FINAL = "final"  # every method the predictions have (the tracker's stages, the last one last)
BASELINE = "dlib"  # ``images --baseline dlib``: its method in the JSON and its subfolder of the predictions
PTS = "pts"  # plain ``<stem>.pts`` predictions: one face whose stage no file names

Faces = list[dict[str, np.ndarray]]  # one picture's predicted faces, each {method: (68,2) points}


def _points(stage, where: str) -> np.ndarray:
    try:
        points = np.array([[np.nan if v is None else v for v in p] for p in stage["points"]], np.float64)
    except (TypeError, KeyError, IndexError, ValueError):
        raise ValueError(f"{where}: no list of (x, y) points") from None
    if len(points) != 68:
        raise ValueError(f"{where}: {len(points)} points, expected 68")
    if points.shape != (68, 2):
        raise ValueError(f"{where}: no list of (x, y) points")
    return points


def _face(face, number: int) -> dict[str, np.ndarray]:
    stages = face.get("stages") if isinstance(face, dict) else None
    if not isinstance(stages, dict) or not stages:
        raise ValueError(f"not a tracker JSON: face {number} has no 'stages'")
    return {name: _points(stage, f"face {number}, stage {name!r}") for name, stage in stages.items()}


def read_prediction(path: Path) -> Faces:
    """The faces of one prediction file: every stage of every face of a tracker JSON (``images``,
    ``--baseline dlib``), or the one face of a ``.pts`` (method ``PTS``).  Raises ValueError
    (or OSError) saying in words what is wrong, without the path."""
    if path.suffix == ".pts":
        try:
            return [{PTS: read_pts(path, expected=68)}]
        except PtsError as exc:  # its message starts with the path, which the caller prints already
            raise ValueError(str(exc).removeprefix(f"{path}: ")) from None
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8 text
        raise ValueError(f"not JSON: {exc}") from None
    faces = doc.get("faces") if isinstance(doc, dict) else None
    if not isinstance(faces, list):
        raise ValueError("not a tracker JSON: no 'faces' list")
    return [_face(face, i) for i, face in enumerate(faces, 1)]


def prediction_file(pred_dir: Path, stem: str) -> Path | None:
    """``<stem>.json`` (preferred: every stage, every face) or ``<stem>.pts`` in `pred_dir`."""
    return next((p for p in (pred_dir / f"{stem}.json", pred_dir / f"{stem}.pts") if p.is_file()), None)


def load_predictions(pred_dir: Path, stems) -> tuple[dict[str, Faces], list[str]]:
    """The faces predicted for each stem that has ``<stem>.json`` (preferred: every stage, every
    face) or ``<stem>.pts`` in ``pred_dir``; and one ``PATH: unreadable prediction (why)`` per
    file that cannot be used (its face then counts as missing)."""
    found, skipped = {}, []
    for stem in stems:
        path = prediction_file(pred_dir, stem)
        if path is None:
            continue
        try:
            found[stem] = read_prediction(path)
        except (OSError, ValueError) as exc:
            skipped.append(f"{path}: unreadable prediction ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc})")
    return found, skipped


def absent_predictions(pred_dir: Path, stems) -> tuple[list[str], bool]:
    """The stems with no prediction file at all (scored as missing faces), and whether the
    folder is an ``images`` run's (a JSON for every picture it processed: there no file means not
    processed; in a folder of ``.pts`` alone it may mean no face)."""
    absent = [stem for stem in stems if prediction_file(pred_dir, stem) is None]
    return absent, any((pred_dir / f"{stem}.json").is_file() for stem in stems)


def methods_found(found: dict[str, Faces]) -> list[str]:
    """Every method some face has: the tracker's stages in pipeline order, then any other (a
    baseline's, ``PTS``) in the order met."""
    names = list(dict.fromkeys(name for faces in found.values() for face in faces for name in face))
    order = [s.value for s in Stage]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))  # stable: others keep their order


def final_method(face: dict) -> str:
    """A face's final method: the last tracker ``Stage`` it has, else its last (for a baseline's
    or a ``.pts`` face, its only) method."""
    return last_stage(face).value if any(s in face for s in Stage) else list(face)[-1]


def pick_face(faces: Faces, method: str, truth: np.ndarray) -> np.ndarray | None:
    """The points of ``method`` (``FINAL``: each face's own final one) of the face to score, or
    None.  With several faces in the picture, the face scored is the annotated one
    (``annotated_index`` of each face's final points), as usual on 300-W: a correct detection of
    another person in the photo is not an error of the landmark stage.  A face whose centroid lies
    outside the annotated face's box is another person's, not a poor answer for this one: with no
    face inside it the annotated face is missing (a failure all the same, but the mean NME no longer averages in the
    distance between two people).  The face is chosen once, by its final points, for every stage:
    chosen stage by stage, one stage's row scored one person and another's another, with other
    faces missing (user test 24)."""
    finals = [(face, face[final_method(face)]) for face in faces]
    chosen = annotated_index([final for _, final in finals], truth)
    if chosen is None:
        return None
    face, final = finals[chosen]
    points = final if method == FINAL else face.get(method)
    return points if points is not None and np.isfinite(points).all(axis=1).any() else None


def annotated_index(faces: list[np.ndarray], truth: np.ndarray) -> int | None:
    """Which of several faces (each one's (68,2) points, NaN where not given) is the annotated
    one: of those centred in the box of the annotated points (``centred_on``), the one nearest
    their centroid; None where none is."""
    centre = truth.mean(axis=0)
    inside = [(float(np.hypot(*(_centre(p) - centre))), i) for i, p in enumerate(faces)
              if np.isfinite(p).all(axis=1).any() and centred_on(_centre(p), truth)]
    return min(inside)[1] if inside else None


def _centre(points: np.ndarray) -> np.ndarray:
    """The mean of the given (finite) points of at least one."""
    return points[np.isfinite(points).all(axis=1)].mean(axis=0)


def centred_on(centre: np.ndarray, truth: np.ndarray) -> bool:
    """Whether a predicted face centred at `centre` is the annotated face: its centre lies in the
    box of the annotated points (else it is another person's)."""
    return bool(np.all((centre >= truth.min(axis=0)) & (centre <= truth.max(axis=0))))


def annotated_face(annot_dir: Path, frame: int, faces: list[np.ndarray]) -> int | None:
    """Which of a video frame's faces (each one's (68,2) points) is the annotated one: of those
    centred in the box of ``annot_dir``'s annotation of `frame` (``centred_on``), the one nearest
    its centre; None where the frame has no readable annotation or no face there."""
    try:
        truth = read_truth(pts_beside(annot_dir / f"{frame:06d}"))
    except PtsError:
        return None
    return annotated_index(faces, truth)


def score_method(found: dict[str, Faces], truths: dict[str, np.ndarray], method: str) -> dict:
    """Metrics of one method over every ground-truth face; a face without a prediction is a failure,
    as is one whose predicted faces are all centred outside the annotated face's box
    (``faces_on_another_face`` counts those: another person's face, not scored)."""
    picked = [(pick_face(found.get(stem, []), method, truth), truth) for stem, truth in truths.items()]
    other = sum(1 for stem, truth in truths.items()
                if (faces := found.get(stem)) and annotated_index([f[final_method(f)] for f in faces], truth) is None)
    return {**score_faces(picked), "faces_on_another_face": int(other)}


def read_truth(path: Path) -> np.ndarray:
    """A ground-truth shape: 68 points whose outer eye corners, every error's unit, are apart
    (coinciding, they gave numpy's "divide by zero" and the face counted as missing; user test 21)."""
    truth = read_pts(path, expected=68)
    if not eye_distance(truth) >= 1.0:
        raise PtsError(f"{path}: its outer eye corners (points 37 and 46) are {eye_distance(truth):.2g} px apart: "
                       "no error can be normalised by them")
    return truth


def ground_truth_files(gt_dir: Path, list_file: Path | None = None) -> dict[str, Path]:
    """Stem -> ground-truth ``.pts``: those of ``list_file`` (paths relative to ``gt_dir``), else
    every ``.pts`` under ``gt_dir``; a missing one is an error (not a silently smaller test set)."""
    if not gt_dir.is_dir():
        raise NotAFolderError(f"{gt_dir}: not a folder")
    if list_file:
        gt = {without_extension(r).as_posix(): pts_beside(gt_dir / r) for r in listed_paths(list_file, gt_dir, "--gt")}
    else:
        gt = {p.relative_to(gt_dir).with_suffix("").as_posix(): p for p in pts_files(gt_dir, recursive=True)}
    missing = [str(p) for p in gt.values() if not p.exists()]
    if missing:
        raise MissingInputError(f"{missing[0]}: ground truth missing ({len(missing)} files)")
    if not gt:
        raise MissingInputError(f"{gt_dir}: no .pts ground truth found")
    return gt


def _no_match(pred_dir: Path, truths: dict) -> str:
    """Why nothing matched, with an example stem of each side (a flat folder scored against a
    nested ground truth, or the reverse, is the usual mistake)."""
    own = sorted({p.relative_to(pred_dir).with_suffix("").as_posix() for p in pred_dir.rglob("*")
                  if p.suffix in (".json", ".pts") and pred_dir / BASELINE not in p.parents})
    if not own:
        return f"{pred_dir}: no predictions in it (<stem>.json or <stem>.pts), nothing to score"
    return (f"{pred_dir}: no prediction matches the ground truth: its {len(own)} predictions have other stems "
            f"(e.g. {own[0]!r}) than the {len(truths)} ground-truth .pts (e.g. {next(iter(truths))!r})")


def evaluate_predictions(pred_dir: Path, gt: dict[str, Path], stage: str = FINAL) -> tuple[dict[str, dict], int]:
    """Scores per method, and how many prediction files were unreadable (each reported on stderr
    as ``skipped:``; its face counts as missing).  The methods are those the predictions have
    (``methods_found``) or the one asked for, plus the baseline of ``pred_dir/dlib`` as one row.
    Raises a ``TrackerError`` when no prediction matches the ground truth, when none of those that
    do has a face, or when the stage asked for is not in them."""
    if not pred_dir.is_dir():
        raise NotAFolderError(f"{pred_dir}: not a folder")
    truths = {stem: read_truth(path) for stem, path in gt.items()}
    found, skipped = load_predictions(pred_dir, truths)
    # The baseline's folder is scored like a folder of its own, each face's final (only) method.
    baseline, skipped_baseline = load_predictions(pred_dir / BASELINE, truths) if (pred_dir / BASELINE).is_dir() else ({}, [])
    for line in skipped + skipped_baseline:
        print(f"skipped: {line}", file=sys.stderr)
    if not (found or skipped or baseline or skipped_baseline):
        raise MissingInputError(_no_match(pred_dir, truths))
    methods = methods_found(found)
    has_baseline = bool(baseline or skipped_baseline)
    if found and not methods and has_baseline:
        # The tracker found no face in any picture: its row (every face missing) beside the
        # baseline's, rather than the baseline's alone (user test 12).
        methods = [FINAL]
    if stage != FINAL and stage not in methods and not (stage == BASELINE and has_baseline):
        have = ", ".join(methods + [BASELINE] * has_baseline) or "no readable face"
        raise UsageError(f"--stage {stage}: not in the predictions of {pred_dir} (they have: {have})")
    rows = {m: score_method(found, truths, m) for m in methods if stage in (FINAL, m)}
    if has_baseline:
        rows[BASELINE] = score_method(baseline, truths, FINAL)
    if not rows:
        raise MissingInputError(f"{pred_dir}: nothing to score: no face in the {len(found) + len(skipped)} predictions that match "
                                f"the ground truth ({len(skipped)} unreadable)")
    return rows, len(skipped) + len(skipped_baseline)


def score_table(rows: dict[str, dict]) -> list[str]:
    """The lines ``eval`` prints (and writes beside its JSON as Markdown)."""
    header = (f"{'method':<10} {'faces':>5} {'missing':>7} {'points':>6} {'NME68':>7} {'median':>7} {'AUC@.08':>8} {'FR@.08':>7} "
              f"{'NME49':>7} {'AUC49':>7} {'FR49':>6}")
    lines = [header, "-" * len(header)]
    def cell(value: float, width: int, form: str) -> str:  # none scored: "-", not "nan%" (read as a broken run; user test 38)
        return f"{format(value, form) if np.isfinite(value) else '-':>{width}}"

    for name, r in rows.items():
        lines.append(f"{name:<10} {r['faces']:>5} {r['missing']:>7} {cell(r['points_scored'], 6, '.0%')} {cell(r['nme_mean'], 7, '.4f')} "
                     f"{cell(r['nme_median'], 7, '.4f')} {r['auc08']:>8.4f} {r['fr08']:>7.3f} {cell(r['nme49_mean'], 7, '.4f')} "
                     f"{r['auc08_49']:>7.4f} {r['fr08_49']:>6.3f}")
    return lines + ["NME: mean over faces with a prediction (median over all, missing = inf); AUC/FR count a missing face as a failure.",
                    "points: mean share of the 68 points scored (a stage may report invisible points as missing; DenseReg does).",
                    "With several faces in a picture, of the predicted faces centred in the annotated face's box the one whose "
                    "final points lie nearest the ground truth is scored, every stage of that one face; "
                    "none centred there: the face counts as missing (another person's face is not scored)."]


def ced_curves(rows: dict[str, dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One CED curve per method, labelled with its AUC (for ``tracker.plots.ced_plot``)."""
    return {f"{k} (AUC {v['auc08']:.3f})": ced(np.array([np.inf if e is None else e for e in v["errors"]])) for k, v in rows.items()}


def evaluate_video(pred_dir: Path, annot_dir: Path, frames: int | None = None) -> dict:
    """Per-frame NME against every annotated frame of the video's `frames` (a frame without
    prediction = failure, as is one whose face is centred outside the annotated face's box: another
    person's, as ``eval`` counts it).  Malformed annotation files, and files not named as a frame
    (``000001.pts`` is frame 1), are listed and left out.  Annotations past the last decoded
    frame (a truncated video, or one that decodes to fewer frames than it was annotated with)
    are failures too, counted in ``annotations_past_end``: left out, a damaged file raised the
    score, and ``eval`` on the same folder counted them missing (user test 16)."""
    pairs, bad, misnamed, past_end, other = [], [], [], 0, 0
    for gt_path in pts_files(annot_dir) if annot_dir.is_dir() else []:
        if not FRAME_PTS_NAME.fullmatch(gt_path.name):
            misnamed.append(gt_path)
            continue
        try:
            truth = read_truth(gt_path)
        except PtsError as exc:
            bad.append(str(exc))
            continue
        if frames is not None and int(gt_path.stem) > frames:
            past_end += 1
            pairs.append((None, truth))
            continue
        pred_path = pred_dir / f"{gt_path.stem}.pts"  # (as the tracker writes it, whatever the annotation's case)
        pred = read_pts(pred_path, expected=68) if pred_path.exists() else None
        if pred is not None and not centred_on(_centre(pred), truth):
            pred, other = None, other + 1
        pairs.append((pred, truth))
    if misnamed:
        bad.append(f"{annot_dir}: {count_of(len(misnamed), 'annotation file')} not named as a frame's "
                   f"(first: {misnamed[0].name}; 000001.pts is frame 1): not scored")
    result = score_faces(pairs)
    result["annotated_frames"] = result.pop("faces")
    result["jitter_static"] = static_jitter(pred_dir, annot_dir)
    return {**result, "frames_on_another_face": other, "annotations_past_end": past_end, "malformed_annotations": bad}


def static_jitter(pred_dir: Path, annot_dir: Path) -> float | None:
    """Mean frame-to-frame landmark motion over the still frames of a synthetic clip, as a
    fraction of the outer-eye-corner distance (None for clips without a readable synth.json).
    A malformed annotation leaves its frame pairs out, as ``evaluate_video`` leaves the frame out
    (it threw away the whole tracked video; review 26)."""
    try:
        still = int(json.loads((annot_dir.parent / "synth.json").read_text())["static_frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    steps = []
    for i in range(2, still + 1):
        a, b, g = pred_dir / f"{i - 1:06d}.pts", pred_dir / f"{i:06d}.pts", pts_beside(annot_dir / f"{i:06d}")
        if a.exists() and b.exists() and g.exists():
            try:
                iod = eye_distance(read_truth(g))
            except PtsError:
                continue
            steps.append(np.linalg.norm(read_pts(b) - read_pts(a), axis=1).mean() / iod)
    return float(np.mean(steps)) if steps else None


def _is_number(v, whole: bool = False) -> bool:
    return isinstance(v, int if whole else (int, float)) and not isinstance(v, bool) and v >= 0


def result_problem(result) -> str | None:
    """What makes a video's ``result.json`` unfit for ``summarise_300vw`` and for scoring again
    (a hand-edited or foreign file), None when it is fit: what the summary adds up (frames,
    detections, still-frame jitter) and pools (each annotated frame's error, the tracker's and
    each baseline's)."""
    def scores_problem(r: dict, who: str) -> str | None:
        errors, annotated = r.get("errors"), r.get("annotated_frames")
        if not isinstance(errors, list) or not all(e is None or _is_number(e) for e in errors):
            return f"{who}'errors' is not a list of numbers and nulls"
        if not _is_number(annotated, whole=True) or len(errors) != annotated:
            return f"{who}'errors' has {len(errors)} entries for {annotated!r} annotated frames"
        for key, whole in (("missing", True), ("frames_on_another_face", True), ("nme_mean", False), ("auc08", False),
                           ("fr08", False), ("auc08_49", False), ("jitter_static", False)):  # (copied into the summary's rows)
            if r.get(key) is not None and not _is_number(r[key], whole):
                return f"{who}'{key}' is not a {'count' if whole else 'number'}"
        return None

    if not isinstance(result, dict):
        return "it is not a JSON object"
    if not _is_number(result.get("frames"), whole=True):
        return "'frames' is not a frame count"
    for key in ("detections", "annotations_past_end", "skipped_frames"):
        if result.get(key) is not None and not _is_number(result[key], whole=True):
            return f"'{key}' is not a count"
    if problem := scores_problem(result, ""):
        return problem
    baselines = result.get("baseline")
    if baselines is None:
        return None
    if not isinstance(baselines, dict):
        return "'baseline' is not an object of baselines"
    for name, b in baselines.items():
        if not isinstance(b, dict):
            return f"baseline {name!r} is not an object"
        if problem := scores_problem(b, f"baseline {name!r}: "):
            return problem
    return None


def summarise_300vw(out: Path, names: list[str]) -> dict:
    """Every finished video's ``result.json`` under ``out`` pooled: overall NME/AUC/FR and CED
    over all annotated frames, detections, jitter, and the per-video rows; the same for each
    baseline the videos were run with (``batch300vw --baseline``), under ``baseline``."""
    per_video, all_errors, baselines = {}, [], {}
    for name in names:
        res = out / name / "result.json"
        if not res.exists():
            continue
        r = json.loads(res.read_text())
        all_errors += r["errors"]
        keys = ("frames", "skipped_frames", "annotated_frames", "missing", "frames_on_another_face", "annotations_past_end", "detections",
                "nme_mean", "auc08", "fr08", "auc08_49", "jitter_static")
        per_video[name] = {k: r.get(k) for k in keys}
        for method, b in (r.get("baseline") or {}).items():
            pooled = baselines.setdefault(method, {"videos": {}, "errors": []})
            pooled["videos"][name] = {k: b.get(k) for k in keys if k in b}
            pooled["errors"] += b["errors"]
    summary = {
        "videos": per_video,
        "jitter_static": _mean_of(v.get("jitter_static") for v in per_video.values()),
        "detections": sum(v.get("detections") or 0 for v in per_video.values()),
        # as in each video's result.json: every decoded frame, and the annotated ones that are scored
        "frames": sum(v.get("frames") or 0 for v in per_video.values()),
        "skipped_frames": sum(v.get("skipped_frames") or 0 for v in per_video.values()),  # undecodable, passed
        **_pooled(all_errors),
    }
    if baselines:
        summary["baseline"] = {
            method: {"videos": b["videos"], **_pooled(b["errors"]),
                     "jitter_static": _mean_of(v.get("jitter_static") for v in b["videos"].values())}
            for method, b in baselines.items()}
    return summary


def _mean_of(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _pooled(errors: list) -> dict:
    """Scores over the annotated frames of several videos (None: a frame without a prediction)."""
    e = np.array([np.inf if x is None else x for x in errors], float)
    finite = np.isfinite(e)
    return {
        "annotated_frames": len(e),
        # null, not NaN (invalid JSON), when no video has annotations: there is nothing to score
        "nme_mean": float(e[finite].mean()) if finite.any() else None,
        "auc08": auc(e) if len(e) else None,
        "fr08": failure_rate(e) if len(e) else None,
        "curves": {"all": [list(map(float, c)) for c in ced(e)]} if len(e) else {},
    }
