"""What the ``images``, ``eval`` and ``demo`` subcommands do (the CLI only parses arguments).

Outputs of ``images``, per image (written atomically; ``<stem>.json`` last, so its presence
means the image is finished and a rerun skips it, unless an output asked for is missing):

* ``<stem>.pts`` — one face's final landmarks (iBUG, 1-based), the face ``pts_face`` picks;
  absent when no face was found.
* ``<stem>.json`` — every face: box, score, ROI, the 68 points and confidences of every stage
  (``densereg``, ``pca``, ``mdm``), in 0-based pixels (``COORDINATES``, also stated in the
  file); ``"faces": []`` when no face was found.
* ``<stem>_parts.png`` (``--parts``) — uint8 labels 0-8 for programs (values in
  ``tracker/parts.py``; looks black in an image viewer: ``--annotate`` shows them coloured).
* ``<stem>_annotated.jpg`` (``--annotate``) — the picture with every face's landmarks drawn, and
  the parts blended in colour with ``--parts``; written for pictures without a face too.
* ``<stem>_maps.npz`` (``--save-maps``) — ``uv`` (2,H,W), ``fg`` (H,W), ``depth`` (H,W) of the
  ``.pts`` face in image pixels.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from tracker.boxfile import box_key, read_boxes
from tracker.detector import BoxError, Detection, cnn_missing_note, require_dlib_predictor
from tracker.draw import STAGE_COLORS, blend_labels, draw_points, point_radius, warp_to_image
from tracker.errors import MissingInputError, NotAFolderError
from tracker.fileio import (
    ImageReadError,
    WriteError,
    atomic_save_npz,
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    list_images,
    read_image,
    read_list,
    safe_output_path,
)
from tracker.metrics import ced, score_faces
from tracker.parts import lookup_parts
from tracker.pipeline import FaceResult, FrameResult, Stage, Tracker, TrackerConfig, last_stage
from tracker.pts import read_pts, write_pts

DEMO_IMAGE = Path(__file__).resolve().parent / "assets" / "demo" / "astronaut.jpg"
DEMO_CLIP = DEMO_IMAGE.with_suffix(".mp4")  # made from the still by tracker.synth300vw (moves, occluder, face leaves)
# Stated in every JSON the tracker writes ("coordinates"), and in the README.
COORDINATES = "pixels, 0-based: (0,0) is the centre of the top-left pixel, x right, y down (the .pts files are 1-based: x+1, y+1)"


def face_to_json(face: FaceResult) -> dict:
    def pts(a):
        return [[None if not np.isfinite(v) else round(float(v), 3) for v in p] for p in a]

    return {
        "track_id": face.track_id,
        "score": round(float(face.score), 4),
        "detected": face.detected,
        "box": None if face.box is None else [round(v, 2) for v in (face.box.x0, face.box.y0, face.box.x1, face.box.y1)],
        "detector": None if face.box is None else face.box.detector,
        "roi": {"cx": face.roi.cx, "cy": face.roi.cy, "size": face.roi.size, "angle": face.roi.angle},
        "pose_deg": None if face.pose is None else dict(zip(("yaw", "pitch", "roll"), (round(v, 2) for v in face.pose.yaw_pitch_roll()))),
        "stages": {
            name: {"points": pts(s.points), "confidence": [round(float(c), 3) for c in s.confidence]} for name, s in face.stages.items()
        },
    }


def frame_to_json(result: FrameResult, source: str, shape) -> dict:
    return {
        "source": source,
        "coordinates": COORDINATES,
        "image_size": [int(shape[1]), int(shape[0])],
        "faces": [face_to_json(f) for f in result.faces],
        "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
    }


def part_labels(face: FaceResult, part_map: np.ndarray, shape, fg_threshold: float = 0.5) -> np.ndarray:
    """The face's part labels in image pixels (0 elsewhere)."""
    crop_labels = lookup_parts(face.maps.uv, part_map, face.maps.fg > fg_threshold)
    return warp_to_image(crop_labels, face.crop_to_image, shape, nearest=True)


def frame_part_labels(faces: list[FaceResult], part_map: np.ndarray, shape) -> np.ndarray:
    """Part labels of every face in image pixels; where faces overlap, the first (most
    confident) face's labels win."""
    labels = np.zeros(shape[:2], np.uint8)
    for face in reversed(faces):
        lab = part_labels(face, part_map, shape[:2])
        labels[lab > 0] = lab[lab > 0]
    return labels


def annotate_still(image: np.ndarray, faces: list[FaceResult], labels: np.ndarray | None = None, all_stages: bool = False) -> np.ndarray:
    """A copy of the picture with part labels blended in colour (when given) and the landmarks
    of every face drawn: the final stage (green), or every stage (orange DenseReg, cyan PCA,
    green MDM; the final one drawn larger)."""
    out = image.copy() if labels is None else blend_labels(image, labels, 0.45)
    for face in faces:
        for stage in face.stages if all_stages else [face.final_stage]:
            draw_points(out, face.stages[stage].points, STAGE_COLORS[stage], point_radius(face.landmarks, 1.0 if stage == face.final_stage else 0.7))
    return out


def largest_face(faces: list[FaceResult]) -> FaceResult | None:
    """The subject of a picture: the largest face; of equally large ones the first, i.e. the
    most confident (faces come best first)."""
    return max(faces, key=lambda f: f.roi.size) if faces else None


def pts_face(faces: list[FaceResult], boxes: list[Detection] | None = None) -> FaceResult | None:
    """The one face a ``.pts`` file holds: the face of the first given box that yielded one,
    else the largest face.  (On the 80 validation pictures the largest and the most confident
    face pick the annotated face equally often, 8 of the 12 with several faces; the largest is
    the rule ``video`` uses too.)"""
    for box in boxes or []:
        for face in faces:
            if face.box == box:
                return face
    return largest_face(faces)


def _output_names(images: list[Path], root: Path) -> dict[Path, str]:
    """Relative output stem per image; images sharing a stem keep their extension in it."""
    rel = {p: p.relative_to(root).with_suffix("").as_posix() for p in images}
    counts: dict[str, int] = {}
    for r in rel.values():
        counts[r] = counts.get(r, 0) + 1
    return {p: (r if counts[r] == 1 else p.relative_to(root).as_posix()) for p, r in rel.items()}


def _select_images(args) -> list[Path]:
    if not args.input.is_dir():
        raise NotAFolderError(f"{args.input}: not a folder")
    if getattr(args, "list", None):
        names = read_list(args.list)
        return [args.input / n for n in names]
    images = list_images(args.input, recursive=args.recursive)
    if not images:
        raise MissingInputError(f"{args.input}: no images (jpg, jpeg, png, bmp) found")
    return images


def _finished(args, stem: str) -> bool:
    """``<stem>.json`` is written last, so it marks a finished image, unless an output asked for
    this time is missing (a rerun adding ``--annotate`` or ``--parts`` does those images)."""
    import json

    json_path = safe_output_path(args.out, f"{stem}.json")
    if not json_path.exists():
        return False
    if args.annotate and not safe_output_path(args.out, f"{stem}_annotated.jpg").exists():
        return False
    per_face = [suffix for flag, suffix in ((args.parts, "_parts.png"), (args.save_maps, "_maps.npz")) if flag]
    if per_face:
        try:
            has_face = bool(json.loads(json_path.read_text()).get("faces"))
        except ValueError:
            return False
        return not has_face or all(safe_output_path(args.out, stem + s).exists() for s in per_face)
    return True


def _load_boxes(args, images: list[Path]) -> dict[str, list[Detection]]:
    """--boxes, keyed like the images; warns once about stems that match no image."""
    if not args.boxes:
        return {}
    boxes = read_boxes(args.boxes)
    keys = {box_key(p.relative_to(args.input).as_posix()) for p in images}
    unmatched = sorted(set(boxes) - keys)
    if unmatched:
        print(f"warning: {args.boxes}: {len(unmatched)} stem(s) match no input image, e.g. {unmatched[0]!r}", file=sys.stderr)
    return boxes


def run_images(args) -> int:
    images = _select_images(args)
    if args.baseline == "dlib":
        require_dlib_predictor("--baseline dlib")
    if note := cnn_missing_note():
        print(note, file=sys.stderr)
    boxes = _load_boxes(args, images)
    tracker = Tracker(TrackerConfig.from_args(args, mode="image"))
    names = _output_names(images, args.input)
    counts = {"done": 0, "resumed": 0, "no_face": 0, "failed": 0, "faces": 0, "given": 0, "bad_box": 0}
    try:
        _images_loop(args, tracker, images, names, boxes, counts)
    except WriteError as exc:  # a full disk, a folder made read-only: say what is kept
        raise exc.with_note(f"{counts['done']} images finished in this run and {counts['resumed']} before it are complete; "
                            "after fixing that, rerun the same command to resume") from exc
    given = f" ({counts['given']} with boxes from {args.boxes}, {counts['bad_box']} skipped for a box outside the picture)" if boxes else ""
    print(
        f"done: {counts['done']} images processed{given}, {counts['resumed']} already done, {counts['faces']} faces, "
        f"{counts['no_face']} without a face, {counts['failed']} unreadable; outputs in {args.out} "
        f"(engine: {tracker.engine.describe()})"
    )
    return 1 if counts["failed"] or counts["bad_box"] else 0


def _images_loop(args, tracker: Tracker, images: list[Path], names: dict[Path, str], boxes: dict | None,
                 counts: dict[str, int]) -> None:
    from tqdm import tqdm

    for image_path in tqdm(images, unit="img", file=sys.stderr, disable=not sys.stderr.isatty()):
        stem = names[image_path]
        if not args.overwrite and _finished(args, stem):
            counts["resumed"] += 1
            continue
        try:
            image = read_image(image_path)
        except ImageReadError as exc:
            counts["failed"] += 1
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        given = boxes.get(box_key(image_path.relative_to(args.input).as_posix())) if boxes else None
        if boxes and given is None:
            print(f"no box: {image_path} has no line in {args.boxes}; the detector looks for faces", file=sys.stderr)
        try:
            result = tracker.track(image, boxes=given)
        except BoxError as exc:  # the file's boxes are checked on reading; only "outside this picture" is left
            counts["bad_box"] += 1
            print(f"skipped: {image_path}: {exc}", file=sys.stderr)
            continue
        counts["faces"] += len(result.faces)
        counts["given"] += given is not None
        labels = frame_part_labels(result.faces, tracker.part_map, image.shape) if args.parts and result.faces else None
        if result.faces:
            face = pts_face(result.faces, given)
            if args.parts:
                atomic_write_image(safe_output_path(args.out, f"{stem}_parts.png"), labels)
            if args.save_maps:
                shape = image.shape[:2]
                uv = np.stack([warp_to_image(face.maps.uv[i], face.crop_to_image, shape) for i in range(2)])
                fg = warp_to_image(face.maps.fg, face.crop_to_image, shape)
                depth = warp_to_image(face.maps.depth, face.crop_to_image, shape)
                atomic_save_npz(safe_output_path(args.out, f"{stem}_maps.npz"),
                                uv=uv.astype(np.float16), fg=fg.astype(np.float16), depth=depth.astype(np.float16))
            write_pts(safe_output_path(args.out, f"{stem}.pts"), face.landmarks)
        else:
            counts["no_face"] += 1
            why = "no face could be fitted in the given box(es)" if given else "the detector found none"
            print(f"no face: {image_path} ({why}; {stem}.json lists no faces, no .pts written)", file=sys.stderr)
        if args.annotate:
            atomic_write_image(safe_output_path(args.out, f"{stem}_annotated.jpg"), annotate_still(image, result.faces, labels))
        if args.baseline == "dlib":
            _write_dlib(image, safe_output_path(args.out, f"dlib/{stem}"))
        atomic_write_json(safe_output_path(args.out, f"{stem}.json"), frame_to_json(result, str(image_path), image.shape))
        counts["done"] += 1


def _write_dlib(image: np.ndarray, stem_path: Path) -> None:
    """dlib's HOG + 68-point predictor on every detected face: <stem>.json (same schema as
    ours, stage 'dlib') and <stem>.pts for the most confident face."""
    from tracker.detector import detect_faces, dlib_landmarks

    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    faces = []
    for d in detect_faces(gray):
        pts = dlib_landmarks(gray, d)
        faces.append({"score": round(d.score, 4), "box": [d.x0, d.y0, d.x1, d.y1],
                      "stages": {"dlib": {"points": np.round(pts, 3).tolist(), "confidence": [1.0] * 68}}})
    if faces:
        write_pts(stem_path.with_name(stem_path.name + ".pts"), np.array(faces[0]["stages"]["dlib"]["points"]))
    atomic_write_json(stem_path.with_name(stem_path.name + ".json"), {"coordinates": COORDINATES, "faces": faces})


def _final_name(stages: dict) -> str:
    """The final stage of a face read from JSON: the last tracker ``Stage`` present, else the
    file's only method (a baseline's, e.g. 'dlib')."""
    return last_stage(stages) if any(s in stages for s in Stage) else list(stages)[-1]


def load_prediction(pred_dir: Path, stem: str, stage: str, truth: np.ndarray | None = None) -> np.ndarray | None:
    """(68,2) predicted points, or None when there is none (or the prediction file is
    unreadable, which is reported).  With several faces in the picture, the face scored is the
    one nearest the ground truth (its centroid), as usual on 300-W: a correct detection of
    another person in the photo is not an error of the landmark stage."""
    import json

    js, pts = pred_dir / f"{stem}.json", pred_dir / f"{stem}.pts"
    try:
        if js.exists():
            candidates = []
            for face in json.loads(js.read_text()).get("faces", []):
                stages = face["stages"]
                name = stage if stage != "final" else _final_name(stages)
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
        if stage == "final" and pts.exists():
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


def _ground_truth(args) -> dict[str, Path]:
    if not args.gt.is_dir():
        raise NotAFolderError(f"{args.gt}: not a folder")
    if args.list:
        rels = read_list(args.list)
        gt = {Path(r).with_suffix("").as_posix(): (args.gt / r).with_suffix(".pts") for r in rels}
    else:
        gt = {p.relative_to(args.gt).with_suffix("").as_posix(): p for p in sorted(args.gt.rglob("*.pts"))}
    missing = [str(p) for p in gt.values() if not p.exists()]
    if missing:
        raise MissingInputError(f"{missing[0]}: ground truth missing ({len(missing)} files)")
    if not gt:
        raise MissingInputError(f"{args.gt}: no .pts ground truth found")
    return gt


def run_eval(args) -> int:
    gt = _ground_truth(args)
    if not args.pred.is_dir():
        raise NotAFolderError(f"{args.pred}: not a folder")
    rows: dict[str, dict] = {}
    # "final" scores every stage found (a stage no face has is dropped below); else the one asked for.
    stages = [s.value for s in Stage] if args.stage == "final" and any(args.pred.rglob("*.json")) else [args.stage]
    for stage in stages:
        rows[stage] = evaluate_folder(args.pred, gt, stage)
    if (args.pred / "dlib").is_dir():
        rows["dlib"] = evaluate_folder(args.pred / "dlib", gt, "final")
    rows = {k: v for k, v in rows.items() if v["missing"] < v["faces"]} or rows
    header = (f"{'method':<10} {'faces':>5} {'missing':>7} {'points':>6} {'NME68':>7} {'median':>7} {'AUC@.08':>8} {'FR@.08':>7} "
              f"{'NME49':>7} {'AUC49':>7} {'FR49':>6}")
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(f"{name:<10} {r['faces']:>5} {r['missing']:>7} {r['points_scored']:>6.0%} {r['nme_mean']:>7.4f} {r['nme_median']:>7.4f} "
                     f"{r['auc08']:>8.4f} {r['fr08']:>7.3f} {r['nme49_mean']:>7.4f} {r['auc08_49']:>7.4f} {r['fr08_49']:>6.3f}")
    lines += ["NME: mean over faces with a prediction (median over all, missing = inf); AUC/FR count a missing face as a failure.",
              "points: mean share of the 68 points scored (a stage may report invisible points as missing; DenseReg does).",
              "With several faces in a picture, the predicted face nearest the ground truth is scored."]
    print("\n".join(lines))
    if args.plot:
        from tracker.plots import ced_plot

        curves = {f"{k} (AUC {v['auc08']:.3f})": ced(np.array([np.inf if e is None else e for e in v["errors"]])) for k, v in rows.items()}
        atomic_write_image(args.plot, ced_plot(curves))
    if args.json:
        atomic_write_json(args.json, {"gt": str(args.gt), "pred": str(args.pred), "methods": rows})
        # The same table for people reading the repository (docs/results/*.md).
        atomic_write_text(args.json.with_suffix(".md"), "```\n" + "\n".join(lines) + "\n```\n")
    return 0


def run_demo(args) -> int:
    """Track the bundled clip (annotated video) and annotate the bundled still (parts + stages)."""
    from tracker.video import READ_AHEAD, AtomicVideoWriter, annotate, open_video, read_frames

    config = TrackerConfig.from_args(args, mode="image")
    tracker = Tracker(config)
    image = read_image(DEMO_IMAGE)
    result = tracker.track(image)
    out = annotate_still(image, result.faces, frame_part_labels(result.faces, tracker.part_map, image.shape), all_stages=True)
    still = safe_output_path(args.out, "astronaut_annotated.png")
    atomic_write_image(still, out)
    atomic_write_json(safe_output_path(args.out, "astronaut.json"), frame_to_json(result, str(DEMO_IMAGE), image.shape))

    tracker = Tracker(replace(config, mode="video"))
    cap, info = open_video(DEMO_CLIP)
    clip = safe_output_path(args.out, "astronaut_tracked.mp4")
    times, found = [], 0
    with AtomicVideoWriter(clip, info.fps, (info.width, info.height)) as writer:
        for frame in read_frames(cap, source=str(DEMO_CLIP), ahead=READ_AHEAD):
            r = tracker.track(frame)
            total = sum(r.timings.values())
            times.append(total)
            found += bool(r.faces)
            writer.write(annotate(frame, r, 1000.0 / max(total, 1e-3)))
    ms = float(np.median(times))
    print(f"still: {len(result.faces)} face(s) -> {still} (parts; landmarks orange DenseReg, cyan PCA, green MDM)")
    print(f"clip: face tracked in {found}/{len(times)} frames, median {ms:.1f} ms/frame ({1000 / ms:.0f} fps) with "
          f"{tracker.engine.describe()} -> {clip}")
    if not result.faces:
        print("warning: no face found on the still (the shipped network may be an early checkpoint)", file=sys.stderr)
    return 0
