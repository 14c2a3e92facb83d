"""Dense ground truth from 3DMM fits (paper §2): ``python -m training.groundtruth``.

``python -m training.groundtruth --images DIR --out DIR [--jobs N] [--preview DIR]`` reads every
``<stem>.jpg|jpeg|png`` with a ``<stem>.pts`` beside it (iBUG 68 points, with or without
header, 300-W 1-based coordinates) anywhere under DIR, and writes ``OUT/<rel>/<stem>.npz``
(same relative path).  Finished stems are skipped, so an interrupted run resumes; files are
written atomically.  A finished stem whose landmarks are not its ``.pts`` as read now (made
before session 28's .pts x origin, or from an annotation corrected since) is done again.

The ``.npz`` format (H,W = the image size; F = annotated faces in the image):

==================  =================  ===================================================
``uv``              (2,H,W) float16    template (u_h, u_v) in [0,1]; NaN off the faces
``depth``           (H,W) float16      normalised depth Z in [0,1] per face (1 = nearest
                                       the camera); NaN off the faces
``mask``            (H,W) bool         pixels covered by an annotated face's fitted mesh
``parts``           (H,W) uint8        part labels (values in ``tracker/parts.py``), 0 off
``ignore``          (H,W) bool         pixels that must not contribute to any loss: faces
                                       found by dlib's HOG detector that nobody annotated
``landmarks``       (F,68,2) float32   annotated points, 0-based pixels
``fitted``          (F,68,2) float32   the fitted model's landmarks, 0-based pixels
``face_index``      () int             which of the F faces this stem's ``.pts`` holds
``scale``           (F,) float32       weak-perspective scale (pixels per mm)
``rotation``        (F,3,3) float32    model -> camera rotation
``translation``     (F,2) float32      image translation (pixels)
``shape_coeffs``    (F,63) float32     shape coefficients (standard deviations)
``expr_coeffs``     (F,6) float32      expression blendshape coefficients
``nme``             (F,) float32       fit reprojection NME (outer-eye-corner normalised)
==================  =================  ===================================================

Faces of one image: AFW (and some Helen) images with several annotated faces are stored once
per face (``NAME_1``, ``NAME_2``...).  Siblings with byte-identical images are merged, so every
map holds all annotated faces with correct mutual occlusion.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tracker import parts as P
from tracker.fileio import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    atomic_save_npz,
    atomic_write_image,
    atomic_write_json,
    list_images,
    read_image,
    safe_output_path,
)
from tracker.fitting import FitResult, MorphableModel, fit_landmarks, load_definition
from tracker.metrics import nme
from tracker.pts import PtsError, beside, pts_beside, pts_files, read_pts
from tracker.templatemaps import render_fits
from training import worker_pool
from training.dataset import ground_truth_offset
from training.sfm import load_sfm
from training.template import ASSET, DEFAULT_SFM, FLIP_PERMUTATION

DETECTOR_MARGIN = 1.4  # dlib boxes cover brows-to-chin; the ignore region must cover the head


@dataclass(frozen=True)
class Template:
    model: MorphableModel
    vertex_uv: np.ndarray
    part_map: np.ndarray


@lru_cache(maxsize=1)
def load_template(sfm_dir: Path = DEFAULT_SFM, asset: Path = ASSET) -> Template:
    with np.load(asset) as z:
        return Template(load_sfm(sfm_dir), z["vertex_uv"].astype(np.float64), z["part_map"])


@lru_cache(maxsize=1)
def _definition():
    return load_definition()


@dataclass(frozen=True)
class DenseGT:
    """Rendered maps of one image (see the module docstring for shapes)."""

    uv: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    parts: np.ndarray
    ignore: np.ndarray


def render_faces(template: Template, fits: list[FitResult], shape: tuple[int, int]) -> DenseGT:
    """Z-buffer all fitted meshes together so that faces occlude each other correctly."""
    uv, depth, mask = render_fits(template.model, template.vertex_uv, fits, shape)
    return DenseGT(uv=uv, depth=depth, mask=mask, parts=P.lookup_parts(uv, template.part_map, mask), ignore=np.zeros(shape, bool))


def hflip_groundtruth(image: np.ndarray, gt: DenseGT, landmarks: np.ndarray) -> tuple[np.ndarray, DenseGT, np.ndarray]:
    """Mirror an image, its maps and its (F,68,2) landmarks: u_h -> 1-u_h, parts and points swapped."""
    w = image.shape[1]
    uv = gt.uv[:, :, ::-1].copy()
    uv[0] = 1.0 - uv[0]
    flipped = DenseGT(
        uv=uv,
        depth=gt.depth[:, ::-1].copy(),
        mask=gt.mask[:, ::-1].copy(),
        parts=P.PART_FLIP[gt.parts[:, ::-1]],
        ignore=gt.ignore[:, ::-1].copy(),
    )
    lm = landmarks[..., FLIP_PERMUTATION, :].copy()
    lm[..., 0] = (w - 1) - lm[..., 0]
    return image[:, ::-1].copy(), flipped, lm


@lru_cache(maxsize=1)
def _detector():
    import dlib

    return dlib.get_frontal_face_detector()


def unannotated_faces(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H,W) bool: detected face regions that do not contain any annotated face's landmarks."""
    h, w = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    upsample = 1 if max(h, w) < 500 else 0
    out = np.zeros((h, w), bool)
    for r in _detector()(gray, upsample):
        x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, DETECTOR_MARGIN * max(x1 - x0, y1 - y0) / 2
        centres = landmarks.mean(axis=1)  # (F,2)
        inside = (np.abs(centres[:, 0] - cx) < half) & (np.abs(centres[:, 1] - cy) < half)
        if inside.any():
            continue
        cv2.ellipse(out.view(np.uint8), (int(cx), int(cy - 0.15 * half)), (int(half * 0.8), int(half)), 0, 0, 360, 1, -1)
    return out


def sibling_stems(pts_path: Path) -> list[Path]:
    """All .pts of the same image: NAME_k siblings whose image bytes are identical."""
    m = re.fullmatch(r"(.+)_(\d+)", pts_path.stem)
    if not m:
        return [pts_path]
    image = _image_for(pts_path)
    if image is None:  # (an AttributeError that stopped the whole pool; review 32)
        return [pts_path]
    digest = _digest(image)
    out = []
    for cand in sorted(pts_path.parent.glob(f"{glob.escape(m.group(1))}_*.[pP][tT][sS]")):
        if re.fullmatch(re.escape(m.group(1)) + r"_\d+", cand.stem):
            img = _image_for(cand)
            if img is not None and _digest(img) == digest:
                out.append(cand)
    return out or [pts_path]


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _image_for(pts_path: Path) -> Path | None:
    """The picture beside a .pts: any kind ``list_images`` reads, its extension in any case."""
    return beside(pts_path.with_suffix(""), IMAGE_EXTENSIONS)


def build_groundtruth(image_path: Path) -> tuple[np.ndarray, DenseGT, dict]:
    """Image, maps and fit arrays for one annotated image (all its annotated faces)."""
    image = read_image(image_path)
    pts_path = pts_beside(image_path)
    siblings = sibling_stems(pts_path)
    landmarks = np.stack([read_pts(p, expected=68) for p in siblings]).astype(np.float64)
    template, definition = load_template(), _definition()
    fits = [fit_landmarks(template.model, definition, lm) for lm in landmarks]
    arrays = dict(
        landmarks=landmarks.astype(np.float32),
        fitted=np.stack([f.fitted for f in fits]).astype(np.float32),
        face_index=np.int64(siblings.index(pts_path) if pts_path in siblings else 0),
        scale=np.array([f.pose.scale for f in fits], np.float32),
        rotation=np.stack([f.pose.rotation for f in fits]).astype(np.float32),
        translation=np.stack([f.pose.translation for f in fits]).astype(np.float32),
        shape_coeffs=np.stack([f.shape_coeffs for f in fits]).astype(np.float32),
        expr_coeffs=np.stack([f.expr_coeffs for f in fits]).astype(np.float32),
        nme=np.array([nme(f.fitted, lm) for f, lm in zip(fits, landmarks)], np.float32),
    )
    if not all(np.isfinite(v).all() for v in arrays.values()):  # e.g. points all in one place: written, it would poison training
        raise ValueError("fit failed (not finite: are the points degenerate?)")
    gt = render_faces(template, fits, image.shape[:2])
    ignore = unannotated_faces(image, landmarks) & ~gt.mask
    gt = DenseGT(gt.uv, gt.depth, gt.mask, gt.parts, ignore)
    return image, gt, arrays


def save_groundtruth(path: Path, gt: DenseGT, arrays: dict) -> None:
    atomic_save_npz(
        path,
        uv=gt.uv.astype(np.float16),
        depth=gt.depth.astype(np.float16),
        mask=gt.mask,
        parts=gt.parts,
        ignore=gt.ignore,
        **arrays,
    )


def draw_iso_lines(image: np.ndarray, uv: np.ndarray, face: np.ndarray, steps: int = 20) -> np.ndarray:
    """A copy of the image with the (2,H,W) UV map's iso-lines: u_h yellow, u_v magenta."""
    uv = np.nan_to_num(uv.astype(np.float32), nan=-1.0)
    iso = image.copy()
    for ch, colour in ((0, (0, 255, 255)), (1, (255, 0, 255))):
        q = np.floor(uv[ch] * steps)
        edge = face & ((q != np.roll(q, 1, 0)) | (q != np.roll(q, 1, 1)))
        iso[edge] = colour
    return iso


def preview(image: np.ndarray, gt: DenseGT, landmarks: np.ndarray, fitted: np.ndarray, width: int = 360) -> np.ndarray:
    """A 2x3 mosaic: UV iso-lines, u_h, u_v, parts, depth, fitted (green) vs annotated (red)."""
    uv = np.nan_to_num(gt.uv, nan=-1.0)
    face = gt.mask

    def colormap(v):
        c = cv2.applyColorMap(np.clip(v * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        out = (image * 0.35).astype(np.uint8)
        out[face] = c[face]
        return out

    iso = draw_iso_lines(image, gt.uv, face)
    iso[gt.ignore] = (iso[gt.ignore] * 0.5 + np.array([0, 0, 128])).astype(np.uint8)
    parts = cv2.addWeighted(image, 0.4, P.colorize_parts(gt.parts), 0.6, 0)
    depth = colormap(np.nan_to_num(gt.depth.astype(np.float32)))
    lms = image.copy()
    r = max(1, int(round(max(image.shape[:2]) / 300)))
    for pts, colour in ((landmarks, (0, 0, 255)), (fitted, (0, 255, 0))):
        for face_pts in pts:
            for x, y in face_pts:
                cv2.circle(lms, (int(round(x)), int(round(y))), r, colour, -1, cv2.LINE_AA)
    # Zoom on the annotated faces: a small face in a large photo would be unreadable.
    lo, hi = landmarks.reshape(-1, 2).min(0), landmarks.reshape(-1, 2).max(0)
    centre, half = (lo + hi) / 2, 0.9 * (hi - lo).max()
    x0, y0 = np.maximum(np.floor(centre - half), 0).astype(int)
    x1, y1 = np.minimum(np.ceil(centre + half), [image.shape[1], image.shape[0]]).astype(int)
    if x1 <= x0 or y1 <= y0:  # the points lie outside the picture: show all of it
        x0, y0, (y1, x1) = 0, 0, image.shape[:2]
    tiles = [t[y0:y1, x0:x1] for t in (iso, colormap(uv[0]), colormap(uv[1]), parts, depth, lms)]
    h = int(round(tiles[0].shape[0] * width / tiles[0].shape[1]))
    tiles = [cv2.resize(t, (width, h), interpolation=cv2.INTER_AREA) for t in tiles]
    return np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])


@dataclass(frozen=True)
class Job:
    image: Path
    out: Path
    preview: Path | None


def _finished(job: Job) -> bool:
    """Whether the job's .npz is there, readable, and made from its .pts as read now (not before
    session 28's .pts x origin, nor from an annotation corrected since: those are done again)."""
    try:
        return job.out.exists() and ground_truth_offset(job.out, pts_beside(job.image)) is None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, PtsError):
        return False


def run_job(job: Job) -> tuple[str, str]:
    """('ok'|'skip'|'error', message) — never raises, so one bad file cannot stop a run."""
    if _finished(job):
        return "skip", ""
    try:
        if not pts_beside(job.image).exists():
            raise PtsError(f"{pts_beside(job.image)}: no .pts beside the image")
        image, gt, arrays = build_groundtruth(job.image)
        save_groundtruth(job.out, gt, arrays)
        if job.preview is not None:
            atomic_write_image(job.preview, preview(image, gt, arrays["landmarks"], arrays["fitted"]))
        return "ok", f"{float(arrays['nme'][int(arrays['face_index'])]):.4f}"
    except (ImageReadError, PtsError, ValueError, OSError) as exc:
        return "error", f"{job.image}: {exc}"


def find_jobs(images: Path, out: Path, preview_dir: Path | None) -> tuple[list[Job], list[str]]:
    """Jobs for every image with a .pts; lines for .pts files whose image is missing, and for
    images whose stem another image already has (both would write one .npz)."""
    jobs, problems = [], []
    first: dict[Path, Path] = {}  # output stem -> the image that writes it
    for image in list_images(images, recursive=True):
        rel = image.relative_to(images).with_suffix("")
        if not pts_beside(image).exists():
            continue  # an image without annotation is not a ground-truth item
        if rel in first:
            problems.append(f"{image}: same stem as {first[rel]}: both would write {rel}.npz (rename one)")
            continue
        first[rel] = image
        jobs.append(
            Job(
                image,
                safe_output_path(out, f"{rel}.npz"),
                safe_output_path(preview_dir, f"{rel}.png") if preview_dir else None,
            )
        )
    have = {pts_beside(j.image) for j in jobs}
    for pts in pts_files(images, recursive=True):
        if pts not in have:
            problems.append(f"{pts}: no image with the same stem")
    return jobs, problems


def summarise(out: Path) -> dict:
    """Fit NME distribution over every finished stem (each annotated face counted once; a NaN
    left by an older version's failed fit is not one)."""
    errors, names = [], []
    for f in sorted(out.rglob("*.npz")):
        with np.load(f) as z:
            error = float(z["nme"][int(z["face_index"])])
        if np.isfinite(error):
            errors.append(error)
            names.append(str(f.relative_to(out).with_suffix("")))
    e = np.array(errors)
    if not len(e):
        return {"faces": 0}
    worst = np.argsort(e)[::-1][:10]
    return {
        "faces": len(e),
        "nme_median": float(np.median(e)),
        "nme_mean": float(e.mean()),
        "nme_p90": float(np.percentile(e, 90)),
        "nme_p99": float(np.percentile(e, 99)),
        "nme_max": float(e.max()),
        "worst": [[names[i], float(e[i])] for i in worst],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.groundtruth", description="Dense UV/depth/parts ground truth from 3DMM fits.")
    ap.add_argument("--images", type=Path, required=True, help="folder of <stem>.jpg|png + <stem>.pts (searched recursively)")
    ap.add_argument("--out", type=Path, required=True, help="output folder for <stem>.npz")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (2 uses both cores here)")
    ap.add_argument("--preview", type=Path, default=None, help="also write preview PNGs here")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    if not args.images.is_dir():
        print(f"error: {args.images}: not a folder", file=sys.stderr)
        return 2
    jobs, problems = find_jobs(args.images, args.out, args.preview)
    if args.limit:
        jobs = jobs[: args.limit]
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    if not jobs:
        print(f"error: {args.images}: no images with .pts annotations", file=sys.stderr)
        return 1
    try:  # once, here: without it every picture failed with the same line (user test 23)
        load_template(), _definition()
    except (OSError, ValueError) as exc:
        print(f"error: the 3D template (Surrey Face Model, {DEFAULT_SFM}) cannot be loaded: {exc}", file=sys.stderr)
        return 2
    counts = {"ok": 0, "skip": 0, "error": len(problems)}
    t0 = time.time()
    with worker_pool(max(1, args.jobs)) as pool:
        for status, msg in tqdm(pool.map(run_job, jobs, chunksize=4), total=len(jobs), unit="img", file=sys.stderr):
            counts[status] += 1
            if status == "error":
                tqdm.write(f"skipped: {msg}", file=sys.stderr)
    elapsed = time.time() - t0
    stats = summarise(args.out)
    stats["seconds_this_run"] = round(elapsed, 1)
    stats["images_this_run"] = counts["ok"]
    atomic_write_json(args.out / "summary.json", stats)
    print(
        f"done: {counts['ok']} written, {counts['skip']} already done, {counts['error']} skipped "
        f"in {elapsed:.1f}s; fit NME over {stats.get('faces', 0)} faces: "
        + ", ".join(f"{k[4:]}={v:.4f}" for k, v in stats.items() if k.startswith("nme_"))
    )
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
