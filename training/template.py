"""Build the template assets in UV space: ``python -m training.template``.

From the Surrey Face Model (``shared/template/sfm``) this writes ``tracker/assets/template.npz``
(card: ``tracker/assets/TEMPLATE_CARD.md``) and ``docs/template_uv.png``:

* ``vertex_uv`` (V,2): cylindrical unwrapping of the mean shape (paper §2).  ``u_h`` is the
  angle around a vertical axis through the middle of the head, ``u_v`` the height, both scaled
  to [0,1] over the mesh; the axis lies on the symmetry plane, so mirror vertices map to
  ``u_h <-> 1-u_h``.
* ``symmetry`` (V,): mirror vertex of every vertex.
* ``landmark_vertices`` / ``landmark_weights`` (68,3): every iBUG landmark as a weighted sum of
  vertices.  The two inner-mouth corners (61, 65), which the SFM mapping lacks, are the mean of
  the mouth corner and the two inner-lip points beside it.  The jaw (1-8, 10-17) lies on the
  model contour at the *frontal* pose, at the arc position that best matches near-frontal
  training annotations (calibrated by fitting the model to them with the jaw left out).
* ``jaw_parallels`` (16,P): candidate vertices for landmark marching (see tracker.fitting).
* ``landmark_uv`` (68,2), ``flip_permutation`` (68,), ``part_map`` (R,R) uint8 with the 8 part
  classes of ``tracker.parts`` rasterised in UV space (row 0 = u_v 1, column 0 = u_h 0).
* ``landmark_3d`` (68,3): the mean shape's landmarks in 3D, for head pose at run time.

and, beside it, ``face_model.npz``: the SFM's shape model itself (``mean``, ``shape_basis``,
``expression_basis``, ``expression_names``, ``triangles``; float32), which the tracker fits to a
face's final landmarks for its parts and face transfer (``tracker.templatemaps``).

Everything is deterministic, but the committed ``template.npz`` predates a change in the jaw
calibration's fit: rebuilt with today's code (checked in session 24, the code of then and now alike),
its jaw rows differ (landmark UV by up to 0.0013, the part map not at all).  The committed file is
kept: the ground truth and every model were made with it.  Rerun with ``--out`` elsewhere to compare.
"""
from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tracker import parts as P
from tracker.assets import ASSETS, record
from tracker.fileio import atomic_save_npz, atomic_write_image, atomic_write_text
from tracker.fitting import FitOptions, LandmarkDefinition, fit_landmarks, project
from tracker.pts import pts_beside, read_pts
from tracker.templatemaps import FACE_MODEL
from training import INSTALLED, REPO
from training.sfm import MorphableModel, load_sfm, read_contours, read_landmark_mapping

DEFAULT_SFM = REPO.parent / "shared" / "template" / "sfm"
DEFAULT_300W = REPO.parent / "shared" / "data" / "300w"
ASSET = ASSETS / "template.npz"
PART_RES = 256
CYLINDER_AXIS_Z = -90.0  # mm behind the nose tip: roughly the head's vertical axis
PARALLEL_BAND = 4.0  # mm: half-height of a jaw landmark's marching parallel

JAW = np.r_[0:8, 9:17]  # 0-based jaw landmarks that march (the chin, 8, is a fixed vertex)

# iBUG 68 horizontal-flip permutation (0-based): point k of a flipped face is point FLIP[k].
FLIP_PERMUTATION = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def cylindrical_uv(vertices: np.ndarray, axis_z: float = CYLINDER_AXIS_Z) -> np.ndarray:
    """(V,2) UV in [0,1]: u_h from the angle around the vertical axis x=0, z=axis_z."""
    theta = np.arctan2(vertices[:, 0], vertices[:, 2] - axis_z)
    u_h = 0.5 + theta / (2 * np.abs(theta).max())
    y = vertices[:, 1]
    u_v = (y - y.min()) / (y.max() - y.min())
    return np.stack([u_h, u_v], axis=1)


def mirror_vertices(vertices: np.ndarray) -> np.ndarray:
    """Mirror vertex of each vertex: nearest neighbour of its reflection in x = 0."""
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    d = ((mirrored[:, None, :] - vertices[None, :, :]) ** 2).sum(-1)
    return d.argmin(axis=1)


def _fixed_landmarks(mapping: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(68,3) vertex indices and weights for the landmarks with a fixed vertex."""
    idx = np.zeros((68, 3), np.int64)
    w = np.zeros((68, 3))
    for k, v in mapping.items():
        idx[k - 1], w[k - 1] = v, (1.0, 0.0, 0.0)
    # Inner mouth corners: midway between the mouth corner and the adjacent inner-lip points.
    for corner, upper, lower, target in ((49, 62, 68, 61), (55, 64, 66, 65)):
        idx[target - 1] = (mapping[corner], mapping[upper], mapping[lower])
        w[target - 1] = (0.5, 0.25, 0.25)
    return idx, w


def _contour_point(contour: np.ndarray, position: float) -> tuple[tuple[int, int], tuple[float, float]]:
    """Vertex pair and weights of a fractional position along a contour vertex list."""
    i = int(np.clip(np.floor(position), 0, len(contour) - 2))
    t = float(np.clip(position - i, 0.0, 1.0))
    return (int(contour[i]), int(contour[i + 1])), (1.0 - t, t)


def _closest_position(polyline: np.ndarray, point: np.ndarray) -> float:
    """Fractional index of the point on a 2D polyline closest to `point`."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    d = np.linalg.norm(a + t[:, None] * ab - point, axis=1)
    i = int(d.argmin())
    return i + float(t[i])


def calibrate_jaw_positions(
    model: MorphableModel, definition: LandmarkDefinition, contours: tuple[np.ndarray, np.ndarray], shapes: list[np.ndarray]
) -> np.ndarray:
    """Median contour position of each of the 16 marching jaw landmarks on near-frontal faces.

    Each face is fitted without its jaw points; the annotated jaw points are then projected
    onto the fitted model's contour polyline.  Left and right are averaged (the template is
    symmetric) so that the result respects the flip permutation.
    """
    right, left = contours
    positions = []
    for pts in shapes:
        fit = fit_landmarks(model, definition, pts, FitOptions(use_jaw=False, iterations=4))
        if abs(fit.pose.yaw_pitch_roll()[0]) > 8.0:
            continue
        verts = model.instance(fit.shape_coeffs, fit.expr_coeffs)
        row = [_closest_position(project(verts[right], fit.pose), pts[k]) for k in range(8)]
        row += [_closest_position(project(verts[left], fit.pose), pts[k]) for k in range(9, 17)]
        positions.append(row)
    if len(positions) < 10:
        raise RuntimeError(f"only {len(positions)} near-frontal faces found for jaw calibration")
    med = np.median(np.array(positions), axis=0)
    sym = (med[:8] + med[8:][::-1]) / 2  # landmark k (right) mirrors landmark 16-k (left)
    return np.r_[sym, sym[::-1]]


def jaw_parallels(vertices: np.ndarray, jaw_points: np.ndarray) -> np.ndarray:
    """Candidate silhouette vertices for each jaw landmark, padded with -1.

    A parallel is the strip of vertices at the landmark's height on its side of the face,
    from the midline out to the frontal contour (the outline can only move inwards, towards
    the nose, when that side turns away from the camera).
    """
    rows = []
    for p in jaw_points:
        side = np.sign(p[0])
        sel = (np.abs(vertices[:, 1] - p[1]) < PARALLEL_BAND) & (vertices[:, 0] * side >= 0)
        sel &= np.abs(vertices[:, 0]) <= abs(p[0]) + 1.0
        rows.append(np.flatnonzero(sel))
    width = max(len(r) for r in rows)
    return np.array([np.r_[r, -np.ones(width - len(r), np.int64)] for r in rows], np.int64)


def part_polygons(lm_uv: np.ndarray) -> dict[int, list[np.ndarray]]:
    """UV polygons of the parts, built from the 68 landmark UVs (0-based indices)."""
    def brow(ids, eye_top):
        line = lm_uv[ids]
        thickness = 0.45 * (line[:, 1].mean() - lm_uv[eye_top, 1].mean())
        return np.vstack([line + [0, 0.2 * thickness], (line - [0, thickness])[::-1]])

    mouth_upper = np.r_[48:55, 64, 63, 62, 61, 60]
    mouth_lower = np.r_[54:60, 48, 60, 67, 66, 65, 64]
    bridge_r = (lm_uv[27] * 2 + lm_uv[39]) / 3
    bridge_l = (lm_uv[27] * 2 + lm_uv[42]) / 3
    wing = 0.35 * (lm_uv[35] - lm_uv[31])
    nose = np.vstack([bridge_r, lm_uv[31] - wing, lm_uv[31:36], lm_uv[35] + wing, bridge_l])
    return {
        P.RIGHT_EYEBROW: [brow(np.r_[17:22], [37, 38])],
        P.LEFT_EYEBROW: [brow(np.r_[22:27], [43, 44])],
        P.NOSE: [nose],
        P.RIGHT_EYE: [lm_uv[36:42]],
        P.LEFT_EYE: [lm_uv[42:48]],
        P.UPPER_LIP: [lm_uv[mouth_upper]],
        P.LOWER_LIP: [lm_uv[mouth_lower]],
    }


def rasterise_parts(lm_uv: np.ndarray, res: int = PART_RES) -> np.ndarray:
    """(res,res) uint8 part map; everything not in a part is OTHER (face skin).

    Mirror-symmetric, as training's flips assume (u_h -> 1 - u_h with left and right parts
    swapped, ``PART_FLIP``): the polygons come from the landmarks' UV averaged with their mirror
    points', cell c is filled by whether its centre, u = (c + 0.5) / res, is inside (the cell
    ``tracker.parts.lookup_parts`` reads for u is floor(u * res)), and the left half is mirrored
    onto the right, where a polygon's edge through a cell centre went either way.  Rasterised at
    u = c / res from the landmarks as they are, half a cell off, a flip changed 4-10% of the
    brows', eyes', nose's and lips' labels (review 30)."""
    mirrored = np.stack([1 - lm_uv[:, 0], lm_uv[:, 1]], axis=1)[FLIP_PERMUTATION]
    part_map = np.full((res, res), P.OTHER, np.uint8)
    for label, polys in part_polygons((lm_uv + mirrored) / 2).items():  # later parts paint over earlier ones
        for poly in polys:
            px = np.stack([poly[:, 0] * res, (1 - poly[:, 1]) * res], axis=1) - 0.5
            cv2.fillPoly(part_map, [np.round(px * 16).astype(np.int32)], int(label), cv2.LINE_8, shift=4)
    half = res // 2
    part_map[:, res - half:] = P.PART_FLIP[part_map[:, :half][:, ::-1]]
    return part_map


@dataclass(frozen=True)
class TemplateAssets:
    vertex_uv: np.ndarray
    symmetry: np.ndarray
    definition: LandmarkDefinition
    landmark_uv: np.ndarray
    part_map: np.ndarray
    landmark_3d: np.ndarray  # (68,3) mean-shape landmark positions (mm), for head pose


def build(sfm_dir: Path, data_300w: Path, max_faces: int = 600) -> TemplateAssets:
    model = load_sfm(sfm_dir)
    mapping = read_landmark_mapping(sfm_dir / "ibug_to_sfm.txt")
    contours = read_contours(sfm_dir / "sfm_model_contours.json")
    idx, w = _fixed_landmarks(mapping)
    provisional = LandmarkDefinition(idx, w, JAW, np.zeros((len(JAW), 1), np.int64))
    train = (data_300w / "splits" / "train.txt").read_text().split()
    shapes = [read_pts(pts_beside(data_300w / rel)) for rel in train[:max_faces]]
    positions = calibrate_jaw_positions(model, provisional, contours, shapes)
    for k, pos in zip(JAW, positions):
        contour = contours[0] if k < 8 else contours[1]
        (a, b), (wa, wb) = _contour_point(contour, pos)
        idx[k], w[k] = (a, b, a), (wa, wb, 0.0)
    jaw_points = (model.mean[idx[JAW]] * w[JAW][..., None]).sum(1)
    definition = LandmarkDefinition(idx, w, JAW, jaw_parallels(model.mean, jaw_points))
    vertex_uv = cylindrical_uv(model.mean)
    # Rounded to the stored float32 so that the committed part map can be rebuilt bit-exactly.
    landmark_uv = (vertex_uv[idx] * w[..., None]).sum(1).astype(np.float32).astype(np.float64)
    landmark_3d = (model.mean[idx] * w[..., None]).sum(1)
    return TemplateAssets(vertex_uv, mirror_vertices(model.mean), definition, landmark_uv, rasterise_parts(landmark_uv), landmark_3d)


def save(assets: TemplateAssets, path: Path = ASSET) -> None:
    d = assets.definition
    atomic_save_npz(
        path,
        vertex_uv=assets.vertex_uv.astype(np.float32),
        symmetry=assets.symmetry.astype(np.int32),
        landmark_vertices=d.vertices.astype(np.int32),
        landmark_weights=d.weights.astype(np.float32),
        jaw=d.jaw.astype(np.int32),
        jaw_parallels=d.parallels.astype(np.int32),
        landmark_uv=assets.landmark_uv.astype(np.float32),
        flip_permutation=FLIP_PERMUTATION.astype(np.int32),
        part_map=assets.part_map,
        landmark_3d=assets.landmark_3d.astype(np.float32),
    )


def save_face_model(model: MorphableModel, path: Path) -> None:
    """The shape model as ``tracker.templatemaps.load_face_model`` reads it (float32: the fit's
    landmarks move by < 1e-4 px against float64)."""
    atomic_save_npz(path, mean=model.mean.astype(np.float32), shape_basis=model.shape_basis.astype(np.float32),
                    expression_basis=model.expression_basis.astype(np.float32), expression_names=np.array(model.expression_names),
                    triangles=model.triangles.astype(np.int32))


def render_layout(assets: TemplateAssets, triangles: np.ndarray, size: int = 768) -> np.ndarray:
    """PNG-ready picture of the UV layout: parts, mesh wireframe, the 68 landmarks."""
    img = cv2.resize(P.colorize_parts(assets.part_map), (size, size), interpolation=cv2.INTER_NEAREST)
    px = np.stack([assets.vertex_uv[:, 0] * size, (1 - assets.vertex_uv[:, 1]) * size], 1)
    img = (img * 0.75).astype(np.uint8)
    cv2.polylines(img, list(np.round(px[triangles] * 4).astype(np.int32)), True, (90, 90, 90), 1, cv2.LINE_AA, shift=2)
    for k, (x, y) in enumerate(np.stack([assets.landmark_uv[:, 0], 1 - assets.landmark_uv[:, 1]], 1) * size):
        cv2.circle(img, (int(round(x)), int(round(y))), 4, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.putText(img, str(k + 1), (int(x) + 4, int(y) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.32, (255, 255, 255), 1, cv2.LINE_AA)
    for label in range(1, len(P.PART_NAMES)):
        y = 18 + 16 * (label - 1)
        cv2.rectangle(img, (8, y - 10), (20, y + 2), tuple(int(c) for c in P.PART_COLORS[label]), -1)
        cv2.putText(img, P.PART_NAMES[label], (26, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


CARD = """# Template assets (`template.npz`)

Derived from the **Surrey Face Model** (SFM, 3,448-vertex shape-only model distributed with
eos; Huber et al., VISAPP 2016) by `python -m training.template` (deterministic; see
`training/template.py` for the exact construction).  The jaw landmark positions are calibrated
on near-frontal faces of the 300-W training split (`splits/train.txt`, first {max_faces}).

| array | shape | what |
|---|---|---|
| vertex_uv | (3448,2) | cylindrical UV of the mean shape, axis at z = {axis} mm |
| symmetry | (3448,) | mirror vertex of each vertex |
| landmark_vertices, landmark_weights | (68,3) | iBUG-68 landmarks as vertex combinations (frontal jaw) |
| jaw, jaw_parallels | (16,), (16,P) | marching jaw landmarks and their candidate vertices |
| landmark_uv | (68,2) | template UV of each landmark |
| flip_permutation | (68,) | iBUG point order after a horizontal flip |
| part_map | ({res},{res}) uint8 | 8 part classes in UV space (values in `tracker/parts.py`) |
| landmark_3d | (68,3) | mean-shape 3D landmark positions (mm; y up, z to the viewer), for head pose |

`face_model.npz` beside it is the SFM's shape model as the tracker fits it to a face's final
landmarks (`tracker/templatemaps.py`): `mean` (3448,3) mm, `shape_basis` (3448,3,63) scaled to
standard deviations, `expression_basis` (3448,3,6), `expression_names`, `triangles` (6736,3); float32.

SHA-256 of template.npz: `{sha}`; of face_model.npz: `{model_sha}`

**Licence.** The SFM is free for non-commercial (research) use only (Centre for Vision, Speech
and Signal Processing, University of Surrey); these derived assets carry the same restriction.
The jaw calibration uses 300-W annotations (research use only).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sfm", type=Path, default=DEFAULT_SFM)
    ap.add_argument("--data", type=Path, default=DEFAULT_300W, help="300w folder (jaw calibration)")
    ap.add_argument("--out", type=Path, default=ASSET, required=INSTALLED, help="default: the package's own (in a checkout)")
    ap.add_argument("--docs", type=Path, default=REPO / "docs" / "template_uv.png")
    ap.add_argument("--parts-only", action="store_true",
                    help="only the part map again, from the landmark UVs stored in --out (a change to rasterise_parts; the "
                         "rest, calibrated on the .pts of their time, stays bit for bit)")
    args = ap.parse_args(argv)
    model = load_sfm(args.sfm)
    if args.parts_only:
        with np.load(args.out) as z:
            arrays = {k: z[k] for k in z.files}
        definition = LandmarkDefinition(arrays["landmark_vertices"], arrays["landmark_weights"], arrays["jaw"], arrays["jaw_parallels"])
        assets = TemplateAssets(arrays["vertex_uv"], arrays["symmetry"], definition, arrays["landmark_uv"].astype(np.float64),
                                rasterise_parts(arrays["landmark_uv"].astype(np.float64)), arrays["landmark_3d"])
    else:
        assets = build(args.sfm, args.data)
    save(assets, args.out)
    model_out = args.out.parent / FACE_MODEL
    save_face_model(model, model_out)
    atomic_write_image(args.docs, render_layout(assets, model.triangles))
    shas = [record(p) if args.out.parent == ASSET.parent else hashlib.sha256(p.read_bytes()).hexdigest() for p in (args.out, model_out)]
    atomic_write_text(
        args.out.parent / "TEMPLATE_CARD.md",
        CARD.format(max_faces=600, axis=CYLINDER_AXIS_Z, res=PART_RES, sha=shas[0], model_sha=shas[1]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, sha256 {shas[0][:12]}), {model_out} "
          f"({model_out.stat().st_size} bytes, sha256 {shas[1][:12]}), {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
