"""Face transfer: the texture lands inside the face mask and nowhere else (synthetic dense maps,
no network), unwrapping and hole filling, and the `transfer` command end to end on the bundled
demo image and clip."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.assets import DEMO_CLIP, DEMO_IMAGE, TEXTURE_DIR
from tracker.cli import main
from tracker.crop import Roi
from tracker.densemaps import DenseMaps
from tracker.draw import warp_to_image
from tracker.errors import InputError
from tracker.pipeline import FaceResult
from tracker.transfer import close_pinholes, feathered_alpha, fill_holes, render_texture, splat, unwrap_face

S = 64  # crop side of the synthetic face
RED = (0, 0, 255)


@pytest.fixture
def face() -> FaceResult:
    """A disc-shaped face in a 64 px crop with UV ramps across it, placed at (40,30) in the
    image at 2x scale: everything render_texture needs, without a network."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) + 0.5
    uv = np.stack([xx / S, 1.0 - yy / S])  # u_h left to right, u_v bottom to top
    fg = (np.hypot(xx - S / 2, yy - S / 2) < 24).astype(np.float32)
    crop_to_image = np.array([[2.0, 0.0, 40.0], [0.0, 2.0, 30.0]])
    return FaceResult(roi=Roi(104, 94, 128), score=1.0, track_id=0, stages={}, detected=True,
                      maps=DenseMaps(uv, fg, np.zeros_like(fg)), crop_to_image=crop_to_image)


def _image_masks(face: FaceResult, shape) -> tuple[np.ndarray, np.ndarray]:
    """(touchable, interior): pixels the face mask reaches at all after warping, and pixels
    well inside it (beyond the feathered edge)."""
    mask = (face.maps.fg > 0.5).astype(np.float32)
    touchable = warp_to_image(mask, face.crop_to_image, shape) > 0
    interior = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25)))
    return touchable, warp_to_image(interior, face.crop_to_image, shape) > 0.999


def test_known_colour_inside_the_mask_and_nowhere_else(face):
    frame = np.full((200, 260, 3), 90, np.uint8)
    frame[::7] = 30  # texture in the target, so "unchanged" means something
    out = render_texture(frame, face, np.full((16, 16, 3), RED, np.uint8), strength=1.0, match="none")
    touchable, interior = _image_masks(face, frame.shape)
    assert interior.sum() > 0.2 * touchable.sum()  # the inner half of the radius: a real area
    assert np.array_equal(out[~touchable], frame[~touchable])
    assert np.abs(out[interior].astype(int) - RED).max() <= 1
    assert out is not frame and np.array_equal(frame[0, 0], (30, 30, 30))  # the input is not modified


def test_texture_alpha_and_strength(face):
    frame = np.full((200, 260, 3), 90, np.uint8)
    _, interior = _image_masks(face, frame.shape)
    clear = np.dstack([np.full((16, 16, 3), RED, np.uint8), np.zeros((16, 16), np.uint8)])
    assert np.array_equal(render_texture(frame, face, clear, 1.0, "none"), frame)
    half = render_texture(frame, face, np.full((16, 16, 3), RED, np.uint8), 0.5, "none")
    assert np.abs(half[interior].astype(int) - (45, 45, 172)).max() <= 1
    for bad in (float("nan"), 5.0, -1.0):  # NaN painted the square white, the others were clipped unsaid (user test 37)
        with pytest.raises(InputError, match="must be between 0 and 1"):
            render_texture(frame, face, clear, bad, "none")
    for size, supersample in ((0, 2), (64, 0), (2.5, 2), (float("nan"), 2), (None, 2), (100000, 2)):  # (size 0: a ZeroDivisionError)
        with pytest.raises(InputError, match="must be a whole number from 1 to"):
            unwrap_face(frame, face, size, supersample)
    assert unwrap_face(frame, face, np.int64(32), 2.0)[0].shape == (32, 32, 3)  # (a numpy integer failed in OpenCV; verify 37)


def test_shading_keeps_colours_under_flat_light(face):
    frame = np.full((200, 260, 3), 90, np.uint8)
    _, interior = _image_masks(face, frame.shape)
    out = render_texture(frame, face, np.full((16, 16, 3), RED, np.uint8), 1.0, "shading")
    assert np.abs(out[interior].astype(int) - RED).max() <= 2


def test_texture_follows_uv(face):
    """The left half of the texture paints the face's left half (u_h grows to the right)."""
    frame = np.zeros((200, 260, 3), np.uint8)
    texture = np.zeros((16, 16, 3), np.uint8)
    texture[:, 8:] = 255
    out = render_texture(frame, face, texture, 1.0, "none")
    _, interior = _image_masks(face, frame.shape)
    cx = 40 + 2 * S / 2
    xs = np.nonzero(interior)[1]
    left, right = interior.copy(), interior.copy()
    left[:, int(cx) - 4:] = False
    right[:, : int(cx) + 4] = False
    assert xs.min() < cx - 20 and xs.max() > cx + 20
    assert out[left].max() == 0 and out[right].min() == 255


def test_splat_close_pinholes_and_mirror():
    # Three colours at known UVs land on their texels; everything else is unseen.
    # Texel centres: column = u_h * 10, row = (1 - u_v) * 10; two colours share texel (1,1).
    tex, seen = splat(np.array([0.15, 0.15, 0.85]), np.array([0.85, 0.85, 0.15]), np.array([[10.0] * 3, [30.0] * 3, [200.0] * 3]), 10)
    assert seen.sum() == 2 and tex[1, 1, 0] == 20.0 and tex[8, 8, 0] == 200.0
    # A one-texel hole in a seen area is closed from its neighbours; a far one is not.
    texture, seen = np.full((20, 20, 3), 50.0, np.float32), np.ones((20, 20), bool)
    seen[5, 5] = False
    seen[:, 12:] = False
    closed, covered = close_pinholes(texture, seen)
    assert covered[5, 5] and closed[5, 5, 0] == pytest.approx(50.0)
    assert not covered[:, 16:].any()
    # Holes on one side are mirrored from the other, the rest inpainted.
    half = np.zeros((20, 20, 3), np.float32)
    half[:, :10] = np.linspace(0, 180, 10)[None, :, None]
    seen = np.zeros((20, 20), bool)
    seen[:, :10] = True
    filled = fill_holes(half, seen)
    assert filled.dtype == np.uint8 and np.array_equal(filled[:, 10:], np.round(half[:, :10][:, ::-1]).astype(np.uint8))


def test_unwrap_then_render_reproduces_the_face(face):
    """Unwrapping a face and painting the texture back gives the same picture inside the face."""
    frame = np.zeros((200, 260, 3), np.uint8)
    frame[..., 0] = np.linspace(0, 250, 260)[None].astype(np.uint8)
    frame[..., 1] = np.linspace(0, 250, 200)[:, None].astype(np.uint8)
    texture, coverage = unwrap_face(frame, face, size=64)
    assert texture.shape == (64, 64, 3) and 0.2 < coverage.mean() < 0.9
    out = render_texture(np.zeros_like(frame), face, texture, 1.0, "none")
    _, interior = _image_masks(face, frame.shape)
    assert np.abs(out[interior].astype(int) - frame[interior]).mean() < 6


def test_cli_transfer_image_and_bad_inputs(tmp_path, capsys):
    out = tmp_path / "painted.png"
    rc = main(["transfer", "--texture", str(TEXTURE_DIR / "grid.png"), "--target", str(DEMO_IMAGE), "--out", str(out), "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    source, painted = cv2.imread(str(DEMO_IMAGE)), cv2.imread(str(out))
    changed = np.abs(painted.astype(int) - source).max(axis=2) > 8
    assert painted.shape == source.shape and changed.sum() > 2000
    ys, xs = np.nonzero(changed)
    h, w = source.shape[:2]
    assert 0.1 * w < xs.mean() < 0.6 * w and ys.mean() < 0.5 * h  # the face: upper left of the portrait
    assert np.array_equal(painted[-60:], source[-60:])  # the helmet and suit are untouched
    capsys.readouterr()

    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    for argv, message in (
        (["--texture", str(tmp_path / "missing.png"), "--target", str(DEMO_IMAGE)], "texture not found"),
        (["--source-face", str(noise), "--target", str(DEMO_IMAGE)], "no face found in the --source-face photo"),
        (["--texture", str(TEXTURE_DIR / "grid.png"), "--target", str(noise)], "no face found in the target"),
        (["--texture", str(TEXTURE_DIR / "grid.png"), "--target", str(tmp_path / "nothing.mp4")], "file not found"),
        (["--texture", str(TEXTURE_DIR / "grid.png"), "--target", str(DEMO_IMAGE), "--device", "1"], "--device 1 goes with --target webcam"),
    ):
        suffix = ".mp4" if argv[-1].endswith(".mp4") else ".png"
        target = tmp_path / f"bad{suffix}"
        assert main(["transfer", *argv, "--out", str(target), "--threads", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
        assert not target.exists() and not list(tmp_path.glob(".bad*"))


def test_cli_transfer_video_from_source_face(tmp_path, capsys):
    out, saved = tmp_path / "swap.mp4", tmp_path / "unwrapped.png"
    rc = main(["transfer", "--source-face", str(DEMO_IMAGE), "--save-texture", str(saved), "--target", str(DEMO_CLIP),
               "--out", str(out), "--max-frames", "6", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    assert "face in" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 6 and cv2.imread(str(saved)).shape == (256, 256, 3)
    assert not list(tmp_path.glob(".swap*"))  # the temporary file was renamed


def test_cli_transfer_tracks_a_video_with_video_defaults(tmp_path, monkeypatch, capsys):
    """A video target is tracked as `video` tracks it (no test-time flipping: the picture
    default doubled the refiner's time on a camera and gave other points than the API); the
    source face, a picture, keeps the picture defaults."""
    import tracker.cli.stream as stream
    import tracker.cli.transfer as cli

    configs = []

    class Recording(cli.Tracker):
        def __init__(self, config):
            configs.append(config)
            super().__init__(config)

    monkeypatch.setattr(cli, "Tracker", Recording)
    monkeypatch.setattr(stream, "Tracker", Recording)  # the video run's (shared with `video`)
    rc = main(["transfer", "--source-face", str(DEMO_IMAGE), "--target", str(DEMO_CLIP), "--out", str(tmp_path / "o.mp4"),
               "--max-frames", "2", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    assert [(c.mode.value, c.refine_flip) for c in configs] == [("image", True), ("video", False)]
    assert configs[1].fast_network is None  # unset: the video default, as in the `video` command
    # and found as `video` finds faces: dlib's CNN now and then, the search inline on a file (it had neither; review 36)
    assert (configs[1].video_cnn_every, configs[1].detect_lag, configs[1].smooth) == (30, 0, True)


def test_cli_transfer_webcam_stops_on_ctrl_c_and_saves(tmp_path, fake_camera, capsys):
    """A webcam stream ends with Ctrl-C: what was recorded is saved (camera simulated by the clip)."""
    fake_camera(4, interrupt=True)
    out = tmp_path / "cam.mp4"
    assert main(["transfer", "--texture", str(TEXTURE_DIR / "facepaint.png"), "--target", "webcam", "--out", str(out), "--threads", "1"]) == 0
    assert "face in" in capsys.readouterr().out
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) >= 4  # paced: a frame per 1/30 s that passed


def test_a_huge_texture_is_shrunk_on_loading_and_keeps_its_alpha(tmp_path):
    from tracker.transfer import MAX_TEXTURE_SIDE, load_texture

    tex = np.zeros((3000, 6000, 4), np.uint8)
    tex[..., 3] = 255
    tex[:, :3000, 2] = 255  # red on the left half
    cv2.imwrite(str(tmp_path / "big.png"), tex)
    small = load_texture(tmp_path / "big.png")
    assert small.shape == (MAX_TEXTURE_SIDE // 2, MAX_TEXTURE_SIDE, 4)
    assert small[0, 0, 2] == 255 and small[0, -1, 2] == 0 and (small[..., 3] == 255).all()
    cv2.imwrite(str(tmp_path / "tiny.png"), tex[:8, :8, :3])
    assert load_texture(tmp_path / "tiny.png").shape == (8, 8, 3)  # small ones as they are


def test_the_blend_fades_at_the_face_outline_not_at_the_open_mouth():
    """Fading from the mouth's edge too took the lips with it: the face paint's red lips got
    ~0.2 of their weight (user test 8)."""
    yy, xx = np.mgrid[:128, :128]
    fg = ((xx - 64) ** 2 + (yy - 64) ** 2 < 55**2).astype(np.float32)
    mouth = (abs(xx - 64) < 12) & (abs(yy - 80) < 3)
    fg[mouth] = 0.0
    alpha = feathered_alpha(fg)
    lips = (abs(xx - 64) < 10) & ((yy == 76) | (yy == 84))  # just outside the opening
    assert alpha[lips].min() > 0.95 and alpha[mouth].max() == 0.0
    assert alpha[64, 64 - 53] < 0.2 and alpha[fg == 0].max() == 0.0  # the outline still fades; nothing outside


def test_shading_on_a_large_patch_matches_the_full_size_lighting():
    """The smoothed lighting is made on the patch shrunk to 256 px (a 4K face: 0.3 s a frame at
    full size); it must be the full-size field but for interpolation."""
    from tracker.transfer import match_colors

    h = w = 1200
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    light = 0.6 + 0.4 * np.sin(xx / 300.0) * np.cos(yy / 400.0)  # shading over the face
    rng = np.random.default_rng(0)
    target = np.clip(150 * light[..., None] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    weight = ((xx - 600) ** 2 + (yy - 600) ** 2 < 500**2).astype(np.float32)
    source = np.full((h, w, 3), 120.0, np.float32)
    got = match_colors(source, target, weight, "shading")
    # the full-size computation, as before
    region = weight > 0.5
    lum = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)[..., 0]
    sigma = 0.03 * w
    smooth = cv2.GaussianBlur(lum * region, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(region.astype(np.float32), (0, 0), sigma), 1e-3)
    want = np.clip(source * np.clip(smooth / lum[region].mean(), 0.2, 2.0)[..., None], 0, 255)
    inner = (xx - 600) ** 2 + (yy - 600) ** 2 < 480**2  # the face, away from its edge
    assert np.abs(got - want)[inner].max() < 2.0  # grey levels, of 120


def test_warp_to_image_refuses_channel_first_maps():
    """User test 10: face.maps.uv (2,S,S) came back as an (H,W,S) array of garbage."""
    m = np.eye(2, 3, dtype=np.float64)
    with pytest.raises(ValueError, match="channel-first"):
        warp_to_image(np.zeros((2, 16, 16), np.float32), m, (20, 20))
    assert warp_to_image(np.zeros((16, 16, 2), np.float32), m, (20, 20)).shape == (20, 20, 2)
    assert warp_to_image(np.zeros((16, 16), np.float32), m, (20, 20)).shape == (20, 20)


def test_the_transfer_reads_every_frame_the_tracker_reads(face):
    """Grey, BGRA and 16-bit frames crashed render_texture and unwrap_face (cv2.error, IndexError)
    and float ones mixed scales (user test 14): they are read as Tracker.track reads them."""
    from tracker.fileio import to_bgr8

    grey = np.tile(np.linspace(0, 250, 260).astype(np.uint8), (200, 1))
    texture = np.full((32, 32, 3), (0, 0, 255), np.uint8)
    for frame in (grey, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA), grey.astype(np.uint16) * 257, grey.astype(np.float32) / 255):
        as_bgr = to_bgr8(frame)
        out = render_texture(frame, face, texture, 0.7, "none")
        assert out.shape == (200, 260, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, render_texture(as_bgr, face, texture, 0.7, "none"))
        np.testing.assert_array_equal(unwrap_face(frame, face, size=32)[0], unwrap_face(as_bgr, face, size=32)[0])


def test_a_texture_array_paints_as_its_uint8_picture_whatever_its_type(face, tmp_path):
    """float 0-1 painted the face black, 16-bit white, and (3,H,W) in meaningless colours,
    silently (user test 18); a fully transparent texture file painted nothing, silently."""
    from tracker.fileio import ImageReadError
    from tracker.transfer import as_texture, load_texture

    frame = np.full((200, 260, 3), 90, np.uint8)
    tex = np.dstack([*np.meshgrid(np.linspace(0, 255, 32), np.linspace(40, 200, 32)), np.full((32, 32), 128.0)]).round().astype(np.uint8)
    want = render_texture(frame, face, tex, 0.8, "none")
    for same in (tex / 255.0, (tex / 255.0).astype(np.float32), tex.astype(np.float64), tex.astype(np.uint16) * 257):
        assert np.abs(render_texture(frame, face, same, 0.8, "none").astype(int) - want).max() <= 1
    overshoot = tex / 255.0
    overshoot[0, 0] = 1.157  # what a bicubic resize of a 0-1 texture gives: read as 0-255, it painted the face black (user test 19)
    assert np.abs(render_texture(frame, face, overshoot, 0.8, "none").astype(int) - want).mean() < 1
    overshoot[0, 0] = np.inf  # one bad value
    assert np.abs(render_texture(frame, face, overshoot, 0.8, "none").astype(int) - want).mean() < 1
    with pytest.warns(UserWarning, match="16-bit data below 4096"):
        as_texture(tex.astype(np.uint16))  # 8-bit values in 16 bits: nearly black, said
    grey = render_texture(frame, face, tex[:, :, 0], 0.8, "none")
    assert np.array_equal(grey, render_texture(frame, face, tex[:, :, :1], 0.8, "none"))
    assert np.array_equal(as_texture(tex[:, :, 0]), cv2.cvtColor(tex[:, :, 0], cv2.COLOR_GRAY2BGR))
    with pytest.raises(ImageReadError, match=r"channels come last: \.transpose\(1, 2, 0\)"):
        render_texture(frame, face, tex.transpose(2, 0, 1), 0.8, "none")
    clear = np.dstack([tex, np.zeros((32, 32), np.uint8)])
    assert as_texture(clear).shape == (32, 32, 4)  # alpha kept
    cv2.imwrite(str(tmp_path / "clear.png"), clear)
    with pytest.warns(UserWarning, match="fully transparent"):
        load_texture(tmp_path / "clear.png")
    with pytest.raises(InputError, match="load_texture takes a file's path, not ndarray: give an array to render_texture"):
        load_texture(tex)  # (pathlib's TypeError; user test 38)


def test_cli_transfer_says_which_frames_of_a_sequence_it_skipped(tmp_path, capsys):
    """An unreadable picture of a numbered sequence: `transfer` said all was well, exit 0, where
    `video` says so and exits 1 (user test 14)."""
    still = cv2.imread(str(DEMO_IMAGE))
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), still)
    (tmp_path / "0002.png").write_bytes(b"not a picture")
    argv = ["transfer", "--texture", str(TEXTURE_DIR / "grid.png"), "--target", str(tmp_path / "%04d.png"), "--out", str(tmp_path / "t.mp4")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "face in 3/3 frames, 1 frame skipped (the warnings say why)" in captured.out and "0002.png: not a decodable image" in captured.err


def test_apply_look_gives_bgr_whether_or_not_a_face_was_found():
    """Review 26: a grey frame came back grey without a face, BGR with one."""
    from tracker.pipeline import FrameResult
    from tracker.transfer import Look, apply_look

    grey = np.full((40, 50), 100, np.uint8)
    out = apply_look(grey, FrameResult([], {}), Look(np.zeros((8, 8, 3), np.uint8), 1.0, "none"))
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8


def test_a_bundled_texture_is_found_by_its_name(tmp_path, monkeypatch, capsys):
    """The README's tracker/assets/textures/grid.png exists only in a checkout (user test 25)."""
    from tracker.assets import TEXTURE_DIR, texture_path

    monkeypatch.chdir(tmp_path)
    assert texture_path("grid") == texture_path("grid.png") == TEXTURE_DIR / "grid.png"
    assert texture_path("sub/grid") == Path("sub/grid")  # a path is a path
    (tmp_path / "grid.png").write_bytes(b"mine")
    assert texture_path("grid.png") == Path("grid.png")  # the user's own file first
    rc = main(["transfer", "--texture", "nope", "--target", str(DEMO_IMAGE), "--out", str(tmp_path / "t.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: nope: texture not found or empty (bundled, by name: astronaut_unwrapped, facepaint, grid)"


def test_the_source_face_is_the_photos_main_face_not_its_best_scored(monkeypatch):
    """In a group photo the texture came from the best-scored face, another person than the one
    `images` writes (review 36)."""
    import types

    import tracker.transfer as transfer

    small = types.SimpleNamespace(roi=Roi(40, 40, 30), score=2.0, quality=0.6)
    central = types.SimpleNamespace(roi=Roi(256, 200, 200), score=0.5, quality=0.6)
    tracker = types.SimpleNamespace(track=lambda image: types.SimpleNamespace(faces=[small, central]))
    unwrapped = []
    monkeypatch.setattr(transfer, "unwrap_face", lambda image, face: (unwrapped.append(face) or np.zeros((8, 8, 3), np.uint8), None))
    transfer.unwrap_source_face(DEMO_IMAGE, tracker)
    assert unwrapped == [central]


def test_cli_transfer_ctrl_c_while_saving_keeps_the_saved_video_and_says_so(tmp_path, monkeypatch, capsys):
    """A Ctrl-C held while the video was renamed into place was raised after it: "interrupted;
    only complete files were written", exit 130, for a complete output (review 36)."""
    from tracker.video import AtomicVideoWriter

    close = AtomicVideoWriter.close

    def close_then_ctrl_c(self):  # Ctrl-C pressed while the video is saved: held until the saving ends
        import signal

        close(self)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(AtomicVideoWriter, "close", close_then_ctrl_c)
    out = tmp_path / "o.mp4"
    rc = main(["transfer", "--texture", "grid", "--target", str(DEMO_CLIP), "--out", str(out), "--max-frames", "3", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0 and "note: interrupted while saving: the outputs were saved first" in captured.err, captured.err
    assert "face in 3/3 frames" in captured.out and int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_cli_transfer_closes_the_camera_when_the_source_face_has_none(tmp_path, fake_camera, monkeypatch, capsys):
    """A camera opened before "no face found in the --source-face photo" stayed held, its reader
    thread in a read, until the program ended (review 36)."""
    import tracker.sources

    fake_camera(4)
    closed = []
    camera = tracker.sources.CameraSource
    monkeypatch.setattr(camera, "close", lambda self: closed.append(self.label), raising=False)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 120, np.uint8))
    assert main(["transfer", "--source-face", str(blank), "--target", "webcam", "--out", str(tmp_path / "o.mp4"), "--threads", "1"]) == 2
    assert "no face found in the --source-face photo" in capsys.readouterr().err and closed == ["webcam 0"]
