"""The template fitted to a face's final landmarks (``tracker.templatemaps``) and where the
tracker reads parts and textures from."""
import json

import cv2
import numpy as np
import pytest

from tracker.assets import ASSETS, DEMO_IMAGE
from tracker.crop import invert, transform_points
from tracker.densemaps import DenseMaps
from tracker.draw import part_labels
from tracker.errors import ConfigError
from tracker.fitting import FitResult, fit_landmarks, landmark_points
from tracker.parts import PART_NAMES, lookup_parts, part_iou
from tracker.pipeline import Tracker, TrackerConfig
from tracker.pose import Pose, project
from tracker.templatemaps import CLOSED_MOUTH_GAP, FACE_MODEL, load_face_model, mouth_gap, render_fits, template_maps


@pytest.fixture(scope="module")
def face_model():
    return load_face_model(ASSETS / FACE_MODEL, ASSETS / "template.npz")


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return ry @ rx


def _known_face(face_model, yaw: float, seed: int):
    """A face of known shape, expression and pose in a 128-px crop: its 68 landmarks (the jaw
    on its outline, as annotators mark it) and its true maps."""
    rng = np.random.default_rng(seed)
    model = face_model.model
    shape, expr = rng.normal(size=63) * 0.8, np.clip(rng.normal(size=6) * 0.3, 0, None)
    pose = Pose(0.45, _rotation(yaw, 5.0), np.array([63.5, 70.0]))
    # the fitter's own marching puts the jaw points on this pose's outline
    truth = FitResult(pose, shape, expr, None, None, None)
    fit = fit_landmarks(model, face_model.definition, project(landmark_points(model.instance(shape, expr),
                        face_model.definition.vertices, face_model.definition.weights), pose))
    vertices = model.instance(shape, expr)
    points = project(landmark_points(vertices, fit.landmark_vertices, fit.landmark_weights), pose)
    return points, render_fits(model, face_model.vertex_uv, [truth], (128, 128))


@pytest.mark.parametrize("yaw", [0.0, 30.0, -20.0])
def test_fit_to_a_known_faces_landmarks_renders_its_maps(face_model, yaw):
    """Up to what 68 points cannot tell (the forehead's and the cheeks' outline), the fit to a
    face's landmarks renders that face's maps: the template's mask, UV and parts."""
    with np.load(ASSETS / "template.npz") as z:
        part_map = z["part_map"]
    for seed in range(3):
        points, (uv, _, mask) = _known_face(face_model, yaw, seed)
        maps = template_maps(face_model, points, 128)
        assert maps.uv.shape == (2, 128, 128) and maps.fg.shape == maps.depth.shape == (128, 128)
        got = maps.fg > 0.5
        assert (got & mask).sum() / (got | mask).sum() > 0.94
        both = got & mask
        assert np.median(np.abs(maps.uv[:, both] - uv[:, both])) < 0.003  # UV units
        ours, truth = lookup_parts(maps.uv, part_map, got), lookup_parts(np.nan_to_num(uv), part_map, mask)
        assert (ours == truth).mean() > 0.98
        iou = part_iou(ours[None], truth[None], np.ones((1, 128, 128), bool))
        assert np.mean([i / max(u, 1) for i, u in iou.values()]) > 0.85


def _uv_at(maps, points: np.ndarray) -> np.ndarray:
    """(N,2) UV of `maps` at (N,2) crop points, bilinear."""
    x, y = points[:, :1].astype(np.float32), points[:, 1:].astype(np.float32)
    return np.stack([cv2.remap(maps.uv[c], x, y, cv2.INTER_LINEAR)[:, 0] for c in range(2)], axis=1)


BROWS_EYES_NOSE = np.arange(17, 48)


def test_landmarks_land_on_their_template_uv(face_model):
    """Independently of the renderer's own answer: at each brow, nose and eye point the maps hold
    that landmark's template UV (median 0.0013-0.0026 UV units; the points moved 1.5 px: 0.014)."""
    with np.load(ASSETS / "template.npz") as z:
        landmark_uv = z["landmark_uv"]
    for yaw in (0.0, 30.0, -20.0):
        points, _ = _known_face(face_model, yaw, seed=1)
        maps = template_maps(face_model, points, 128)
        err = np.linalg.norm(_uv_at(maps, points[BROWS_EYES_NOSE]) - landmark_uv[BROWS_EYES_NOSE], axis=1)
        assert np.median(err) < 0.005


def test_off_the_face_the_maps_hold_the_nearest_face_pixel(face_model):
    """Readers sample the maps bilinearly: a constant (0, 0) off the mesh pulled the UV at its
    edges to the template's corner (stray colours in unwrapped textures)."""
    points, _ = _known_face(face_model, 20.0, seed=0)
    maps = template_maps(face_model, points, 128)
    face = maps.fg > 0.5
    for c in range(2):
        inside = maps.uv[c][face]
        assert inside.min() <= maps.uv[c].min() and maps.uv[c].max() <= inside.max()
    # every pixel next to the face holds the UV of a face pixel beside it
    near = cv2.dilate(face.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~face
    for y, x in zip(*np.nonzero(near)):
        window = (slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
        beside = maps.uv[:, window[0], window[1]][:, face[window]]
        assert np.abs(beside - maps.uv[:, y, x][:, None]).sum(axis=0).min() == 0


def _enclosed_background(face: np.ndarray) -> int:
    """Pixels of background that do not reach the crop's border: holes in the face."""
    count, labels = cv2.connectedComponents((~face).astype(np.uint8), connectivity=4)
    border = set(np.unique(np.r_[labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return int(sum((labels == k).sum() for k in range(1, count) if k not in border))  # label 0: the face


def _mean_face_with(face_model, expression: str, amount: float) -> np.ndarray:
    """The 68 landmarks of the mean shape with one expression, frontal, in a 128-px crop."""
    model, definition = face_model.model, face_model.definition
    expr = np.zeros(len(model.expression_names))
    expr[model.expression_names.index(expression)] = amount
    vertices, pose = model.instance(np.zeros(63), expr), Pose(0.45, _rotation(0.0, 5.0), np.array([63.5, 70.0]))
    fit = fit_landmarks(model, definition, project(landmark_points(vertices, definition.vertices, definition.weights), pose))
    return project(landmark_points(vertices, fit.landmark_vertices, fit.landmark_weights), pose)


def test_a_closed_mouth_has_no_slit_and_an_open_one_keeps_its_hole(face_model, monkeypatch):
    smile = _mean_face_with(face_model, "happiness", 0.1)  # lips touching: the mesh's mouth opening shows as a slit
    assert mouth_gap(smile) < CLOSED_MOUTH_GAP
    assert _enclosed_background(template_maps(face_model, smile, 128).fg > 0.5) == 0
    monkeypatch.setattr("tracker.templatemaps.CLOSED_MOUTH_GAP", 0.0)
    assert _enclosed_background(template_maps(face_model, smile, 128).fg > 0.5) > 5  # (14 px: what is filled)
    monkeypatch.undo()
    surprise = _mean_face_with(face_model, "surprise", 0.3)  # an open mouth, 3 px between the inner lips
    assert mouth_gap(surprise) > CLOSED_MOUTH_GAP
    assert _enclosed_background(template_maps(face_model, surprise, 128).fg > 0.5) > 30


def test_missing_points_are_left_out_of_the_fit(face_model):
    points, (_, _, mask) = _known_face(face_model, 10.0, seed=3)
    holed = points.copy()
    holed[[36, 37, 38, 48, 60]] = np.nan
    maps = template_maps(face_model, holed, 128)
    assert np.isfinite(maps.uv).all() and np.isfinite(maps.depth).all()
    got = maps.fg > 0.5
    assert (got & mask).sum() / (got | mask).sum() > 0.93


def test_face_model_asset_is_the_surrey_model(face_model, template_dir):
    from training.sfm import load_sfm

    sfm = load_sfm(template_dir)
    np.testing.assert_allclose(face_model.model.mean, sfm.mean, atol=1e-3)
    np.testing.assert_allclose(face_model.model.shape_basis, sfm.shape_basis, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(face_model.model.expression_basis, sfm.expression_basis, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(face_model.model.triangles, sfm.triangles)


def test_tracker_reads_parts_from_the_fitted_template_when_asked():
    image = cv2.imread(str(DEMO_IMAGE))
    plain = Tracker(TrackerConfig(mode="image")).track(image).faces[0]
    assert plain.template_maps is None and plain.part_maps is plain.maps
    tracker = Tracker(TrackerConfig(mode="image", template_maps=True))
    result = tracker.track(image)
    face = result.faces[0]
    assert face.part_maps is face.template_maps and face.template_maps.uv.shape == face.maps.uv.shape
    assert "template maps" in result.timings
    # fitted to the final landmarks, in the crop the maps are in: at the final brow, eye and nose
    # points the template's UV (median 0.0059 UV units on this face; the PCA stage's points 0.0088)
    with np.load(ASSETS / "template.npz") as z:
        landmark_uv = z["landmark_uv"]
    in_crop = transform_points(invert(face.crop_to_image), face.landmarks)
    err = np.linalg.norm(_uv_at(face.template_maps, in_crop[BROWS_EYES_NOSE]) - landmark_uv[BROWS_EYES_NOSE], axis=1)
    assert np.median(err) < 0.0075
    ours, theirs = part_labels(face, tracker.part_map, image.shape), part_labels(plain, tracker.part_map, image.shape)
    # the same face, its parts in the same places, but their edges drawn from the landmarks
    assert 0 < (ours != theirs).mean() < 0.05
    assert ((ours > 0) & (theirs > 0)).sum() / ((ours > 0) | (theirs > 0)).sum() > 0.8
    # each eye's labels lie around one eye's final points
    eyes = [face.landmarks[36:42].mean(axis=0), face.landmarks[42:48].mean(axis=0)]
    for label in (PART_NAMES.index("left_eye"), PART_NAMES.index("right_eye")):
        ys, xs = np.nonzero(ours == label)
        assert len(xs) > 20
        assert min(np.hypot(xs.mean() - e[0], ys.mean() - e[1]) for e in eyes) < 4


def test_template_maps_is_a_checked_switch():
    with pytest.raises(ConfigError, match="template_maps"):
        TrackerConfig(template_maps="yes")


def test_images_parts_from_chooses_the_maps(tmp_path):
    from tracker.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "astro.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    labels = {}
    for source in ("template", "network"):
        out = tmp_path / source
        assert main(["images", "--input", str(tmp_path / "in"), "--out", str(out), "--parts", "--parts-from", source, "--threads", "1"]) == 0
        labels[source] = cv2.imread(str(out / "astro_parts.png"), cv2.IMREAD_UNCHANGED)
        timings = json.loads((out / "astro.json").read_text())["timings_ms"]
        assert ("template maps" in timings) == (source == "template")
    ours, theirs = labels["template"], labels["network"]
    assert set(np.unique(ours)) == set(np.unique(theirs)) == set(range(9))
    assert 0 < (ours != theirs).mean() < 0.05



def test_parts_from_without_parts_is_said_to_do_nothing(tmp_path, capsys):
    from tracker.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "astro.jpg").write_bytes(DEMO_IMAGE.read_bytes())
    assert main(["images", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--parts-from", "network", "--threads", "1"]) == 0
    assert "without --parts it does nothing" in capsys.readouterr().err
    assert not (tmp_path / "out" / "astro_parts.png").exists()


def test_template_maps_added_to_a_frame_already_tracked_are_those_of_tracking_with_them():
    image = cv2.imread(str(DEMO_IMAGE))
    tracker = Tracker(TrackerConfig(mode="image"))
    result = tracker.track(image)
    with pytest.raises(ConfigError, match="set_template_maps"):
        tracker.add_template_maps(result)
    tracker.set_template_maps(True)
    added = tracker.add_template_maps(result)
    tracked = tracker.track(image)
    assert result.faces[0].template_maps is None and "template maps" in added.timings
    np.testing.assert_array_equal(added.faces[0].template_maps.uv, tracked.faces[0].template_maps.uv)
    np.testing.assert_array_equal(added.faces[0].template_maps.fg, tracked.faces[0].template_maps.fg)
    tracker.set_template_maps(False)
    assert tracker.track(image).faces[0].template_maps is None


def test_template_maps_in_image_pixels():
    from tracker.writers import maps_in_image

    image = cv2.imread(str(DEMO_IMAGE))
    face = Tracker(TrackerConfig(mode="image", template_maps=True)).track(image).faces[0]
    ours, theirs = maps_in_image(face, image.shape, face.template_maps), maps_in_image(face, image.shape)
    assert ours["uv"].shape == (2,) + image.shape[:2] and ours["fg"].dtype == np.float16
    face_pixels = ours["fg"] > 0.5
    assert ours["fg"].min() >= 0 and ours["fg"].max() <= 1  # the mesh's mask, bilinearly warped
    both = face_pixels & (theirs["fg"] > 0.5)
    assert both.sum() > 0.8 * face_pixels.sum()  # the same face
    assert np.median(np.abs(ours["uv"][:, both].astype(float) - theirs["uv"][:, both])) < 0.03


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_the_template_fitted_to_a_known_faces_dense_uv_renders_its_parts_and_outliers_are_weighed_down(face_model, yaw):
    """``dense_fit``: the template fitted to a face's own UV map (every third foreground pixel a
    correspondence) renders that face's parts (mean IoU 0.77-0.95 on these ~70 px faces: 4 pose
    and shape iterations a round, fewer than full convergence on exact UV needs, as many as the
    network's noisy UV pays for on val); a patch of wrong UV (the open mouth's pixels carry the
    lips' UV in the network's maps) is weighed down by the rounds of residual weighting (one
    round: 0.17-0.29)."""
    from tracker.templatemaps import dense_fit, dense_fit_maps, uv_lookup

    with np.load(ASSETS / "template.npz") as z:
        part_map = z["part_map"]
    lookup = uv_lookup(face_model)
    assert lookup.triangle.shape == (512, 512) and (lookup.triangle >= 0).mean() > 0.5

    def mean_iou(maps, truth) -> float:
        got = lookup_parts(maps.uv, part_map, maps.fg > 0.5)
        return float(np.mean([i / max(u, 1) for i, u in part_iou(got[None], truth[None], np.ones((1, 128, 128), bool)).values()]))

    for seed in range(2):
        _, (uv, _, mask) = _known_face(face_model, yaw, seed)
        truth, fg = lookup_parts(np.nan_to_num(uv), part_map, mask), mask.astype(np.float32)
        wrong = np.nan_to_num(uv).copy()
        wrong[:, 85:100, 50:80] = wrong[:, 40:55, 50:80]  # a patch over the mouth carrying the eyes' UV
        assert mean_iou(dense_fit_maps(face_model, lookup, np.nan_to_num(uv), fg), truth) > 0.75
        robust = mean_iou(dense_fit_maps(face_model, lookup, wrong, fg), truth)
        one = dense_fit(face_model, lookup, wrong, fg, rounds=1)
        uv1, _, mask1 = render_fits(face_model.model, face_model.vertex_uv, [one], (128, 128))
        plain = mean_iou(DenseMaps(uv1, mask1.astype(np.float32), np.zeros((128, 128), np.float32)), truth)
        assert robust > 0.75 and robust > plain + 0.3, (seed, robust, plain)
    assert dense_fit(face_model, lookup, np.zeros((2, 128, 128)), np.zeros((128, 128))) is None  # no foreground: no fit


def test_the_dense_fit_takes_every_pixel_of_the_small_parts_and_keeps_to_the_networks_outline(face_model):
    """With the part map, every foreground pixel whose UV is on a brow, an eye or a lip is a
    correspondence besides the 3-px grid; the rendered foreground is the fitted mesh's mask cut to
    the network's outline, whose enclosed holes (the open mouth it fills or not) do not cut it."""
    from tracker.templatemaps import DENSE_SMALL_PARTS, DENSE_STEP, dense_fit, dense_fit_maps, face_holes, uv_lookup

    with np.load(ASSETS / "template.npz") as z:
        part_map = z["part_map"]
    lookup = uv_lookup(face_model)
    _, (uv, _, mask) = _known_face(face_model, 0.0, 0)
    uv, fg = np.nan_to_num(uv), mask.astype(np.float32)
    small = np.isin(lookup_parts(uv, part_map, mask), DENSE_SMALL_PARTS)
    grid = np.zeros_like(mask)
    grid[::DENSE_STEP, ::DENSE_STEP] = True
    assert small.sum() > 2 * (small & grid).sum() > 0
    plain, dense = dense_fit(face_model, lookup, uv, fg), dense_fit(face_model, lookup, uv, fg, part_map=part_map)
    # the taken pixels of the known face's own UV lie on the template (but a few on its rasters' edges)
    taken_plain, taken_dense = (grid & mask).sum(), ((grid | small) & mask).sum()
    assert taken_plain - 3 <= len(plain.fitted) <= taken_plain and taken_dense - 3 <= len(dense.fitted) <= taken_dense

    cut = fg.copy()
    cut[:, :64] = 0  # the network sees only the right half of the face
    cut[95:100, 68:74] = 0  # and a hole inside it
    maps = dense_fit_maps(face_model, lookup, uv, cut, part_map=part_map)
    assert not maps.fg[:, :64].any() and maps.fg[95:100, 68:74].all() and face_holes(cut > 0.5)[95:100, 68:74].all()
    assert maps.fg[:, 64:].sum() > 0.9 * mask[:, 64:].sum()
