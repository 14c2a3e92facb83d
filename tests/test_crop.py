"""The face crop shared by training and run time: geometry, round trips, rotation, preprocessing."""
import cv2
import numpy as np
import pytest

from tracker.crop import (
    BOX_CALIBRATION,
    MEAN,
    ROI_SCALE,
    ROI_SHIFT_UP,
    STD,
    Roi,
    crop_matrix,
    roi_from_box,
    roi_from_landmarks,
    to_network_input,
    warp_image,
    warp_points_to_crop,
    warp_points_to_image,
)


def face_points(angle: float = 0.0, centre=(200.0, 150.0), size: float = 100.0) -> np.ndarray:
    """68 points filling a size x size box, outer eye corners (36, 45) level in the face frame,
    rotated by `angle` about `centre`."""
    rng = np.random.default_rng(0)
    p = rng.uniform(-0.5, 0.5, (68, 2))
    p[[0, 1]] = [[-0.5, -0.5], [0.5, 0.5]]  # span the whole box
    p[36], p[45] = [-0.3, -0.2], [0.3, -0.2]
    c, s = np.cos(angle), np.sin(angle)
    return size * p @ np.array([[c, s], [-s, c]]) + centre


def test_roi_centre_maps_to_crop_centre_and_size_to_crop_side():
    roi = Roi(310.0, 240.0, 200.0, 0.4)
    m = crop_matrix(roi, 128)
    np.testing.assert_allclose(m @ [310.0, 240.0, 1.0], [63.5, 63.5])
    np.testing.assert_allclose(np.linalg.det(m[:, :2]), (128 / 200) ** 2)


@pytest.mark.parametrize("angle", [0.0, 0.5, -2.0])
def test_point_round_trip(angle):
    roi = Roi(100.0, 80.0, 64.0, angle)
    pts = np.random.default_rng(1).uniform(0, 200, (20, 2))
    np.testing.assert_allclose(warp_points_to_image(warp_points_to_crop(pts, roi, 96), roi, 96), pts, atol=1e-9)


def test_rotation_turns_the_roi_axis_onto_the_crop_x_axis():
    angle = np.radians(30)
    roi = Roi(50.0, 60.0, 40.0, angle)
    along = np.array([[50 + 10 * np.cos(angle), 60 + 10 * np.sin(angle)]])  # 10 px along the ROI's x axis
    np.testing.assert_allclose(warp_points_to_crop(along, roi, 40), [[19.5 + 10, 19.5]], atol=1e-9)


def test_warped_image_agrees_with_warped_points():
    img = np.zeros((240, 320, 3), np.uint8)
    dot = np.array([[180.0, 90.0]])
    cv2.circle(img, (180, 90), 3, (255, 255, 255), -1)
    roi = Roi(160.0, 120.0, 150.0, np.radians(-25))
    crop = warp_image(img, roi, 128)
    assert crop.shape == (128, 128, 3)
    ys, xs = np.nonzero(crop[..., 0] > 60)
    w = crop[ys, xs, 0].astype(float)
    np.testing.assert_allclose([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()], warp_points_to_crop(dot, roi, 128)[0], atol=0.5)


def test_a_crop_that_shrinks_a_lot_is_block_averaged_first_with_the_same_picture():
    """A caller's box 19x a 3000 px photo blurred the picture with a 400 px sigma: minutes
    (user test 22).  Block-averaging first must give the crop the full blur gives, in place."""
    from tracker import crop as crop_module

    rng = np.random.default_rng(3)
    img = cv2.resize(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8), (1500, 1500), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (900, 700), 120, (255, 255, 255), -1)
    roi = Roi(760.0, 740.0, 1000.0, 0.3)  # zoom 20.8, inside the picture
    fast = warp_image(img, roi, 48).astype(int)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(crop_module, "PRESHRINK_ZOOM", np.inf)
        full = warp_image(img, roi, 48).astype(int)
    assert np.abs(fast - full).mean() < 1.5 and np.abs(fast - full).max() < 10
    sigmas = []
    blur = cv2.GaussianBlur
    with pytest.MonkeyPatch.context() as mp:  # the blur the crop pays for: small, whatever the zoom (review 32)
        mp.setattr(crop_module.cv2, "GaussianBlur", lambda im, k, sigma: sigmas.append(sigma) or blur(im, k, sigma))
        assert warp_image(img, Roi(750.0, 750.0, 1500.0 * 19, 0.0), 64).shape == (64, 64, 3)
    assert len(sigmas) == 1 and sigmas[0] < 3


def test_roi_from_landmarks_upright():
    roi = roi_from_landmarks(face_points())
    assert roi.angle == pytest.approx(0.0)
    assert roi.size == pytest.approx(ROI_SCALE * 100)
    assert (roi.cx, roi.cy) == pytest.approx((200.0, 150.0 - ROI_SHIFT_UP * 100))  # shifted up: the forehead


def test_roi_from_landmarks_follows_the_eye_line_and_shifts_up_in_the_face_frame():
    angle = np.radians(25)
    pts = face_points(angle)
    roi = roi_from_landmarks(pts)
    assert roi.angle == pytest.approx(angle)
    box_centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    # the box centre sits straight below the crop centre in the upright crop
    np.testing.assert_allclose(warp_points_to_crop(box_centre[None], roi, 100)[0], [49.5, 49.5 + 100 * ROI_SHIFT_UP / ROI_SCALE])


def test_roi_from_landmarks_ignores_missing_points():
    pts = face_points()
    pts[[5, 60]] = np.nan  # interior points: the box (points 0 and 1) and the eyes are unchanged
    assert roi_from_landmarks(pts) == roi_from_landmarks(face_points())


def test_roi_from_box_is_upright_and_calibrated():
    roi = roi_from_box(100, 50, 180, 130)
    scale, shift = BOX_CALIBRATION["hog"]
    assert roi == Roi(140.0, 90.0 - shift * 80, scale * 80, 0.0)


def test_network_input_is_normalised_rgb_nchw():
    bgr = np.zeros((2, 8, 8, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    x = to_network_input(bgr)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, :, 0, 0], (np.array([255, 0, 0]) - MEAN) / STD, rtol=1e-6)
    assert to_network_input(bgr[0]).shape == (1, 3, 8, 8)


def test_network_input_table_is_the_arithmetic_exactly():
    """uint8 crops go through a lookup table: every value of every channel must come out as the
    float32 arithmetic gives it (and float crops still take the arithmetic)."""
    values = np.arange(256, dtype=np.uint8)
    bgr = np.stack(np.meshgrid(values, values[::-1], indexing="ij"), -1)[..., [0, 1, 0]]  # (256,256,3)
    bgr[..., 2] = np.roll(values, 7)[None]
    want = ((bgr[..., ::-1].astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
    assert np.array_equal(to_network_input(bgr), want)
    assert np.array_equal(to_network_input(bgr.astype(np.float32)), want)


def test_a_crops_patch_is_the_pixels_it_covers():
    """A 4 px crop at zoom 2 whose first pixel covers image pixels 10-11: the patch is pixels
    10-17 (it was shifted by half a crop pixel, 10-18; review 35), clipped by the picture."""
    from tracker.crop import crop_patch

    to_image = np.array([[2.0, 0, 10.5], [0, 2.0, 20.5]])
    patch = crop_patch(to_image, 4, (100, 100))
    assert (patch.x0, patch.y0, patch.shape) == (10, 20, (8, 8))
    clipped = crop_patch(to_image, 4, (24, 15))
    assert (clipped.x0, clipped.y0, clipped.shape) == (10, 20, (4, 5))
    assert crop_patch(to_image, 4, (20, 10)) is None  # off the picture
