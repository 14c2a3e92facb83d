"""What `images` writes for people and for programs: the annotated picture, the raw part labels,
and the coordinate convention stated in every JSON."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_IMAGE
from tracker.cli import main
from tracker.pts import read_pts
from tracker.writers import COORDINATES


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("annotate_in")
    cv2.imwrite(str(d / "astro.png"), cv2.imread(str(DEMO_IMAGE)))
    cv2.imwrite(str(d / "blank.png"), np.full((120, 160, 3), 128, np.uint8))
    return d


def test_annotate_with_and_without_parts(folder, tmp_path):
    src = cv2.imread(str(folder / "astro.png"))
    plain, parts = tmp_path / "plain", tmp_path / "parts"
    assert main(["images", "--input", str(folder), "--out", str(plain), "--annotate"]) == 0
    assert main(["images", "--input", str(folder), "--out", str(parts), "--annotate", "--parts"]) == 0
    a = cv2.imread(str(plain / "astro_annotated.jpg")).astype(int)
    b = cv2.imread(str(parts / "astro_annotated.jpg")).astype(int)
    assert a.shape == b.shape == src.shape
    changed = np.abs(a - src).max(axis=2) > 60  # landmark dots (JPEG noise stays well below)
    assert 200 < changed.sum() < 0.05 * changed.size
    # The dots sit on the landmarks.
    pts = read_pts(plain / "astro.pts")
    x, y = np.round(pts[30]).astype(int)
    assert changed[y - 2 : y + 3, x - 2 : x + 3].any()
    # With --parts the face is tinted as well, and the label map stays raw 0-8 for programs.
    labels = cv2.imread(str(parts / "astro_parts.png"), cv2.IMREAD_UNCHANGED)
    assert labels.ndim == 2 and labels.max() <= 8 and set(np.unique(labels)) >= {0, 3, 4, 7, 8}
    tinted = (np.abs(b - src).max(axis=2) > 20) & (labels > 0)
    assert tinted.sum() > 0.5 * (labels > 0).sum()
    # A picture without a face gets its (unchanged) annotated picture too.
    blank = cv2.imread(str(plain / "blank_annotated.jpg")).astype(int)
    assert blank.shape == (120, 160, 3) and np.abs(blank - 128).max() < 8
    assert not list(plain.rglob("*.tmp"))


def test_adding_annotate_on_a_rerun_does_the_missing_pictures(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["images", "--input", str(folder), "--out", str(out)]) == 0
    assert main(["images", "--input", str(folder), "--out", str(out), "--annotate"]) == 0
    assert "0 already done" in capsys.readouterr().out and (out / "astro_annotated.jpg").exists()
    assert main(["images", "--input", str(folder), "--out", str(out), "--annotate", "--parts"]) == 0
    # Both lack their part labels: one mask per picture, all 0 where there is no face (a program
    # reading one mask per input found none for a picture without a face).
    assert "0 already done" in capsys.readouterr().out and (out / "astro_parts.png").exists()
    blank = cv2.imread(str(out / "blank_parts.png"), cv2.IMREAD_UNCHANGED)
    assert blank.shape == (120, 160) and blank.max() == 0


def test_a_redone_picture_keeps_no_earlier_runs_per_face_files(tmp_path, monkeypatch, capsys):
    """Review 26: a picture redone without a face kept its old .pts and maps (and dlib's .pts)
    beside "faces": []; and an --overwrite run killed between a picture's new .json and its .pts
    left the old .pts, which the resumed run took for finished."""
    import tracker.cli.images as images

    pics, out = tmp_path / "in", tmp_path / "out"
    pics.mkdir()
    cv2.imwrite(str(pics / "p.png"), cv2.imread(str(DEMO_IMAGE)))
    base = ["images", "--input", str(pics), "--out", str(out), "--save-maps"]
    assert main(base + ["--baseline", "dlib", "--annotate", "--parts"]) == 0
    assert all((out / f).is_file() for f in ("p.pts", "p_maps.npz", "dlib/p.pts", "p_annotated.jpg", "p_parts.png"))
    cv2.imwrite(str(pics / "p.png"), np.full((300, 300, 3), 128, np.uint8))  # the same name, now no face
    assert main(base + ["--baseline", "dlib", "--overwrite"]) == 0
    assert json.loads((out / "p.json").read_text())["faces"] == []
    # what this run wrote says no face; what it did not ask for (annotated, parts) is not left from the face
    assert not any((out / f).exists() for f in ("p.pts", "p_maps.npz", "dlib/p.pts", "p_annotated.jpg", "p_parts.png"))

    cv2.imwrite(str(pics / "p.png"), cv2.imread(str(DEMO_IMAGE)))
    assert main(base + ["--no-refine", "--overwrite"]) == 0  # an earlier run with other options
    write_pts = images.write_pts

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "write_pts", killed)  # killed after the new .json, before its .pts
    assert main(base + ["--overwrite"]) == 130
    monkeypatch.setattr(images, "write_pts", write_pts)
    capsys.readouterr()
    assert main(base) == 0  # resumes: the picture is redone, not taken for finished
    assert "0 already done" in capsys.readouterr().out
    final = np.array(json.loads((out / "p.json").read_text())["faces"][0]["stages"]["mdm"]["points"])
    np.testing.assert_allclose(read_pts(out / "p.pts"), final, atol=2e-3)


def test_json_states_its_coordinates_and_pts_add_the_origin(folder, tmp_path):
    out = tmp_path / "out"
    assert main(["images", "--input", str(folder), "--out", str(out), "--baseline", "dlib"]) == 0
    info = json.loads((out / "astro.json").read_text())
    assert info["coordinates"] == COORDINATES and "0-based" in COORDINATES and "1-based" in COORDINATES
    dlib = json.loads((out / "dlib" / "astro.json").read_text())
    assert dlib["coordinates"] == COORDINATES and dlib["image_size"] == info["image_size"] and dlib["source"] == info["source"]
    mdm = np.array(info["faces"][0]["stages"]["mdm"]["points"], float)
    assert np.allclose(np.loadtxt(out / "astro.pts", skiprows=3, max_rows=68), mdm + [1.5, 1.0], atol=2e-3)  # the file: 1-based, 300-W's x


def test_video_json_states_its_coordinates(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for _ in range(3):
        writer.write(cv2.imread(str(DEMO_IMAGE)))
    writer.release()
    assert main(["video", str(clip), "--json", str(tmp_path / "v.json")]) == 0
    info = json.loads((tmp_path / "v.json").read_text())
    assert info["coordinates"] == COORDINATES and info["frames"][0]["faces"][0]["detector"] == "hog"
    # which face --pts-dir writes is said in every frame (user test 25)
    assert [f["subject"] for f in info["frames"]] == [0, 0, 0] and info["frames"][0]["faces"][0]["track_id"] == 0


def test_landmark_dots_shrink_with_the_face_down_to_half_a_pixel():
    from tracker.draw import draw_points, point_radius

    face = np.zeros((68, 2))
    face[36], face[45] = (0.0, 0.0), (90.0, 0.0)  # outer eye corners 90 px apart
    assert point_radius(face) == pytest.approx(3.0)
    tiny = face / 10  # 9 px apart: a face a few dozen pixels wide
    assert point_radius(tiny) == 0.5
    canvas = np.zeros((20, 20, 3), np.uint8)
    draw_points(canvas, np.array([[10.0, 10.0]]), (0, 255, 0), point_radius(tiny))
    assert (canvas[..., 1] > 0).sum() == 1  # one pixel, not a blob hiding the face
    draw_points(canvas, np.array([[-3.0, 5.0], [25.0, 5.0]]), (0, 255, 0), 0.5)  # off the picture: nothing, no error
    assert (canvas[..., 1] > 0).sum() == 1


def test_the_dlib_baselines_pts_holds_the_main_face_not_the_most_confident(tmp_path, monkeypatch):
    """As the tracker's .pts: a confident bystander at the edge was written in 6 of the 14 val
    pictures with several faces, so a user scoring the .pts files saw dlib fail for nothing."""
    import tracker.detector as detector
    from tracker.detector import Detection
    from tracker.writers import write_dlib_baseline

    edge, centre = Detection(0, 0, 60, 60, 2.0), Detection(250, 190, 390, 330, 0.3)
    monkeypatch.setattr(detector, "detect_faces", lambda gray: [edge, centre])
    monkeypatch.setattr(detector, "dlib_landmarks", lambda gray, d: np.full((68, 2), d.x0 + 1.0))
    write_dlib_baseline(np.zeros((480, 640, 3), np.uint8), tmp_path / "pic", "pic.png")
    assert np.allclose(read_pts(tmp_path / "pic.pts"), centre.x0 + 1.0)
    assert [f["score"] for f in json.loads((tmp_path / "pic.json").read_text())["faces"]] == [2.0, 0.3]  # all of them, best first
