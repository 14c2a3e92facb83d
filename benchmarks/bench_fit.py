"""3DMM landmark fitting: our fitter against eos-py's ``fit_shape_and_pose`` in the same run.

    python -m benchmarks.bench_fit [--faces 200] [--json docs/results/fit_bench.json]

Fits every k-th face of the 300-W training+validation annotations with both fitters
(interleaved, same points), and reports the time per face and the reprojection NME of the
68 fitted landmarks (outer-eye-corner normalised) for each.  eos's NME uses the landmarks of
its fitted mesh through its own landmark mapping and contour correspondence.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tracker.fileio import atomic_write_json
from tracker.fitting import fit_landmarks, load_definition
from tracker.metrics import nme
from tracker.pts import pts_beside, read_pts
from training.sfm import load_sfm
from training.template import DEFAULT_300W, DEFAULT_SFM


def eos_fitter(sfm: Path):
    """A callable (68,2) points, (w,h) -> (68,2) fitted points, or None without eos-py."""
    try:
        import eos
    except ImportError:
        return None
    model = eos.morphablemodel.load_model(str(sfm / "sfm_shape_3448.bin"))
    blend = eos.morphablemodel.load_blendshapes(str(sfm / "expression_blendshapes_3448.bin"))
    mm = eos.morphablemodel.MorphableModel(model.get_shape_model(), blend, color_model=eos.morphablemodel.PcaModel(),
                                           vertex_definitions=None, texture_coordinates=model.get_texture_coordinates())
    mapper = eos.core.LandmarkMapper(str(sfm / "ibug_to_sfm.txt"))
    edges = eos.morphablemodel.load_edge_topology(str(sfm / "sfm_3448_edge_topology.json"))
    contour_lms = eos.fitting.ContourLandmarks.load(str(sfm / "ibug_to_sfm.txt"))
    model_contour = eos.fitting.ModelContour.load(str(sfm / "sfm_model_contours.json"))

    def fit(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        lms = [eos.core.Landmark(str(i + 1), [float(x), float(y)]) for i, (x, y) in enumerate(pts)]
        mesh, pose, _, _ = eos.fitting.fit_shape_and_pose(mm, lms, mapper, size[0], size[1], edges, contour_lms, model_contour)
        verts = np.asarray(mesh.vertices)
        vp = np.array([0, size[1], size[0], -size[1]], float)  # OpenGL viewport, y up
        proj = np.asarray(pose.get_projection()) @ np.asarray(pose.get_modelview())
        p = (np.c_[verts, np.ones(len(verts))] @ proj.T)[:, :2]
        img = np.stack([(p[:, 0] + 1) / 2 * vp[2], vp[1] + (p[:, 1] + 1) / 2 * vp[3]], 1)
        out = np.full((68, 2), np.nan)
        for i in range(68):
            v = mapper.convert(str(i + 1))
            if v is not None:
                out[i] = img[int(v)]
        return out

    return fit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rels = [r for s in ("train", "val") for r in (DEFAULT_300W / "splits" / f"{s}.txt").read_text().split()]
    rels = rels[:: max(1, len(rels) // args.faces)][: args.faces]
    model, definition = load_sfm(DEFAULT_SFM), load_definition()
    eos_fit = eos_fitter(DEFAULT_SFM)
    ours_t, ours_e, ours_e_fixed, eos_t, eos_e_fixed = [], [], [], [], []
    fixed = np.r_[8, 17:60, 61:64, 65:68]  # no jaw contour, no inner-mouth corners: both fitters map these alike
    for rel in rels:
        pts = read_pts(pts_beside(DEFAULT_300W / rel))
        t = time.perf_counter()
        fit = fit_landmarks(model, definition, pts)
        ours_t.append(1000 * (time.perf_counter() - t))
        ours_e.append(nme(fit.fitted, pts))
        if eos_fit is not None:
            size = (int(pts[:, 0].max() * 1.2 + 10), int(pts[:, 1].max() * 1.2 + 10))
            t = time.perf_counter()
            fitted = eos_fit(pts, size)
            eos_t.append(1000 * (time.perf_counter() - t))
            eos_e_fixed.append(nme(fitted, pts, fixed))
            ours_e_fixed.append(nme(fit.fitted, pts, fixed))
    res = {"faces": len(rels), "ours": {"ms_median": float(np.median(ours_t)), "nme68_median": float(np.median(ours_e)),
                                        "nme68_p90": float(np.percentile(ours_e, 90))}}
    print(f"{len(rels)} faces                  ms/face (median)   NME median   NME p90")
    print(f"ours (68 points)            {res['ours']['ms_median']:>10.1f}   {res['ours']['nme68_median']:>10.4f}   {res['ours']['nme68_p90']:>7.4f}")
    if eos_fit is not None:
        res["eos"] = {"ms_median": float(np.median(eos_t)), "nme50_median": float(np.median(eos_e_fixed)),
                      "nme50_p90": float(np.percentile(eos_e_fixed, 90))}
        res["ours"]["nme50_median"] = float(np.median(ours_e_fixed))
        print(f"ours (50 fixed points)    {'':>10}   {res['ours']['nme50_median']:>10.4f}")
        print(f"eos-py (50 fixed points)  {res['eos']['ms_median']:>10.1f}   {res['eos']['nme50_median']:>10.4f}   {res['eos']['nme50_p90']:>7.4f}")
    else:
        print("eos-py not installed: no reference run")
    if args.json:
        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
