"""Dense ground truth: rendering a synthetic annotated face, flip consistency, the CLI."""
import numpy as np
import pytest

from tracker import parts as P
from tracker.fitting import Pose, landmark_points, load_definition, march_jaw, project
from tracker.pts import read_pts, write_pts
from training import groundtruth as G

pytestmark = pytest.mark.shared_template  # every test renders the Surrey Face Model


def make_face(tmp_path, stem="face", yaw=20.0, size=(360, 480)):
    """An annotated image whose landmarks are the projection of a known SFM instance."""
    from tests.test_fitting import rotation

    template = G.load_template()
    definition = load_definition()
    rng = np.random.default_rng(3)
    verts = template.model.instance(rng.normal(size=63) * 0.5, np.array([0, 0, 0, 0.4, 0, 0]))
    pose = Pose(1.3, rotation(yaw, 0, 4), np.array([size[1] / 2, size[0] / 2 + 10]))
    idx, w = march_jaw(verts, pose, definition, definition.vertices, definition.weights)
    pts = project(landmark_points(verts, idx, w), pose)
    img = np.full(size + (3,), 90, np.uint8)
    img[:, : size[1] // 3] = (40, 120, 200)  # some structure so that the flip is visible
    import cv2

    cv2.imwrite(str(tmp_path / f"{stem}.png"), img)
    write_pts(tmp_path / f"{stem}.pts", pts)
    return tmp_path / f"{stem}.png", pts


def test_rendered_face_covers_landmarks_and_has_valid_maps(tmp_path):
    image_path, pts = make_face(tmp_path)
    image, gt, arrays = G.build_groundtruth(image_path)
    assert gt.mask.sum() > 5000
    assert np.isfinite(gt.uv[:, gt.mask]).all() and np.isnan(gt.uv[:, ~gt.mask]).all()
    assert gt.uv[:, gt.mask].min() >= 0 and gt.uv[:, gt.mask].max() <= 1
    assert gt.depth[gt.mask].min() >= 0 and gt.depth[gt.mask].max() <= 1
    assert set(np.unique(gt.parts[gt.mask])) >= {P.LEFT_EYE, P.RIGHT_EYE, P.NOSE, P.UPPER_LIP, P.LOWER_LIP, P.OTHER}
    assert (gt.parts[~gt.mask] == 0).all()
    assert arrays["nme"][0] < 0.02
    # The nose tip pixel carries the nose-tip template UV and is among the nearest pixels.
    tip = np.round(pts[30]).astype(int)
    with np.load(G.ASSET) as z:
        lm_uv = z["landmark_uv"]
    assert np.abs(gt.uv[:, tip[1], tip[0]] - lm_uv[30]).max() < 0.02
    assert gt.depth[tip[1], tip[0]] > 0.9


def test_flip_consistency(tmp_path):
    """Fitting the mirrored image gives the mirrored ground truth."""
    import cv2

    image_path, pts = make_face(tmp_path, yaw=30.0)
    image, gt, arrays = G.build_groundtruth(image_path)
    f_img, f_gt, f_lm = G.hflip_groundtruth(image, gt, arrays["landmarks"])
    (tmp_path / "m").mkdir()
    cv2.imwrite(str(tmp_path / "m" / "flip.png"), f_img)
    write_pts(tmp_path / "m" / "flip.pts", f_lm[0])
    _, gt2, _ = G.build_groundtruth(tmp_path / "m" / "flip.png")
    iou = (gt2.mask & f_gt.mask).sum() / (gt2.mask | f_gt.mask).sum()
    assert iou > 0.95
    both = gt2.mask & f_gt.mask
    assert np.nanmean(np.abs(gt2.uv[:, both] - f_gt.uv[:, both])) < 0.01
    agree = (gt2.parts[both] == f_gt.parts[both]).mean()
    assert agree > 0.95


def test_two_faces_occlude_each_other(tmp_path):
    template = G.load_template()
    definition = load_definition()
    lm = landmark_points(template.model.mean, definition.vertices, definition.weights)
    from tracker.fitting import fit_landmarks

    poses = [Pose(s, np.eye(3), np.array(t)) for s, t in ((1.0, (100.0, 120.0)), (1.2, (170.0, 130.0)))]
    fits = [fit_landmarks(template.model, definition, project(lm, pose)) for pose in poses]
    gt = G.render_faces(template, fits, (260, 300))
    assert gt.mask.sum() > 0 and np.isfinite(gt.uv[:, gt.mask]).all()
    alone = [G.render_faces(template, [fit], (260, 300)) for fit in fits]
    assert gt.mask.sum() > alone[0].mask.sum()
    # Where both faces project, each pixel shows the nearer face's surface (its camera depth,
    # larger = nearer) with that face's UV: the check once passed with the depth test inverted,
    # while a third of the overlap carried the far face's UV (review 30).
    from tracker.render import rasterize
    from tracker.templatemaps import project_mesh

    def raw_depth(fit):
        points, z = project_mesh(template.model, fit)
        tris = template.model.triangles
        return rasterize(points, z, tris, (260, 300)).interpolate(z[:, None], tris)[..., 0]

    overlap = alone[0].mask & alone[1].mask
    nearer = np.where(raw_depth(fits[0]) >= raw_depth(fits[1]), 0, 1)[overlap]
    assert overlap.sum() > 5000 and 0.2 < nearer.mean() < 0.8  # each face in front somewhere: a real test of the z-buffer
    expected = np.where(nearer, alone[1].uv[:, overlap], alone[0].uv[:, overlap])
    assert np.mean(np.abs(gt.uv[:, overlap] - expected).max(axis=0) < 1e-4) > 0.99


def test_cli_writes_resumes_and_skips_bad_items(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    make_face(src, "good")
    (src / "broken.jpg").write_bytes(b"not an image")
    write_pts(src / "broken.pts", np.zeros((68, 2)))
    make_face(src, "short")
    (src / "short.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n")
    write_pts(src / "orphan.pts", np.zeros((68, 2)))
    out = tmp_path / "out"
    rc = G.main(["--images", str(src), "--out", str(out), "--preview", str(tmp_path / "prev")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "broken.jpg" in err and "short" in err and "orphan.pts" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.npz", "summary.json"]
    assert (tmp_path / "prev" / "good.png").exists()
    with np.load(out / "good.npz") as z:
        assert z["uv"].dtype == np.float16 and z["uv"].shape == (2, 360, 480)
        assert z["landmarks"].shape == (1, 68, 2) and int(z["face_index"]) == 0
    mtime = (out / "good.npz").stat().st_mtime_ns
    G.main(["--images", str(src), "--out", str(out)])
    assert (out / "good.npz").stat().st_mtime_ns == mtime  # finished stems are not redone
    assert "1 already done" in capsys.readouterr().out


def test_afw_siblings_are_merged(tmp_path):
    import shutil

    image_path, _ = make_face(tmp_path, "pic_1")
    shutil.copy(image_path, tmp_path / "pic_2.png")
    other = read_pts(tmp_path / "pic_1.pts") * 0.5 + 20
    write_pts(tmp_path / "pic_2.pts", other)
    _, gt, arrays = G.build_groundtruth(tmp_path / "pic_2.png")
    assert arrays["landmarks"].shape[0] == 2 and int(arrays["face_index"]) == 1


def test_annotations_in_upper_case_are_ground_truth_items(tmp_path):
    """A picture with an ``X.PTS`` was not an item, and an orphan ``Y.PTS`` went unreported (user test 22)."""
    import cv2

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    write_pts(tmp_path / "a.PTS", np.zeros((68, 2)))
    write_pts(tmp_path / "orphan.Pts", np.zeros((68, 2)))
    jobs, problems = G.find_jobs(tmp_path, tmp_path / "out", None)
    assert [j.image.name for j in jobs] == ["a.jpg"] and problems == [f"{tmp_path / 'orphan.Pts'}: no image with the same stem"]


def test_a_missing_3d_template_is_one_error_not_one_per_picture(tmp_path, capsys, monkeypatch):
    """Without the Surrey Face Model every picture printed the same error (user test 23)."""
    src = tmp_path / "in"
    src.mkdir()
    for stem in ("a", "b"):
        make_face(src, stem)

    def missing():
        raise FileNotFoundError(2, "No such file or directory", "sfm_shape_3448.bin")

    monkeypatch.setattr(G, "load_template", missing)
    assert G.main(["--images", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: the 3D template") and "sfm_shape_3448.bin" in err


def test_siblings_of_any_picture_kind_or_none(tmp_path):
    """A ``NAME_1`` stem whose picture is not a .jpg/.png/.bmp (or is gone) was an AttributeError
    that stopped the whole run (review 32)."""
    import cv2

    cv2.imwrite(str(tmp_path / "img_1.ppm"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "img_2.PPM").write_bytes((tmp_path / "img_1.ppm").read_bytes())
    for stem in ("img_1", "img_2", "lone_1"):
        write_pts(tmp_path / f"{stem}.pts", np.zeros((68, 2)))
    assert G.sibling_stems(tmp_path / "img_1.pts") == [tmp_path / "img_1.pts", tmp_path / "img_2.pts"]
    assert G.sibling_stems(tmp_path / "lone_1.pts") == [tmp_path / "lone_1.pts"]
    # a dotted neighbour is another picture, not img_1's (review 33: it came first by name)
    cv2.imwrite(str(tmp_path / "img_1.flip.png"), np.full((8, 8, 3), 9, np.uint8))
    assert G._image_for(tmp_path / "img_1.pts") == tmp_path / "img_1.ppm"
    assert G.sibling_stems(tmp_path / "img_1.pts") == [tmp_path / "img_1.pts", tmp_path / "img_2.pts"]
