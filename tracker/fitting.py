"""Fit the 3D morphable model to 68 landmarks: annotated ones for the ground truth (paper §2,
``training.groundtruth``), the tracker's final ones for its parts (``tracker.templatemaps``).

Scaled orthographic camera, shape and expression coefficients by regularised linear least
squares, alternating with pose estimation and *landmark marching* for the jaw: a jaw landmark
is annotated on the visible outline of the face, so at every iteration it is matched to the
silhouette vertex of a horizontal "parallel" of candidate vertices (the one furthest out in the
image), as in Zhu et al., "Face Alignment Across Large Poses" (CVPR 2016).

We wrote the fitter instead of calling eos's ``fit_shape_and_pose`` because eos matches only
one side's contour and takes the pose from an affine camera on all points; a joint linear solve
of shape+expression with marching on both sides is a few lines of numpy, runs in ~2 ms and is
easy to test against a known answer (``tests/test_fitting.py``).

Conventions: model space is the SFM's (mm, y up, z towards the viewer).  Image points are
0-based pixels with y down.  ``project`` maps model points to the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracker.assets import ASSETS
from tracker.pose import FLIP_Y, Pose, estimate_pose, project  # noqa: F401 - Pose, project re-exported for training code


@dataclass(frozen=True)
class MorphableModel:
    """Shape model in the SFM's own units (millimetres, y up, z towards the viewer).

    mean: (V,3); shape_basis: (V,3,S) orthonormal basis scaled by sqrt(eigenvalue) so that
    coefficients are in standard deviations; expression_basis: (V,3,E) raw blendshape offsets;
    triangles: (T,3) int32 vertex indices.
    """

    mean: np.ndarray
    shape_basis: np.ndarray
    expression_basis: np.ndarray
    expression_names: tuple[str, ...]
    triangles: np.ndarray

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    def subset(self, vertices: np.ndarray) -> MorphableModel:
        """The model restricted to some vertices (no triangles): fits only need a few."""
        return MorphableModel(
            self.mean[vertices], self.shape_basis[vertices], self.expression_basis[vertices], self.expression_names,
            np.zeros((0, 3), np.int32),
        )

    def instance(self, shape_coeffs: np.ndarray | None = None, expr_coeffs: np.ndarray | None = None) -> np.ndarray:
        """Vertices (V,3) for the given coefficients (missing trailing coefficients are 0)."""
        v = self.mean.copy()
        if shape_coeffs is not None and len(shape_coeffs):
            v += self.shape_basis[:, :, : len(shape_coeffs)] @ np.asarray(shape_coeffs, float)
        if expr_coeffs is not None and len(expr_coeffs):
            v += self.expression_basis[:, :, : len(expr_coeffs)] @ np.asarray(expr_coeffs, float)
        return v


@dataclass(frozen=True)
class LandmarkDefinition:
    """The 68 landmarks as weighted sums of mesh vertices.

    vertices, weights: (68,3) — landmark k is sum_j weights[k,j] * V[vertices[k,j]].
    jaw: indices (0-based) of the landmarks that march along the outline.
    parallels: for each jaw landmark, the candidate vertex indices of its outline search
    (padded with -1).
    """

    vertices: np.ndarray
    weights: np.ndarray
    jaw: np.ndarray
    parallels: np.ndarray

    def reindexed(self, used: np.ndarray) -> LandmarkDefinition:
        """The same definition with vertex indices into the sub-mesh ``used``."""
        lookup = np.full(max(used.max(), self.parallels.max(initial=-1)) + 2, -1, np.int64)
        lookup[used] = np.arange(len(used))
        return LandmarkDefinition(lookup[self.vertices], self.weights, self.jaw, lookup[self.parallels])


@dataclass(frozen=True)
class FitResult:
    pose: Pose
    shape_coeffs: np.ndarray
    expr_coeffs: np.ndarray
    landmark_vertices: np.ndarray  # (68,3) vertex indices used at convergence (jaw marched)
    landmark_weights: np.ndarray  # (68,3)
    fitted: np.ndarray  # (68,2) projected model landmarks, image pixels


@dataclass(frozen=True)
class FitOptions:
    iterations: int = 8
    # Prior strength: (landmark noise in mm)^2 per unit-variance coefficient.  Tuned on the
    # train split: median NME 2.9% with |coeff| mostly < 3 sd (weaker priors overfit).
    shape_reg: float = 2.0
    expr_reg: float = 4.0
    n_shape: int = 63
    use_jaw: bool = True


def landmark_points(vertices: np.ndarray, idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted3(vertices[idx], weights)


def _weighted3(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_j weights[k,j] * values[k,j,...] over j < 3: the three terms added in order, as
    ``.sum(axis=1)`` does (the same numbers, but for the sign of a sum of three -0.0), without its
    slow reduction over a middle axis."""
    w = weights.reshape(weights.shape + (1,) * (values.ndim - 2))
    return values[:, 0] * w[:, 0] + values[:, 1] * w[:, 1] + values[:, 2] * w[:, 2]


def march_jaw(vertices: np.ndarray, pose: Pose, definition: LandmarkDefinition, idx: np.ndarray, w: np.ndarray):
    """Return (idx, w) with each jaw landmark moved to its parallel's silhouette vertex."""
    idx, w = idx.copy(), w.copy()
    direction = pose.rotation[0]  # model-space direction of the image x axis
    for k, parallel in zip(definition.jaw, definition.parallels):
        cand = parallel[parallel >= 0]
        x = vertices[cand] @ direction
        # The right jaw (landmarks 1-8) is the image-left outline: the smallest image x.
        best = cand[np.argmin(x)] if k < 8 else cand[np.argmax(x)]
        idx[k], w[k] = (best, best, best), (1.0, 0.0, 0.0)
    return idx, w


def _solve_coefficients(model: MorphableModel, image_pts, pose, idx, w, weights, options: FitOptions):
    """Linear least squares for [shape; expression] with a Gaussian prior, pose fixed."""
    r2 = pose.rotation[:2] * FLIP_Y[:, None]
    # the landmark rows first, then joined: joining the whole basis each time cost more than the solve
    basis = np.concatenate([model.shape_basis[idx][..., : options.n_shape], model.expression_basis[idx]], axis=-1)
    lm_basis = _weighted3(basis, w)  # (68,3,C)
    lm_mean = landmark_points(model.mean, idx, w)
    A = np.einsum("ij,kjc->kic", r2, lm_basis)  # (68,2,C), model units
    rhs = (image_pts - pose.translation) / pose.scale - lm_mean @ r2.T
    sw = np.sqrt(weights)[:, None]
    A = (A * sw[..., None]).reshape(-1, A.shape[-1])
    rhs = (rhs * sw).reshape(-1)
    n_expr = model.expression_basis.shape[2]
    reg = np.r_[np.full(options.n_shape, options.shape_reg), np.full(n_expr, options.expr_reg)]
    coeffs = np.linalg.solve(A.T @ A + np.diag(reg), A.T @ rhs)
    return coeffs[: options.n_shape], coeffs[options.n_shape :]


_SUBMODELS: dict[tuple[int, int], tuple] = {}


def _submodel(model: MorphableModel, definition: LandmarkDefinition) -> tuple[np.ndarray, MorphableModel, LandmarkDefinition]:
    """Only the landmark and parallel vertices are ever looked at: the vertices used, the model
    and the definition on them.  Kept for the last few (model, definition) pairs: making it cost
    ~3 ms a fit, a third of the tracker's (``tracker.templatemaps``)."""
    key = (id(model), id(definition))
    hit = _SUBMODELS.get(key)
    if hit is None or hit[0] is not model or hit[1] is not definition:  # the pair is held, so its ids are not reused
        used = np.unique(np.r_[definition.vertices.ravel(), definition.parallels[definition.parallels >= 0]])
        if len(_SUBMODELS) >= 4:
            _SUBMODELS.clear()
        hit = _SUBMODELS[key] = (model, definition, used, model.subset(used), definition.reindexed(used))
    return hit[2:]


def fit_landmarks(
    model: MorphableModel,
    definition: LandmarkDefinition,
    image_pts: np.ndarray,
    options: FitOptions = FitOptions(),
    point_weights: np.ndarray | None = None,
) -> FitResult:
    """Fit pose, shape and expression to (68,2) 0-based image landmarks."""
    image_pts = np.asarray(image_pts, np.float64)
    weights = np.ones(len(image_pts)) if point_weights is None else np.asarray(point_weights, float).copy()
    if not options.use_jaw:
        weights[definition.jaw] = 0.0
    used, model, definition = _submodel(model, definition)
    idx, w = definition.vertices.copy(), definition.weights.copy()
    shape = np.zeros(options.n_shape)
    expr = np.zeros(model.expression_basis.shape[2])
    vertices = model.mean
    for it in range(options.iterations):
        pose = estimate_pose(landmark_points(vertices, idx, w), image_pts, weights)
        if options.use_jaw and it > 0:
            idx, w = march_jaw(vertices, pose, definition, idx, w)
            pose = estimate_pose(landmark_points(vertices, idx, w), image_pts, weights)
        shape, expr = _solve_coefficients(model, image_pts, pose, idx, w, weights, options)
        vertices = model.instance(shape, expr)
    if options.use_jaw:
        idx, w = march_jaw(vertices, pose, definition, idx, w)
    pose = estimate_pose(landmark_points(vertices, idx, w), image_pts, weights)
    fitted = project(landmark_points(vertices, idx, w), pose)
    return FitResult(pose, shape, expr, used[idx], w, fitted)


def load_definition(path: Path = ASSETS / "template.npz") -> LandmarkDefinition:
    """The landmarks on the template's mesh, as ``python -m training.template`` stored them."""
    with np.load(path) as z:
        return LandmarkDefinition(
            z["landmark_vertices"].astype(np.int64),
            z["landmark_weights"].astype(np.float64),
            z["jaw"].astype(np.int64),
            z["jaw_parallels"].astype(np.int64),
        )
