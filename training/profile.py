"""Face profiling: new out-of-plane views of the training faces with exact ground truth.

``python -m training.profile --gt data/gt --out data/gt_profiled --views N [--jobs 2]``

The method of Zhu et al., "Face Alignment Across Large Poses: A 3D Solution" (CVPR 2016), the
one behind 300W-LP.  For every face of ``splits/train.txt`` (val stays real faces) the 3DMM fit
stored by ``training.groundtruth`` is turned in 3D (yaw, mostly towards a larger |yaw| as in
300W-LP, plus some pitch) about a point ~9 cm behind the nose tip (the head's axis, so the face
also moves sideways as a real head does) and the image is re-rendered:

* **face**: the fitted mesh, z-buffered (``tracker.render``), each vertex textured from where it
  projected in the source image.  Vertices the face itself hid in the source (``vertex_visibility``)
  take their mirror vertex's texture (``texture_sources``).
* **surroundings**: a grid of anchors around the face (hair, ears, neck, background) is lifted
  to 3D with the depth of the nearest face pixel and turned with the head, blended smoothly into
  the fixed image beyond ~0.8 face sizes (``background_mesh``).  The grid is one connected mesh
  whose border does not move, so the new view has no holes; the face is drawn over it.
* **ground truth**: the new view's pose is known exactly, so its maps are rendered by
  ``training.groundtruth.render_faces`` and its landmarks re-derived: the 17 jaw points by
  landmark marching for the new pose (``tracker.fitting.march_jaw``), the 51 others by carrying
  the *annotated* points along with the surface (each is lifted onto the tangent plane of the
  fitted surface at its model landmark, ``lift_landmarks``), so the annotators' convention
  survives and the fit's own error (median 2.9% NME) is not baked into the new labels.

Output, beside the source's relative path: ``OUT/<rel>_p<k>.jpg`` (the view, same size as the
source image), ``.pts`` (68 points) and ``.npz`` in the format of ``training.groundtruth`` with
one face (``face_index`` 0; the fit arrays describe the new pose) plus ``source`` (the source
image's relative path), ``view`` (k) and ``view_yaw_pitch`` (the applied rotation, degrees).
Other faces of the source image become ``ignore``.  ``OUT/splits/train.txt`` lists the finished
views, so OUT is both a data root and a ground-truth root for ``training.dataset.build_cache``
and ``training.mdm.build_cache``.  View k of a face depends only on (seed, face, k), never on
N, so ``--views 5`` after ``--views 3`` adds views 4-5.  The npz is written last: a view is
finished when its npz exists, and an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import glob
import re
import sys
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tracker.crop import roi_from_landmarks
from tracker.fileio import (
    ImageReadError,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    read_image,
    safe_output_path,
)
from tracker.fitting import FitResult, LandmarkDefinition, Pose, landmark_points, march_jaw, project
from tracker.metrics import nme
from tracker.pts import PtsError, pts_beside, write_pts
from tracker.render import rasterize
from tracker.templatemaps import project_mesh
from training import worker_pool
from training.dataset import check_ground_truth
from training.groundtruth import ASSET, DenseGT, Template, _definition, draw_iso_lines, load_template, render_faces
from training.template import CYLINDER_AXIS_Z, DEFAULT_300W

FLIP = np.array([1.0, -1.0, 1.0])  # model space (y up) <-> image space (y down)
FACING = 0.5  # |cos| between a vertex normal and the viewing direction for "faces the camera"
GRAZING = 0.25  # |cos| below which the source saw a vertex too obliquely to texture it


@dataclass(frozen=True)
class ProfileOptions:
    max_yaw: float = 60.0  # degrees: the views' |yaw| spans [|source yaw| + min_step, max_yaw]
    min_step: float = 10.0  # degrees: the smallest yaw change
    max_pitch: float = 12.0  # degrees: pitch change uniform in [-max_pitch, max_pitch]
    pivot_z: float = CYLINDER_AXIS_Z  # mm behind the nose tip: the head's turning axis
    carry_near: float = 0.1  # face sizes: surroundings this close turn rigidly with the head...
    carry_far: float = 0.8  # ...and from this far on stay where they are
    grid_cells: float = 20.0  # background anchors per face size
    max_fit_nme: float = 0.08  # a face whose fit is worse than this is skipped
    seed: int = 0


@dataclass(frozen=True)
class View:
    index: int  # k >= 1
    yaw: float  # applied rotation, degrees (yaw > 0 turns the face towards the image right)
    pitch: float


def van_der_corput(k: int) -> float:
    """k-th point (k >= 1) of the base-2 van der Corput sequence: 1/2, 1/4, 3/4, 1/8, ..."""
    out, denom = 0.0, 1.0
    while k:
        denom *= 2
        k, bit = divmod(k, 2)
        out += bit / denom
    return out


def choose_view(source_yaw: float, key: str, index: int, options: ProfileOptions = ProfileOptions()) -> View:
    """The rotation of view `index` of face `key`: deterministic, independent of how many views.

    The target |yaw| runs through [|yaw|+min_step, max_yaw] (at least min_step wide, so a face
    near max_yaw may go past it) in van der Corput order, jittered within its stratum, so any
    first N views spread over the range.  A face already within min_step of max_yaw is turned
    back towards frontal instead; a near-frontal face (|yaw| < 5) turns either way.
    """
    rng = np.random.default_rng([options.seed, zlib.crc32(key.encode()), index])
    jitter, coin, pitch = rng.uniform(-0.5, 0.5), rng.random(), rng.uniform(-1.0, 1.0)
    f = van_der_corput(index) + jitter / 2 ** (int(np.log2(index)) + 1)
    a = abs(source_yaw)
    side = (1.0 if coin < 0.5 else -1.0) if a < 5.0 else float(np.sign(source_yaw))
    if a + options.min_step <= options.max_yaw:
        delta = side * (options.min_step + f * max(options.max_yaw - a - options.min_step, options.min_step))
    else:
        delta = -side * (options.min_step + f * max(min(a, options.max_yaw) - 2 * options.min_step, 0.0))
    return View(index, float(delta), float(pitch * options.max_pitch))


def rotation_delta(yaw: float, pitch: float) -> np.ndarray:
    """(3,3) camera-space rotation that adds `yaw` then `pitch` degrees (``Pose.yaw_pitch_roll``'s signs)."""
    y, p = np.radians(yaw), np.radians(pitch)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


@dataclass(frozen=True)
class HeadTurn:
    """The head turned by `delta` about `pivot` (model space): the new pose, and the same motion
    as an affine map of image-space points (x, y, depth) in pixels."""

    pose: Pose
    matrix: np.ndarray  # (3,3)
    centre: np.ndarray  # (3,) the pivot in image space (it does not move)

    def move(self, points: np.ndarray) -> np.ndarray:
        return (points - self.centre) @ self.matrix.T + self.centre


def turn_head(pose: Pose, pivot: np.ndarray, delta: np.ndarray) -> HeadTurn:
    rotated = delta @ pose.rotation
    centre = pose.scale * FLIP * (pose.rotation @ pivot) + np.r_[pose.translation, 0.0]
    translation = centre[:2] - pose.scale * (FLIP * (rotated @ pivot))[:2]
    return HeadTurn(Pose(pose.scale, rotated, translation), FLIP[:, None] * delta * FLIP[None, :], centre)


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(V,3) unit normals (area-weighted; the sign is irrelevant to every use here)."""
    p = points[triangles]
    face = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n = np.zeros_like(points)
    for i in range(3):
        np.add.at(n, triangles[:, i], face)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def vertex_visibility(points: np.ndarray, depth_map: np.ndarray, tolerance: float) -> np.ndarray:
    """(V,) True where a vertex (x, y, depth) is on the z-buffered surface, not hidden behind it."""
    h, w = depth_map.shape
    px = np.round(points[:, :2]).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    seen = np.full(len(points), np.nan)
    seen[inside] = depth_map[px[inside, 1], px[inside, 0]]
    return inside & (points[:, 2] >= np.nan_to_num(seen, nan=np.inf) - tolerance)


def texture_sources(points: np.ndarray, visible: np.ndarray, facing: np.ndarray, symmetry: np.ndarray,
                    triangles: np.ndarray, iterations: int = 150) -> np.ndarray:
    """(V,2) where each vertex takes its colour from in the source image.

    A visible vertex: where it is.  A vertex the face itself hid: its mirror vertex's place when
    the mirror faces the camera (the face's own other side; a mirror seen edge-on would paste
    the outline's mixed pixels as islands), otherwise its visible neighbours' places, diffused
    over the mesh (the outline's texture stretched, as 300W-LP's meshes do).
    """
    src = points[:, :2].copy()
    swap = ~visible & visible[symmetry] & facing[symmetry]
    src[swap] = points[symmetry[swap], :2]
    free = ~(visible | swap)
    if free.any() and not free.all():
        a = np.r_[triangles[:, 0], triangles[:, 1], triangles[:, 2], triangles[:, 1], triangles[:, 2], triangles[:, 0]]
        b = np.r_[triangles[:, 1], triangles[:, 2], triangles[:, 0], triangles[:, 0], triangles[:, 1], triangles[:, 2]]
        degree = np.maximum(np.bincount(a, minlength=len(src)), 1)
        for _ in range(iterations):  # Jacobi sweeps of the mesh Laplacian, the known sources fixed
            mean = np.stack([np.bincount(a, weights=src[b, i], minlength=len(src)) for i in range(2)], 1) / degree[:, None]
            src[free] = mean[free]
    return src


def lift_landmarks(annotated: np.ndarray, points: np.ndarray, normals: np.ndarray, definition: LandmarkDefinition) -> np.ndarray:
    """(68,3) annotated points in 3D (image space): each on the tangent plane of the fitted surface
    at its model landmark.  The offset from the model landmark is the fit's residual (a few
    pixels), so a first-order lift is accurate; steep tangent planes are clamped."""
    model = landmark_points(points, definition.vertices, definition.weights)
    n = landmark_points(normals, definition.vertices, definition.weights)
    r = annotated - model[:, :2]
    nz = np.where(np.abs(n[:, 2]) < 1e-3, 1e-3, n[:, 2])
    dz = -(n[:, 0] * r[:, 0] + n[:, 1] * r[:, 1]) / nz
    limit = 2.0 * np.linalg.norm(r, axis=1)
    return np.c_[annotated, model[:, 2] + np.clip(dz, -limit, limit)]


@dataclass(frozen=True)
class Background:
    """A grid of anchors around the face, lifted to 3D.  points (G,3) image space (x, y, depth);
    carry (G,) in [0,1]: how much of the head's motion an anchor follows; sources (G,2): where
    its texture comes from; triangles (T,3)."""

    points: np.ndarray
    carry: np.ndarray
    sources: np.ndarray
    triangles: np.ndarray


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def background_mesh(face_mask: np.ndarray, face_depth: np.ndarray, face_size: float, options: ProfileOptions) -> Background:
    """Anchors over the region the head's motion reaches; every pixel outside it stays put.

    Depth: inside the face, the face's own; outside, the depth of the nearest face pixel (ears,
    hair and neck continue the face's outline).  `carry` is 1 within carry_near face sizes of
    the face, falls smoothly to 0 at carry_far, and is 0 on the image border, so the grid's
    outline is fixed and the warped grid still tiles the region: no holes.  Anchors on the face
    take their texture from the nearest pixel outside it: the grid only shows where the face
    recedes (its far side turning away), and there it must show the surroundings, not skin.
    """
    h, w = face_mask.shape
    reach = options.carry_far * face_size
    ys, xs = np.nonzero(face_mask)
    x0, x1 = max(xs.min() - reach, 0.0), min(xs.max() + reach, w - 1.0)
    y0, y1 = max(ys.min() - reach, 0.0), min(ys.max() + reach, h - 1.0)
    step = face_size / options.grid_cells
    nx, ny = max(int(np.ceil((x1 - x0) / step)), 1) + 1, max(int(np.ceil((y1 - y0) / step)), 1) + 1
    gx, gy = np.meshgrid(np.linspace(x0, x1, nx), np.linspace(y0, y1, ny))
    gx, gy = gx.ravel(), gy.ravel()
    dist, labels = cv2.distanceTransformWithLabels((~face_mask).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    nearest = np.flatnonzero(face_mask.ravel())[labels.ravel() - 1].reshape(h, w)  # labels number zero pixels in scan order
    depth = face_depth.ravel()[nearest]
    ix, iy = np.round(gx).astype(np.int64), np.round(gy).astype(np.int64)
    carry = 1.0 - smoothstep((dist[iy, ix] - options.carry_near * face_size) / ((options.carry_far - options.carry_near) * face_size))
    border = np.minimum.reduce([gx, w - 1 - gx, gy, h - 1 - gy])
    carry = carry * smoothstep(border / max(0.1 * face_size, 1.0))
    i = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    sources = np.stack([gx, gy], 1)
    grown = cv2.dilate(face_mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    on_face = grown[iy, ix] > 0
    if on_face.any() and not grown.all():
        _, labels = cv2.distanceTransformWithLabels(grown, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        outside = np.flatnonzero(grown.ravel() == 0)[labels[iy[on_face], ix[on_face]] - 1]
        sources[on_face] = np.stack([outside % w, outside // w], 1)
    return Background(np.stack([gx, gy, depth[iy, ix]], 1), carry, sources, triangles)


@dataclass(frozen=True)
class Scene:
    """A source face lifted to 3D: what all of its views share.

    points (V,3) the fitted mesh in image space; sources (V,2) each vertex's texture position;
    landmarks (68,3) the annotated points lifted to 3D; context (H,W) bool: other faces and
    ignored regions of the source (they become `ignore` in every view); face_mask (H,W) bool:
    the face in the source; face_size: the side of its landmarks' bounding box (pixels)."""

    image: np.ndarray
    fit: FitResult
    points: np.ndarray
    sources: np.ndarray
    landmarks: np.ndarray
    background: Background
    context: np.ndarray
    pivot: np.ndarray  # (3,) model space
    face_mask: np.ndarray
    face_size: float


@lru_cache(maxsize=1)
def _symmetry() -> np.ndarray:
    with np.load(ASSET) as z:
        return z["symmetry"].astype(np.int64)


def fit_from_groundtruth(z) -> tuple[FitResult, np.ndarray]:
    """The stored fit and annotated (68,2) landmarks of a ground-truth npz's own face."""
    f = int(z["face_index"])
    pose = Pose(float(z["scale"][f]), z["rotation"][f].astype(np.float64), z["translation"][f].astype(np.float64))
    d = _definition()
    fit = FitResult(pose, z["shape_coeffs"][f].astype(np.float64), z["expr_coeffs"][f].astype(np.float64),
                    d.vertices, d.weights, z["fitted"][f].astype(np.float64))
    return fit, z["landmarks"][f].astype(np.float64)


def build_scene(image: np.ndarray, gt: dict, template: Template, options: ProfileOptions = ProfileOptions()) -> Scene:
    """Lift one ground-truth face (arrays of a ``training.groundtruth`` npz) to 3D."""
    model, definition = template.model, _definition()
    fit, annotated = fit_from_groundtruth(gt)
    pts, z = project_mesh(model, fit)
    points = np.c_[pts, z]
    raster = rasterize(pts, z, model.triangles, image.shape[:2])
    mask = raster.covered
    if not mask.any():
        raise ValueError("the fitted face lies outside the image")
    face_size = float(np.ptp(annotated, axis=0).max())
    visible = vertex_visibility(points, raster.depth, 0.03 * face_size)
    normals = vertex_normals(points, model.triangles)
    cos = np.abs(normals[:, 2])
    # Seen nearly edge-on, a vertex's few source pixels would be smeared over the whole area it
    # covers in the new view (often hair over the side of the face): treat it as hidden.
    visible &= cos > GRAZING
    facing = cos > FACING
    centroid_y = landmark_points(model.mean, definition.vertices, definition.weights)[:, 1].mean()
    return Scene(
        image=image,
        fit=fit,
        points=points,
        sources=texture_sources(points, visible, facing, _symmetry(), model.triangles),
        landmarks=lift_landmarks(annotated, points, normals, definition),
        background=background_mesh(mask, raster.depth, face_size, options),
        context=(gt["mask"] & ~mask) | gt["ignore"],
        pivot=np.array([0.0, centroid_y, options.pivot_z]),
        face_mask=mask,
        face_size=face_size,
    )


def render_view(scene: Scene, template: Template, view: View) -> tuple[np.ndarray, DenseGT, dict]:
    """The rotated view: image (H,W,3), its maps, and the arrays of its npz (one face)."""
    model, definition = template.model, _definition()
    turn = turn_head(scene.fit.pose, scene.pivot, rotation_delta(view.yaw, view.pitch))
    verts = model.instance(scene.fit.shape_coeffs, scene.fit.expr_coeffs)
    idx, w = march_jaw(verts, turn.pose, definition, definition.vertices, definition.weights)
    fitted = project(landmark_points(verts, idx, w), turn.pose)
    fit = FitResult(turn.pose, scene.fit.shape_coeffs, scene.fit.expr_coeffs, idx, w, fitted)
    landmarks = turn.move(scene.landmarks)[:, :2]
    landmarks[definition.jaw] = fitted[definition.jaw]  # the jaw is the outline of the new pose

    shape = scene.image.shape[:2]
    face_pts, face_z = project_mesh(model, fit)
    bg = scene.background
    moved = turn.move(bg.points)
    bg_pts = bg.points + bg.carry[:, None] * (moved - bg.points)
    # The face is drawn over the surroundings wherever both land: all of them sink below it.
    sink = bg_pts[:, 2].max() - face_z.min() + 1.0
    triangles = np.r_[model.triangles, bg.triangles + model.n_vertices]
    raster = rasterize(np.r_[face_pts, bg_pts[:, :2]], np.r_[face_z, bg_pts[:, 2] - sink], triangles, shape)
    src = raster.interpolate(np.r_[scene.sources, bg.sources], triangles)
    gy, gx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    hole = ~raster.covered  # outside the moving region: the source pixel itself
    src[hole, 0], src[hole, 1] = gx[hole], gy[hole]
    image = cv2.remap(scene.image, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    context = cv2.remap(scene.context.astype(np.uint8), src[..., 0], src[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE) > 0

    gt = render_faces(template, [fit], shape)
    gt = DenseGT(gt.uv, gt.depth, gt.mask, gt.parts, context & ~gt.mask)
    arrays = dict(
        landmarks=landmarks[None].astype(np.float32),
        fitted=fitted[None].astype(np.float32),
        face_index=np.int64(0),
        scale=np.array([fit.pose.scale], np.float32),
        rotation=fit.pose.rotation[None].astype(np.float32),
        translation=fit.pose.translation[None].astype(np.float32),
        shape_coeffs=fit.shape_coeffs[None].astype(np.float32),
        expr_coeffs=fit.expr_coeffs[None].astype(np.float32),
        nme=np.array([nme(fitted, landmarks)], np.float32),
        view=np.int64(view.index),
        view_yaw_pitch=np.array([view.yaw, view.pitch], np.float32),
    )
    return image, gt, arrays


# --- batch ------------------------------------------------------------------------------------


def view_stem(rel: str, k: int) -> str:
    return f"{Path(rel).with_suffix('')}_p{k}"


def view_done(out: Path, rel: str, k: int) -> bool:
    stem = view_stem(rel, k)
    return all(safe_output_path(out, f"{stem}{ext}").exists() for ext in (".jpg", ".pts", ".npz"))


@dataclass(frozen=True)
class Job:
    rel: str  # the source image, relative to the 300-W folder
    data: Path
    gt: Path
    out: Path
    views: int
    options: ProfileOptions


def run_job(job: Job) -> tuple[str, str, int]:
    """(status 'ok'|'skip'|'error', message, views written) — never raises."""
    todo = [k for k in range(1, job.views + 1) if not view_done(job.out, job.rel, k)]
    if not todo:
        return "skip", "", 0
    gt_path = (job.gt / job.rel).with_suffix(".npz")
    try:
        if not gt_path.exists():
            raise ValueError(f"no ground truth {gt_path} (run training.groundtruth first)")
        check_ground_truth(gt_path, pts_beside(job.data / job.rel))  # (views inherit its landmarks)
        with np.load(gt_path) as z:
            gt = {k: z[k] for k in z.files}
        f = int(gt["face_index"])
        if float(gt["nme"][f]) > job.options.max_fit_nme:
            raise ValueError(f"fit NME {float(gt['nme'][f]):.3f} > {job.options.max_fit_nme}: too poor to turn")
        image = read_image(job.data / job.rel)
        if image.shape[:2] != gt["mask"].shape:
            raise ValueError(f"image size {image.shape[:2]} differs from its ground truth {gt['mask'].shape}")
        template = load_template()
        scene = build_scene(image, gt, template, job.options)
        yaw = scene.fit.pose.yaw_pitch_roll()[0]
        for k in todo:
            view_image, view_gt, arrays = render_view(scene, template, choose_view(yaw, job.rel, k, job.options))
            stem = view_stem(job.rel, k)
            arrays["source"] = np.array(job.rel)
            # The npz goes last: it marks the view finished.
            atomic_write_image(safe_output_path(job.out, f"{stem}.jpg"), view_image)
            write_pts(safe_output_path(job.out, f"{stem}.pts"), arrays["landmarks"][0])
            atomic_save_npz(safe_output_path(job.out, f"{stem}.npz"), uv=view_gt.uv.astype(np.float16),
                            depth=view_gt.depth.astype(np.float16), mask=view_gt.mask, parts=view_gt.parts,
                            ignore=view_gt.ignore, **arrays)
        return "ok", "", len(todo)
    except (ImageReadError, PtsError, ValueError, OSError, KeyError, IndexError) as exc:
        return "error", f"{job.rel}: {exc}", 0


def finished_views(out: Path, rel: str) -> list[int]:
    """The views of a face finished in OUT, whichever runs made them."""
    stem = Path(rel).with_suffix("")
    numbered = re.compile(re.escape(stem.name) + r"_p(\d+)\.npz")
    found = (numbered.fullmatch(p.name) for p in safe_output_path(out, str(stem)).parent.glob(f"{glob.escape(stem.name)}_p*.npz"))
    return [k for k in sorted({int(m.group(1)) for m in found if m}) if view_done(out, rel, k)]


def write_split(out: Path, rels: list[str]) -> list[str]:
    """OUT/splits/train.txt: every finished view of the given faces (a run with a smaller
    ``--limit`` or ``--views`` keeps the others listed), in order."""
    done = [f"{view_stem(rel, k)}.jpg" for rel in rels for k in finished_views(out, rel)]
    atomic_write_text(out / "splits" / "train.txt", "".join(f"{d}\n" for d in done))
    return done


# --- contact sheet ----------------------------------------------------------------------------


def face_tiles(image: np.ndarray, uv: np.ndarray, mask: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The face at (size, size), plain and with its ground truth drawn at tile resolution
    (UV iso-lines, jaw landmarks cyan, the others green)."""
    roi = roi_from_landmarks(landmarks)
    m = cv2.getRotationMatrix2D((0.0, 0.0), 0.0, size / (1.15 * roi.size))
    m[:, 2] = (size - 1) / 2 - m[:, :2] @ np.array([roi.cx, roi.cy])
    warp = dict(dsize=(size, size), borderMode=cv2.BORDER_CONSTANT)
    plain = cv2.warpAffine(image, m, flags=cv2.INTER_LINEAR, **warp)  # (warpAffine's INTER_AREA is bilinear too)
    tile_uv = np.stack([cv2.warpAffine(c.astype(np.float32), m, flags=cv2.INTER_NEAREST, borderValue=np.nan, **warp) for c in uv])
    tile_mask = cv2.warpAffine(mask.astype(np.uint8), m, flags=cv2.INTER_NEAREST, **warp) > 0
    drawn = draw_iso_lines(plain, tile_uv, tile_mask, steps=10)
    for k, (x, y) in enumerate(landmarks @ m[:, :2].T + m[:, 2]):
        cv2.circle(drawn, (int(round(x)), int(round(y))), 2, (255, 255, 0) if k < 17 else (0, 255, 0), -1, cv2.LINE_AA)
    return plain, drawn


def contact_sheet(data: Path, gt_root: Path, out: Path, rels: list[str], views: int, tile: int = 160) -> np.ndarray:
    """Two rows per face: the source then its views, plain and with their ground truth."""
    rows = []
    for rel in rels:
        items = [(data / rel, (gt_root / rel).with_suffix(".npz"), None)]
        items += [(out / f"{view_stem(rel, k)}.jpg", out / f"{view_stem(rel, k)}.npz", k) for k in range(1, views + 1)]
        plain, drawn = [], []
        for image_path, npz, k in items:
            with np.load(npz) as z:
                f = int(z["face_index"])
                a, b = face_tiles(read_image(image_path), z["uv"], z["mask"], z["landmarks"][f], tile)
                label = "source" if k is None else "yaw {:+.0f} pitch {:+.0f}".format(*z["view_yaw_pitch"])
            cv2.putText(a, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(a, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
            plain.append(a)
            drawn.append(b)
        rows += [np.hstack(plain), np.hstack(drawn)]
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.profile", description="Face profiling: rotated training views with exact ground truth.")
    ap.add_argument("--gt", type=Path, required=True, help="ground truth of training.groundtruth (read only)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (views, .pts, .npz, splits/train.txt)")
    ap.add_argument("--views", type=int, default=2, help="views per face (view k is the same whatever N)")
    ap.add_argument("--data", type=Path, default=DEFAULT_300W, help="300-W folder with splits/train.txt")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (2 uses both cores here)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N faces (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet (JPEG) here")
    ap.add_argument("--sheet-faces", type=int, default=4, help="faces on the contact sheet (evenly spaced over the split)")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    split = args.data / "splits" / "train.txt"
    if not split.is_file():
        print(f"error: {split}: no training split", file=sys.stderr)
        return 2
    if not args.gt.is_dir():
        print(f"error: {args.gt}: not a folder (run training.groundtruth first)", file=sys.stderr)
        return 2
    if args.views < 1:
        print("error: --views must be at least 1", file=sys.stderr)
        return 2
    faces = split.read_text().split()
    rels = faces[: args.limit] if args.limit else faces
    options = ProfileOptions(seed=args.seed)
    jobs = [Job(rel, args.data, args.gt, args.out, args.views, options) for rel in rels]
    counts = {"ok": 0, "skip": 0, "error": 0}
    written, t0 = 0, time.time()
    skipped = []
    with worker_pool(max(1, args.jobs)) as pool:
        for status, msg, n in tqdm(pool.map(run_job, jobs, chunksize=2), total=len(jobs), unit="face", file=sys.stderr):
            counts[status] += 1
            written += n
            if status == "error":
                skipped.append(msg)
                tqdm.write(f"skipped: {msg}", file=sys.stderr)
    elapsed = time.time() - t0
    done = write_split(args.out, faces)
    atomic_write_json(args.out / "summary.json", {
        "views": len(done), "faces": len(rels), "views_per_face": args.views, "seed": args.seed,
        "views_this_run": written, "seconds_this_run": round(elapsed, 1), "skipped": skipped,
    })
    if args.sheet is not None:
        ready = [r for r in rels if all(view_done(args.out, r, k) for k in range(1, args.views + 1))]
        pick = [ready[i] for i in np.linspace(0, len(ready) - 1, min(args.sheet_faces, len(ready))).round().astype(int)] if ready else []
        if pick:
            ok, jpeg = cv2.imencode(".jpg", contact_sheet(args.data, args.gt, args.out, pick, args.views), [cv2.IMWRITE_JPEG_QUALITY, 85])
            atomic_write_bytes(args.sheet, jpeg.tobytes())
    print(f"done: {written} views written for {counts['ok']} faces, {counts['skip']} faces already done, "
          f"{counts['error']} skipped in {elapsed:.1f}s; {len(done)} views listed in {args.out / 'splits' / 'train.txt'}")
    return 1 if counts["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
