import numpy as np

from tracker.render import rasterize


def test_nearer_triangle_occludes_farther_one():
    pts = np.array([[2, 2], [30, 2], [2, 30], [10, 10], [40, 10], [10, 40]], float)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    for near, _far in ((0, 1), (1, 0)):
        depth = np.zeros(6)
        depth[tris[near]] = 1.0
        r = rasterize(pts, depth, tris, (48, 48))
        assert r.triangle[15, 15] == near  # inside both triangles
        assert r.triangle[3, 3] == 0 and r.triangle[35, 12] == 1  # inside only one
        assert r.triangle[45, 45] == -1


def test_coverage_matches_area_and_interpolation_is_exact():
    pts = np.array([[10.3, 5.2], [90.1, 12.7], [40.6, 70.9]])
    r = rasterize(pts, np.zeros(3), np.array([[0, 1, 2]]), (80, 100))
    e1, e2 = pts[1] - pts[0], pts[2] - pts[0]
    area = 0.5 * abs(e1[0] * e2[1] - e1[1] * e2[0])
    assert abs(r.covered.sum() - area) / area < 0.03
    # A linear function of position is reproduced exactly by barycentric interpolation.
    values = np.stack([pts[:, 0] * 2 + pts[:, 1], pts[:, 1]], 1)
    out = r.interpolate(values, np.array([[0, 1, 2]]))
    ys, xs = np.nonzero(r.covered)
    np.testing.assert_allclose(out[ys, xs, 0], xs * 2 + ys, atol=1e-3)
    assert np.isnan(out[~r.covered]).all()


def test_offscreen_and_degenerate_triangles_are_ignored():
    pts = np.array([[-50, -50], [-10, -50], [-50, -10], [5, 5], [5, 5], [5, 5]], float)
    r = rasterize(pts, np.zeros(6), np.array([[0, 1, 2], [3, 4, 5]]), (20, 20))
    assert not r.covered.any()
