"""Dense maps of the 3D template fitted to a face's final landmarks: where parts and the
face-transfer textures are read from when ``TrackerConfig.template_maps`` is on.

The network's UV is accurate on the whole but soft at the small parts' edges (the lips, the eyes,
the open mouth), where a part is a few pixels wide: transferred through it, the parts reach 69.1
mean IoU on val, under the 70.8 of a segmenter trained for them (22 attempts to close that gap by
training, docs/RESULTS.md).  The refined landmarks are far more precise there (median 2.8% of the
eye distance), and the ground truth itself is the template fitted to annotated landmarks
(``training.groundtruth``).  So the same fit, run on the tracker's own final landmarks and rendered
in the face's crop, gives maps whose part edges sit where the landmarks put them: val parts 74.9
(``python -m training.evaluate parts --landmarks DIR``).  The network's maps stay in
``FaceResult.maps`` (the landmarks are read from them; ``images --save-maps`` writes them).

The fit is ``tracker.fitting.fit_landmarks`` with 3 iterations instead of the ground truth's 8
(the same val parts, 74.9, in half the time); its 63 shape components all stay (20: 73.4).
Numpy only, ~20 ms a face at the 128-px crop, so off unless parts or a transfer are asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracker.densemaps import DenseMaps
from tracker.fitting import FitOptions, FitResult, LandmarkDefinition, MorphableModel, fit_landmarks, load_definition
from tracker.render import rasterize

FACE_MODEL = "face_model.npz"  # the template's shape model (``python -m training.template`` writes it)
RUNTIME_FIT = FitOptions(iterations=3)


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
    the (size, size) crop: UV, the face's mask as its foreground (0 or 1), depth."""
    points = np.asarray(points, np.float64)
    known = np.isfinite(points).all(axis=1)
    fit = fit_landmarks(face_model.model, face_model.definition, np.where(known[:, None], points, 0.0), RUNTIME_FIT,
                        point_weights=known.astype(np.float64))
    uv, depth, mask = render_fits(face_model.model, face_model.vertex_uv, [fit], (size, size))
    return DenseMaps(np.nan_to_num(uv).astype(np.float32), mask.astype(np.float32), np.nan_to_num(depth).astype(np.float32))
