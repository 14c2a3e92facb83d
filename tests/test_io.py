"""iBUG .pts files, atomic writes, safe output paths, robust image reading."""
import os

import cv2
import numpy as np
import pytest

from tracker.fileio import ImageReadError, atomic_write_bytes, atomic_write_json, list_images, read_image, safe_output_path
from tracker.pts import PtsError, read_pts, write_pts


def test_pts_with_and_without_header_and_their_origin(tmp_path):
    (tmp_path / "h.pts").write_text("version: 1\nn_points: 3\n{\n1 1\n10.5 20\n3 4\n}\n")
    (tmp_path / "n.pts").write_text("1 1\n10.5 20\n\n3 4\n")
    a, b = read_pts(tmp_path / "h.pts"), read_pts(tmp_path / "n.pts")
    np.testing.assert_allclose(a, [[-0.5, 0], [9, 19], [1.5, 3]])  # PTS_ORIGIN: 300-W's x half a pixel right
    np.testing.assert_allclose(a, b)
    write_pts(tmp_path / "w.pts", a)
    np.testing.assert_allclose(read_pts(tmp_path / "w.pts"), a, atol=1e-3)
    assert (tmp_path / "w.pts").read_text().startswith("version: 1\nn_points: 3\n{\n1.000 1.000\n")


@pytest.mark.parametrize(
    "content, match",
    [("", "no points"), ("version: 1\nn_points: 2\n{\n1 2\n}\n", "header says 2"), ("1 2\nx y\n", "non-numeric"),
     ("1 2 3\n", "expected 'x y'"), ("n_points: two\n", "bad n_points"), ("1 nan\n", "expected 'x y'")],
)
def test_pts_errors_are_one_line(tmp_path, content, match):
    p = tmp_path / "bad.pts"
    p.write_text(content)
    with pytest.raises(PtsError, match=match) as err:
        read_pts(p)
    assert "\n" not in str(err.value) and "bad.pts" in str(err.value)


def test_pts_count_and_missing(tmp_path):
    (tmp_path / "a.pts").write_text("1 2\n3 4\n")
    with pytest.raises(PtsError, match="expected 68"):
        read_pts(tmp_path / "a.pts", expected=68)
    with pytest.raises(PtsError, match="not found"):
        read_pts(tmp_path / "missing.pts")


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_text().strip().startswith("{") and list(tmp_path.iterdir()) == [target]


def test_safe_output_path_refuses_escapes(tmp_path):
    assert safe_output_path(tmp_path, "a/b.pts") == tmp_path / "a" / "b.pts"
    for bad in ("../x.pts", "/etc/passwd", "a/../../x", "C:\\x.pts", "..\\x.pts", ""):
        with pytest.raises(ValueError):
            safe_output_path(tmp_path, bad)


def test_read_image_variants(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), img[..., 0])
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "d.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "ü nicode é.png"), img)
    for name in ("g.png", "a.png", "d.png", "ü nicode é.png"):
        out = read_image(tmp_path / name)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(read_image(tmp_path / "d.png"), img)
    (tmp_path / "t.jpg").write_text("hello")
    (tmp_path / "e.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((1, 1, 3), np.uint8))
    ok, enc = cv2.imencode(".jpg", img)
    (tmp_path / "cut.jpg").write_bytes(enc.tobytes()[:60])
    for name, reason in (("t.jpg", "not a decodable"), ("e.jpg", "empty"), ("one.png", "too small"), ("cut.jpg", "not a decodable"),
                         ("none.png", "not found")):
        with pytest.raises(ImageReadError, match=reason):
            read_image(tmp_path / name)
    assert [p.name for p in list_images(tmp_path)][:2] == ["a.png", "cut.jpg"]


def test_runtime_never_imports_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from tracker.pipeline import Tracker, TrackerConfig\n"
        "from tracker.assets import DEMO_IMAGE\n"
        "from tracker.fileio import read_image\n"
        "r = Tracker(TrackerConfig(engine='onnx', threads=1)).track(read_image(DEMO_IMAGE))\n"
        "assert r.faces, 'no face on the demo image'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                         env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
