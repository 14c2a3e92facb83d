"""Dense maps of the 3D template fitted to a face's final landmarks: where parts and the
face-transfer textures are read from when ``TrackerConfig.template_maps`` is on.

The network's UV is accurate on the whole but soft at the small parts' edges (the lips, the eyes,
the open mouth), where a part is a few pixels wide: transferred through it, the parts reach 69.1
mean IoU on val, under the 70.8 of a segmenter trained for them (22 attempts to close that gap by
training, docs/RESULTS.md).  The refined landmarks are far more precise there (median 2.8% of the
eye distance), and the ground truth itself is the template fitted to annotated landmarks
(``training.groundtruth``).  So the same fit, run on the tracker's own final landmarks and rendered
in the face's crop, gives maps whose part edges sit where the landmarks put them: val parts 74.6
(``python -m training.evaluate parts --landmarks DIR``; 74.9 without filling a closed mouth's slit,
``CLOSED_MOUTH_GAP``).  The network's maps stay in
``FaceResult.maps`` (the landmarks are read from them; ``images --save-maps`` writes them).

The fit is ``tracker.fitting.fit_landmarks`` with 3 iterations instead of the ground truth's 8
(the same val parts in half the time); its 63 shape components all stay (20: 73.4).
Numpy only, ~20 ms a face at the 128-px crop (val, ``images --parts``), so off unless parts or a transfer are asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker.densemaps import DenseMaps
from tracker.fitting import FitOptions, FitResult, LandmarkDefinition, MorphableModel, fit_landmarks, load_definition
from tracker.parts import LEFT_EYEBROW, LOWER_LIP, lookup_parts, uv_cells
from tracker.render import rasterize

FACE_MODEL = "face_model.npz"  # the template's shape model (``python -m training.template`` writes it)
RUNTIME_FIT = FitOptions(iterations=3)
# Pixels (crop): inner lips nearer than this are closed.  Filling their slit costs val 0.3 IoU
# (74.9 -> 74.6: the ground truth, rendered from the same mesh, has the slits), 0.5 px 74.6, 1.5 px 74.5.
CLOSED_MOUTH_GAP = 1.0


@dataclass(frozen=True)
class FaceModel:
    """What a fit and its rendering need: the shape model, the landmarks on it, each vertex's UV."""

    model: MorphableModel
    definition: LandmarkDefinition
    vertex_uv: np.ndarray  # (V,2)


def load_face_model(face_model: Path, template: Path) -> FaceModel:
    """From the shape model's file and ``template.npz`` (landmarks, vertex UVs)."""
    with np.load(face_model) as z:
        model = MorphableModel(z["mean"].astype(np.float64), z["shape_basis"].astype(np.float64),
                               z["expression_basis"].astype(np.float64), tuple(str(n) for n in z["expression_names"]),
                               z["triangles"].astype(np.int64))
    with np.load(template) as z:
        vertex_uv = z["vertex_uv"].astype(np.float64)
    return FaceModel(model, load_definition(template), vertex_uv)


def project_mesh(model: MorphableModel, fit: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """The fitted mesh in the image: (V,2) 0-based pixels and (V,) depth in pixels (larger = nearer)."""
    cam = model.instance(fit.shape_coeffs, fit.expr_coeffs) @ fit.pose.rotation.T
    return fit.pose.scale * cam[:, :2] * np.array([1.0, -1.0]) + fit.pose.translation, fit.pose.scale * cam[:, 2]


def render_fits(model: MorphableModel, vertex_uv: np.ndarray, fits: list[FitResult], shape: tuple[int, int]):
    """All fitted meshes z-buffered together (faces occlude each other): (2,H,W) UV and (H,W)
    depth, each face's depth normalised to [0,1] over its own vertices (1 nearest), NaN off the
    faces; and the (H,W) mask of the faces."""
    pts, depth, tris, zn = [], [], [], []
    for i, fit in enumerate(fits):
        p, z = project_mesh(model, fit)
        pts.append(p)
        depth.append(z)
        zn.append((z - z.min()) / max(z.max() - z.min(), 1e-9))
        tris.append(model.triangles + i * model.n_vertices)
    all_tris = np.concatenate(tris)
    raster = rasterize(np.concatenate(pts), np.concatenate(depth), all_tris, shape)
    values = np.concatenate([np.tile(vertex_uv, (len(fits), 1)), np.concatenate(zn)[:, None]], axis=1)
    maps = raster.interpolate(values, all_tris)  # (H,W,3)
    return np.moveaxis(maps[..., :2], -1, 0), maps[..., 2], raster.covered


def template_maps(face_model: FaceModel, points: np.ndarray, size: int) -> DenseMaps:
    """The template fitted to (68,2) landmarks in crop pixels (NaN rows ignored), rendered in
    the (size, size) crop: UV and depth (off the face: the nearest face pixel's), the face's
    mask as its foreground (0 or 1)."""
    points = np.asarray(points, np.float64)
    known = np.isfinite(points).all(axis=1)
    fit = fit_landmarks(face_model.model, face_model.definition, np.where(known[:, None], points, 0.0), RUNTIME_FIT,
                        point_weights=known.astype(np.float64))
    uv, depth, mask = render_fits(face_model.model, face_model.vertex_uv, [fit], (size, size))
    face = mask
    if mouth_gap(points) < CLOSED_MOUTH_GAP:
        # The mesh's mouth is an opening: closed lips left a dashed slit a pixel wide, real lips
        # showing through painted ones.  A 3x3 closing fills gaps of up to 2 px.
        face = mask | cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).astype(bool)
    filled = nearest_inside(np.concatenate([uv, depth[None]]), mask)  # one nearest-pixel search for both
    return DenseMaps(filled[:2], face.astype(np.float32), filled[2])


def mouth_gap(points: np.ndarray) -> float:
    """Mean distance (pixels) between the inner lips' middle points, upper (61-63) and lower
    (67-65, 0-based); NaN where a point is missing."""
    return float(np.mean(np.linalg.norm(points[[61, 62, 63]] - points[[67, 66, 65]], axis=1)))


def nearest_inside(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C,H,W) maps with every pixel outside `mask` given the value of the nearest pixel inside
    it, as float32.  Readers sample the maps bilinearly (the face transfer) or at filled slits:
    a constant outside (0) pulled the UV at the mesh's edges towards the template's corner, and
    colours landed on the wrong part of an unwrapped texture."""
    if not mask.any():
        return np.zeros(maps.shape, np.float32)
    # DIST_LABEL_PIXEL: each zero pixel of the input (here: inside the mask) its own label, in raster order
    _, labels = cv2.distanceTransformWithLabels((~mask).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    source = np.flatnonzero(mask)[labels.ravel() - 1]
    return maps.reshape(maps.shape[0], -1)[:, source].reshape(maps.shape).astype(np.float32)


# The template fitted to the network's dense UV itself rather than to landmarks (``dense_fit``):
# every DENSE_STEP-th foreground pixel in each direction is a correspondence between the image and
# the template point at its UV; the shape prior is scaled by their number over 68 (as strong as a
# landmark fit's), relaxed to DENSE_SHAPE_REG, and each of DENSE_ROUNDS re-weights the points by
# their residual (Huber at DENSE_HUBER x the median): the open mouth's pixels carry the lips' UV.
# Tuned on val parts (``python -m training.evaluate parts --dense-fit``): 1 round 67.4, 3 69.8, 5
# 70.4; shape prior 2.0 69.8, 0.5 70.1, 8.0 68.5 (docs/RESULTS.md, session 37).  Every pixel whose
# UV falls on a small part (brows, eyes, lips: a few pixels wide, where a mean IoU over the parts is
# decided, and the 3-px grid puts a handful of points) is a correspondence too: 70.65 -> 70.92
# (lips only 70.73, with the nose 70.83, those parts on a 2-px grid 70.89; session 38).
DENSE_STEP = 3
DENSE_SMALL_PARTS = tuple(range(LEFT_EYEBROW, LOWER_LIP + 1))
DENSE_ROUNDS = 5
DENSE_SHAPE_REG = 0.5
DENSE_HUBER = 1.5
UV_RASTER = 512  # the template rasterised in UV space at this many cells a side (``uv_lookup``)


@dataclass(frozen=True)
class UVLookup:
    """The template's triangle and barycentric weights at each cell of UV space (row 0: u_v = 1,
    as ``tracker.parts.lookup_parts``); triangle -1 off the template."""

    triangle: np.ndarray  # (R,R) int64
    bary: np.ndarray  # (R,R,3) float32


def uv_lookup(face_model: FaceModel, res: int = UV_RASTER) -> UVLookup:
    uv = face_model.vertex_uv
    raster = rasterize(np.stack([uv[:, 0] * res - 0.5, (1.0 - uv[:, 1]) * res - 0.5], axis=1), np.zeros(len(uv)),
                       face_model.model.triangles, (res, res))
    return UVLookup(raster.triangle, raster.bary)


def dense_fit(face_model: FaceModel, lookup: UVLookup, uv: np.ndarray, fg: np.ndarray, *, part_map: np.ndarray | None = None,
              step: int = DENSE_STEP, rounds: int = DENSE_ROUNDS) -> FitResult | None:
    """The template fitted to a network's (2,H,W) UV at its (H,W) foreground (probability > 0.5),
    in those maps' pixels: every `step`-th pixel in each direction, and with the template's
    `part_map` every pixel of the small parts (``DENSE_SMALL_PARTS``); None where fewer than 20
    foreground pixels fall on the template."""
    if rounds < 1 or step < 1:
        raise ValueError(f"dense_fit: rounds {rounds} and step {step} must be at least 1")
    h, w = fg.shape
    gy, gx = np.mgrid[0:h, 0:w]
    take = (gy % step == 0) & (gx % step == 0)
    if part_map is not None:
        take |= np.isin(lookup_parts(uv, part_map), DENSE_SMALL_PARTS)
    ys, xs = np.nonzero(take & (fg > 0.5) & np.isfinite(uv).all(axis=0))
    rows, cols = uv_cells(uv[0, ys, xs], uv[1, ys, xs], lookup.triangle.shape[0])
    tri = lookup.triangle[rows, cols]
    on = tri >= 0
    if on.sum() < 20:
        return None
    definition = LandmarkDefinition(face_model.model.triangles[tri[on]], lookup.bary[rows[on], cols[on]].astype(np.float64),
                                    np.zeros(0, np.int64), np.zeros((0, 1), np.int64))
    points = np.stack([xs[on], ys[on]], axis=1).astype(np.float64)
    n = len(points) / 68
    options = FitOptions(iterations=4, use_jaw=False, shape_reg=DENSE_SHAPE_REG * n, expr_reg=FitOptions.expr_reg * n)
    weights = np.ones(len(points))
    for _ in range(rounds):
        fit = fit_landmarks(face_model.model, definition, points, options, point_weights=weights)
        residual = np.linalg.norm(fit.fitted - points, axis=1)
        limit = DENSE_HUBER * max(float(np.median(residual)), 0.5)
        weights = np.minimum(1.0, limit / np.maximum(residual, 1e-9))
    return fit


def dense_fit_maps(face_model: FaceModel, lookup: UVLookup, uv: np.ndarray, fg: np.ndarray, *,
                   part_map: np.ndarray | None = None) -> DenseMaps | None:
    """The template fitted to the network's dense UV (``dense_fit``), rendered in its maps' crop:
    UV, depth and a foreground (0 or 1) that is the fitted face's mask inside the network's own
    outline (its foreground with what it encloses): the network finds the face's edge better
    (val parts' "other" 86.3 -> 88.5, mean 70.39 -> 70.65), the fitted mesh the open mouth, which
    the network's foreground fills.  None where it could not be fitted."""
    fit = dense_fit(face_model, lookup, uv, fg, part_map=part_map)
    if fit is None:
        return None
    ruv, depth, mask = render_fits(face_model.model, face_model.vertex_uv, [fit], fg.shape)
    filled = nearest_inside(np.concatenate([ruv, depth[None]]), mask)
    outline = fg > 0.5
    return DenseMaps(filled[:2], (mask & (outline | face_holes(outline))).astype(np.float32), filled[2])


def face_holes(face: np.ndarray) -> np.ndarray:
    """(H,W) bool: the background pixels the face mask encloses (an open mouth's interior),
    i.e. not reachable from the crop's border through background."""
    outside = np.pad(~face, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 2)
    return outside[1:-1, 1:-1] == 1
