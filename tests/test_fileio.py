"""Atomic writers, safe output paths and defensive image reading, on files made in tmp_path."""
from __future__ import annotations

import json
import os
import warnings
from unittest import mock

import cv2
import numpy as np
import pytest

from tracker import fileio
from tracker.fileio import (
    ImageReadError,
    WriteError,
    atomic_file,
    atomic_output_dir,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_image,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    discard_dir,
    list_images,
    picture_array,
    read_image,
    remove_partial_outputs,
    safe_output_path,
    to_bgr8,
)

RNG = np.random.default_rng(0)
# Smooth content so lossy encodings stay close to the original.
IMAGE = cv2.GaussianBlur(RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8), (0, 0), 2)


def test_writers_round_trip_and_leave_no_temp_file(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "héllo\n")  # parent folder created
    atomic_write_json(tmp_path / "c.json", {"arr": np.arange(3), "x": np.float32(0.5), "n": np.int64(7)})
    atomic_save_npz(tmp_path / "d.npz", uv=np.ones((2, 3, 3), np.float32))
    atomic_write_image(tmp_path / "e.PNG", IMAGE)  # extension case does not matter
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    text = (tmp_path / "c.json").read_text()
    assert json.loads(text) == {"arr": [0, 1, 2], "x": 0.5, "n": 7} and text.startswith('{\n "arr"')  # indent 1
    with np.load(tmp_path / "d.npz") as z:
        assert z["uv"].shape == (2, 3, 3)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "e.PNG")), IMAGE)
    names = sorted(p.name for p in tmp_path.rglob("*"))
    assert names == ["a.bin", "b.txt", "c.json", "d.npz", "e.PNG", "sub"]


def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    atomic_write_text(tmp_path / "m.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_old_content_survives_a_failure_mid_write(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"version": "old"})

    class Crash(Exception):
        pass

    real_fdopen = os.fdopen

    def half_writer(fd, mode):
        f = real_fdopen(fd, mode)
        real_write = f.write

        def write(data):  # write half of the bytes, then die like a killed process would
            real_write(data[: len(data) // 2])
            raise Crash("killed mid-write")

        f.write = write
        return f

    monkeypatch.setattr(fileio.os, "fdopen", half_writer)
    with pytest.raises(Crash):
        atomic_write_json(target, {"version": "new", "payload": list(range(100))})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": "old"}
    assert list(tmp_path.iterdir()) == [target]  # the temp file was removed


def test_write_errors_name_the_users_file_not_the_temporary_one(tmp_path, monkeypatch):
    """A read-only folder (simulated: tests run as root, who may write anywhere) or a full disk."""
    import errno
    import tempfile

    def refuse(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abc{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError) as info:
        atomic_write_text(tmp_path / "out" / "a.json", "{}")
    assert str(info.value) == f"{tmp_path / 'out' / 'a.json'}: cannot write (Permission denied)"
    assert info.value.errno == errno.EACCES and isinstance(info.value, OSError)
    with pytest.raises(WriteError, match="b.json: cannot write"):
        check_writable(tmp_path / "b.json")
    monkeypatch.undo()
    check_writable(tmp_path / "new" / "deeper" / "c.json")  # leaves no file, nor the folders it made (verify 37)
    assert not (tmp_path / "new").exists()
    check_writable(tmp_path / "new" / "c.json", keep_folder=True)  # (an output folder: kept, empty)
    assert list((tmp_path / "new").iterdir()) == []
    with pytest.raises(WriteError, match="it is a folder"):
        check_writable(tmp_path / "new")
    with pytest.raises(OSError):  # a failed write leaves no folder it made either
        with atomic_file(tmp_path / "gone" / "e.csv", "w") as f:
            f.write("x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not (tmp_path / "gone").exists()
    note = WriteError(tmp_path / "d.json", OSError(errno.ENOSPC, "No space left on device")).with_note("3 kept")
    assert str(note).endswith("d.json: cannot write (No space left on device); 3 kept") and note.errno == errno.ENOSPC


def test_atomic_output_dir_is_complete_or_absent(tmp_path):
    target = tmp_path / "001"
    with pytest.raises(RuntimeError), atomic_output_dir(target) as d:
        (d / "000001.pts").write_text("x")
        raise RuntimeError("died mid-video")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its hidden stand-in
    target.mkdir()
    (target / "000007.pts").write_text("frame of an older, unfinished run")
    with atomic_output_dir(target) as d:
        assert d.parent == tmp_path and d.name.startswith(".001.densereg-partial-") and not target.joinpath("000001.pts").exists()
        (d / "000001.pts").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["001"] and sorted(p.name for p in target.iterdir()) == ["000001.pts"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700: other users of a shared folder can read it
    # A killed process leaves only hidden stand-ins: the folder, or the file an atomic write had
    # not renamed yet (named as atomic_write_bytes names it); remove_partial_outputs clears those
    # and nothing else.
    (tmp_path / ".002.densereg-partial-abc").mkdir()
    (tmp_path / ".002.densereg-partial-abc" / "000001.pts").write_text("x")
    (tmp_path / ".vid.partial.avi").write_text("a file of another writer")
    (tmp_path / "notes.tmp").write_text("not hidden: a user's file")
    (tmp_path / ".thesis draft.final.tmp").write_text("hidden, but a user's file (user test 13)")
    (tmp_path / ".003.partial-mine").mkdir()  # the same
    with mock.patch("os.unlink"), mock.patch("os.replace", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(tmp_path / "summary.json", b"x")  # killed (SIGKILL) before its own cleanup could run
    assert len(list(tmp_path.glob(".summary.json.*.densereg-tmp"))) == 1
    remove_partial_outputs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".003.partial-mine", ".thesis draft.final.tmp", ".vid.partial.avi", "001", "notes.tmp"]
    # ... but not a folder a live writer is filling: a second batch run into the same --out
    # deleted it, and the writer finished a video without its first frames (user test 21)
    with atomic_output_dir(tmp_path / "004") as live:
        (live / "000001.pts").write_text("x")
        remove_partial_outputs(tmp_path)
        assert (live / "000001.pts").exists()
    assert (tmp_path / "004" / "000001.pts").exists()


def test_long_names_get_stand_ins_that_fit(tmp_path):
    """A stand-in adds 23 bytes to its output's name: a legal 240-byte name could not be
    written ("File name too long"; user test 21)."""
    from tracker.fileio import NAME_MAX, remove_stale_temp_files, temp_name

    for name in ("é" * 120 + ".json", "a" * 250 + ".pts"):  # 245 and 254 bytes
        target = tmp_path / name
        atomic_write_text(target, "x")
        assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == [name]
        with mock.patch("os.unlink"), mock.patch("os.replace", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
            atomic_write_text(target, "y")  # killed before its cleanup
        (stand_in,) = [p for p in tmp_path.iterdir() if p.name != name]
        assert len(stand_in.name.encode()) <= NAME_MAX and temp_name(name) in stand_in.name
        remove_stale_temp_files(target)
        assert [p.name for p in tmp_path.iterdir()] == [name]
        target.unlink()
    assert temp_name("face.json") == "face.json" and temp_name("a" * 240) != temp_name("a" * 239 + "b")
    # a name that is not UTF-8 (Latin-1 from an old camera) is measured and cut as its bytes (review 30b)
    latin = os.fsdecode(b"\xe9" * 240 + b".json")
    atomic_write_text(tmp_path / latin, "z")
    assert (tmp_path / latin).read_text() == "z" and len(os.fsencode(temp_name(latin))) + 23 <= NAME_MAX


def test_output_folders_are_written_where_folders_cannot_be_locked(tmp_path, monkeypatch):
    """Windows has no fcntl (and cannot open a folder), NFS may refuse the lock: the folder is
    then filled unlocked, as before (review 30b: it failed on every call there)."""
    monkeypatch.setattr(fileio, "fcntl", None)
    with atomic_output_dir(tmp_path / ("v" * 250)) as d:
        (d / "000001.pts").write_text("x")
        assert len(os.fsencode(d.name)) <= 255
    assert (tmp_path / ("v" * 250) / "000001.pts").exists()


def test_float_and_other_depths_are_read_by_their_range_not_their_extremes():
    """One hot pixel or a few HDR highlights stretched a float picture black (user test 21)."""
    base = IMAGE.astype(np.float32)
    with_inf = base / 255
    with_inf[0, 0] = np.inf
    read = to_bgr8(with_inf)
    assert np.abs(read[1:].astype(int) - IMAGE[1:]).max() <= 1 and not read[0, 0].any()  # 0-1, the infinity read as 0
    assert np.abs(to_bgr8(base).astype(int) - IMAGE).max() <= 1  # float 0-255 as it is
    hdr = base / 255 * 4
    hdr[:2, :2] = 1000.0  # highlights
    with pytest.warns(UserWarning, match="are not 0-255"):
        out = to_bgr8(hdr)
    assert np.corrcoef(out[2:, 2:].ravel(), IMAGE[2:, 2:].ravel())[0, 1] > 0.99 and out[2:, 2:].std() > 30
    assert np.array_equal(to_bgr8(IMAGE.astype(np.int32)), IMAGE)  # any depth within 0-255 as it is
    assert np.array_equal(to_bgr8(np.ones((4, 4), np.int32)), np.ones((4, 4, 3), np.uint8))  # an int 0/1 mask is not 0-1 floats
    # review 30b: -1 to 1 data was clipped at 0 unsaid, and a 0-1 picture with one value above 2 read as 0-255 (black)
    with pytest.warns(UserWarning, match="stretched"):
        signed = to_bgr8(base / 127.5 - 1)
    assert np.corrcoef(signed.ravel(), IMAGE.ravel())[0, 1] > 0.99
    unit = base / 255
    unit[0, 0] = 5.0
    with pytest.warns(UserWarning, match="mostly within 0-1: read as 0-1, the others clipped"):
        read = to_bgr8(unit)
    assert np.abs(read[1:].astype(int) - IMAGE[1:]).max() <= 1


def test_a_resizes_overshoot_is_clipped_unsaid_and_a_video_warns_once():
    """A float 0-255 frame after a bicubic resize (-22..285) was warned about on every frame and
    contrast-stretched; a float BGRA texture's alpha was stretched with its colours, transparent
    texels came out faintly opaque (user test 22)."""
    base = IMAGE.astype(np.float32)
    overshoot = base.copy()
    overshoot[0, 0], overshoot[1, 1] = -22.0, 285.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(to_bgr8(overshoot)[2:], IMAGE[2:]) and to_bgr8(overshoot / 255)[0, 0].max() == 0
    frames = [base / 127.5 - 1 + k * 1e-3 for k in range(3)]  # a -1..1 video: other values, the same warning
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for frame in frames:
            to_bgr8(frame, "frame")
    assert len(seen) == 1 and "stretched" in str(seen[0].message)
    texture = np.dstack([base / 255, np.zeros(base.shape[:2], np.float32)])
    texture[0, 0] = (1.15, -0.1, 0.5, -0.08)  # colours and alpha as a bicubic resize leaves them
    read = picture_array(texture, "texture")
    assert read.shape == (*IMAGE.shape[:2], 4) and not read[..., 3].any() and np.array_equal(read[1:, :, :3], IMAGE[1:])
    signed = texture.copy()
    signed[..., :3] = signed[..., :3] * 2 - 1  # stretched colours; alpha still 0-1
    signed[..., 3] = 1.0
    with pytest.warns(UserWarning, match="stretched"):
        read = picture_array(signed, "texture")
    assert (read[..., 3] == 255).all() and np.corrcoef(read[..., :3].ravel(), IMAGE.ravel())[0, 1] > 0.99


def test_floats_read_by_their_core_hdr_is_never_black_and_sharpening_is_clipped():
    """A 0-1 float picture with 2% of highlights at 3, and radiance 0-4, were read as 0-255 (black,
    unsaid); a sharpened 0-1 frame was stretched instead of clipped (user test 23)."""
    unit = IMAGE.astype(np.float32) / 255
    highlights = unit.copy()
    highlights[RNG.random(IMAGE.shape[:2]) < 0.02] = 3.0
    with pytest.warns(UserWarning, match="read as 0-1, the others clipped"):
        read = to_bgr8(highlights)
    assert np.array_equal(read, np.clip(np.rint(highlights * 255), 0, 255).astype(np.uint8))
    highlights[: IMAGE.shape[0] // 8] = 6.0  # a blown-out sky over 12% of it: stretched 2.5-6x darker (user test 24)
    with pytest.warns(UserWarning, match="read as 0-1, the others clipped"):
        assert np.array_equal(to_bgr8(highlights), np.clip(np.rint(highlights * 255), 0, 255).astype(np.uint8))
    with pytest.warns(UserWarning, match="stretched"):
        radiance = to_bgr8(unit * 4)
    assert radiance.mean() > 100 and np.corrcoef(radiance.ravel(), IMAGE.ravel())[0, 1] > 0.99  # not black
    contrasty = np.clip((unit - 0.5) * 4 + 0.5, 0, 1)
    sharpened = contrasty + 0.6 * (contrasty - cv2.GaussianBlur(contrasty, (0, 0), 3))
    assert (sharpened < 0).mean() + (sharpened > 1).mean() > 0.005  # more than the tails beyond 0-1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(to_bgr8(sharpened), np.clip(np.rint(sharpened * 255), 0, 255).astype(np.uint8))
    with pytest.warns(UserWarning, match="stretched"):  # a float 0-255 picture this dark would be black
        assert to_bgr8(unit * 8).mean() > 60
    assert np.array_equal(to_bgr8(unit[::-1, ::-2]), to_bgr8(np.ascontiguousarray(unit[::-1, ::-2])))  # views
    with pytest.warns(UserWarning, match="stretched"):  # one value far out: a ZeroDivisionError (review 32)
        assert to_bgr8(np.full((4, 4, 3), 1e12)).min() == 255 and to_bgr8(np.full((4, 4), -5.0)).max() == 0
    with pytest.warns(UserWarning, match="stretched"):  # an opaque 0-65535 alpha came out transparent
        assert (picture_array(np.dstack([unit * 65535, np.full(IMAGE.shape[:2], 65535.0, np.float32)]), "t")[..., 3] == 255).all()


def test_warnings_name_the_line_that_called_the_library():
    """A fixed stacklevel named the caller's caller for some entry points (user test 23)."""
    from tracker.transfer import as_texture

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        to_bgr8(IMAGE / 127.5 - 1)
        picture_array(IMAGE / 127.5 - 1, "picture")
        as_texture(IMAGE / 127.5 - 1)
        to_bgr8(np.full((4, 5), 4095, np.uint16))
    assert [os.path.basename(w.filename) for w in seen] == [os.path.basename(__file__)] * 4
    # a script beside the package whose name starts like it (tracker_demo.py) is the caller (review 33: sys:1)
    import tracker

    beside_package = os.path.dirname(tracker.__file__) + "_demo.py"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        exec(compile("to_bgr8(image)", beside_package, "exec"), {"to_bgr8": to_bgr8, "image": IMAGE / 127.5 - 1})
    assert [w.filename for w in seen] == [beside_package]


@pytest.mark.parametrize("maxval", [15, 1023, 4095])
def test_netpbm_pictures_are_read_by_their_declared_maximum(tmp_path, maxval):
    """OpenCV returns a PGM's raw values: a 12-bit one came out black with a misleading warning
    about 16-bit data (user test 23)."""
    values = np.linspace(0, maxval, 40 * 60).reshape(40, 60).astype(">u2" if maxval > 255 else "u1")
    path = tmp_path / "deep.pgm"
    path.write_bytes(b"P5\n# a comment\n60 40\n%d\n" % maxval + values.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = read_image(path)
    assert read.shape == (40, 60, 3) and read.min() == 0 and read.max() == 255
    assert np.abs(read[..., 0].astype(float) - values * 255.0 / maxval).max() <= 0.5
    assert fileio.netpbm_maxval(np.frombuffer(b"P6 2 2 255 xxxxxxxxxxxx", np.uint8)) == 255
    ascii_pgm = tmp_path / "ascii.pgm"  # OpenCV scales an ASCII one under 256 itself: it was scaled twice (review 32)
    ascii_pgm.write_bytes(b"P2\n2 2\n100\n0 50 100 100\n")
    assert read_image(ascii_pgm)[..., 0].ravel().tolist() == [0, 127, 255, 255]
    assert fileio.netpbm_maxval(np.frombuffer(b"P4 2 2 xx", np.uint8)) is None


def test_a_radiance_hdr_picture_is_read(tmp_path):
    """OpenCV decodes Radiance .hdr in every build; it was named as not read (user test 24)."""
    from tracker.fileio import list_images

    unit = IMAGE.astype(np.float32) / 255
    assert cv2.imwrite(str(tmp_path / "sky.hdr"), unit)
    assert list_images(tmp_path) == [tmp_path / "sky.hdr"]
    assert np.abs(read_image(tmp_path / "sky.hdr").astype(int) - IMAGE).max() <= 3  # (its 8-bit mantissas)


def test_a_float_bgra_tiff_is_read(tmp_path):
    """OpenCV 5.1 decodes a float32 BGRA TIFF only unchanged: ``images`` called it corrupt (user test 24)."""
    unit = IMAGE.astype(np.float32) / 255
    assert cv2.imwrite(str(tmp_path / "bgra.tif"), np.dstack([unit, np.ones(IMAGE.shape[:2], np.float32)]))
    assert np.array_equal(read_image(tmp_path / "bgra.tif"), IMAGE)


def test_a_dark_0_255_frame_made_float_is_not_read_as_hdr():
    """A fade from black in 0-255 floats: its first frames (median under 1, 95th percentile under
    16) were read as 0-1 HDR, blown out, and the reading flipped as the fade went on (review 33).
    Whole numbers are 0-255 data made float; a dark frame of fractions is still ambiguous, read 0-1."""
    rng = np.random.default_rng(0)
    base = rng.random((120, 160, 3)) ** 4
    for top in (2, 3, 10, 15, 17, 40, 255):
        frame = np.rint(base * top).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert abs(to_bgr8(frame).mean() - frame.mean()) < 0.5, top
    assert to_bgr8((base * 10).astype(np.float32)).mean() > 100  # (fractions: as 0-1 HDR, as documented)
    assert to_bgr8(np.float32([[0, 1], [1, 0]])).max() == 255  # a 0/1 float mask is still 0-1


def test_a_float_picture_sequence_warns_once_for_the_clip(tmp_path):
    """Every frame of numbered float TIFFs warned, naming itself, and the first five twice (user test 23)."""
    from tracker.sources import SequenceSource

    for k in range(8):
        assert cv2.imwrite(str(tmp_path / f"{k:04d}.tif"), IMAGE.astype(np.float32) / 127.5 - 1 + k * 1e-3)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        source = SequenceSource(tmp_path / "%04d.tif")
        frames = [source.read() for _ in range(8)]
    assert all(f is not None and f.dtype == np.uint8 for f in frames)
    assert len(seen) == 1 and "%04d.tif: values are not 0-255" in str(seen[0].message)


def test_a_header_over_opencvs_pixel_limit_is_an_unreadable_picture(tmp_path):
    """cv2.imdecode raises instead of returning None: an internal error stopped ``images`` there,
    and ``video`` over numbered pictures lost its tables (user test 21)."""
    import struct

    ok, data = cv2.imencode(".jpg", IMAGE)
    data = bytearray(data.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # SOF0 height, width
    (tmp_path / "big.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="over OpenCV's limit of 2\\^30 pixels"):
        read_image(tmp_path / "big.jpg")


def test_unencodable_image_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="cannot encode"):
        atomic_write_image(tmp_path / "x.jpg", np.zeros((4, 4, 7), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_safe_output_path_keeps_outputs_inside(tmp_path):
    assert safe_output_path(tmp_path, "a/b.pts") == tmp_path / "a" / "b.pts"
    assert safe_output_path(tmp_path, "x..y.pts") == tmp_path / "x..y.pts"  # dots inside a name are fine
    bad = ["../x.pts", "a/../../x.pts", "a/../b.pts", "/etc/passwd", "C:\\x.pts", "C:x.pts", "\\\\server\\share\\x", "..\\x.pts", ""]
    for relative in bad:
        with pytest.raises(ValueError, match="refusing"):
            safe_output_path(tmp_path, relative)


def test_safe_output_path_refuses_a_symlink_that_leaves(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leave the output folder"):
        safe_output_path(tmp_path / "out", "link/x.pts")


def _save(path, image):
    ok, enc = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(enc.tobytes())


def test_read_image_converts_every_variant_to_bgr_uint8(tmp_path):
    _save(tmp_path / "gray.png", IMAGE[..., 0])
    _save(tmp_path / "rgba.png", cv2.cvtColor(IMAGE, cv2.COLOR_BGR2BGRA))
    _save(tmp_path / "deep.png", IMAGE.astype(np.uint16) * 257)
    _save(tmp_path / "deep_gray.png", IMAGE[..., 1].astype(np.uint16) * 257)
    _save(tmp_path / "photo.jpg", IMAGE)
    _save(tmp_path / "bitmap.bmp", IMAGE)
    _save(tmp_path / "scan.tif", IMAGE)
    _save(tmp_path / "web.webp", IMAGE)
    _save(tmp_path / "visage_é_顔.png", IMAGE)  # non-ASCII path
    for path in sorted(tmp_path.iterdir()):
        out = read_image(path)
        assert out.shape == (40, 60, 3) and out.dtype == np.uint8, path.name
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), cv2.merge([IMAGE[..., 0]] * 3))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), IMAGE)  # alpha dropped
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), IMAGE)  # 16-bit scaled back
    np.testing.assert_array_equal(read_image(tmp_path / "visage_é_顔.png"), IMAGE)


def test_read_image_paletted_png(tmp_path):
    image = pytest.importorskip("PIL.Image")
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (255, 0, 0)  # red on the right
    image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert out.shape == (8, 8, 3) and tuple(out[0, 7]) == (0, 0, 255) and tuple(out[0, 0]) == (0, 0, 0)


def test_read_image_reasons(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a jpeg")
    jpeg = cv2.imencode(".jpg", IMAGE)[1].tobytes()
    (tmp_path / "header_only.jpg").write_bytes(jpeg[:60])
    (tmp_path / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # cut inside the scan data
    png = cv2.imencode(".png", IMAGE)[1].tobytes()
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    _save(tmp_path / "line.png", np.zeros((1, 50, 3), np.uint8))
    (tmp_path / "folder.png").mkdir()
    cases = {
        "missing.png": "file not found",
        "empty.jpg": "empty file",
        "text.jpg": "not a decodable image",
        "header_only.jpg": "not a decodable image",
        "half.jpg": "not a decodable image",
        "half.png": "not a decodable image",
        "line.png": "too small",
        "folder.png": "cannot read",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageReadError, match=reason) as err:
            read_image(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_list_images_sorted_case_insensitive_and_optionally_recursive(tmp_path):
    for name in ("b.JPG", "a.png", "c.jpeg", "d.Bmp", "notes.txt", "e.gif", "sub/f.png", "sub/g.webp", "sub/h.TIF"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder named like an image is not an image
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")  # listed: reading it says "file not found"
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.jpeg", "d.Bmp", "gone.jpg"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "a.png", "b.JPG", "c.jpeg", "d.Bmp", "gone.jpg", "sub/f.png", "sub/g.webp", "sub/h.TIF"]
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "gone.jpg")


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF block (APP1) whose only tag is Orientation, as a phone writes a
    portrait photo: the pixels stored sideways, the tag saying how to turn them upright."""
    ifd = (1).to_bytes(2, "big") + (0x0112).to_bytes(2, "big") + (3).to_bytes(2, "big") + (1).to_bytes(4, "big")
    tiff = b"MM\x00\x2a" + (8).to_bytes(4, "big") + ifd + orientation.to_bytes(2, "big") + b"\x00\x00" + (0).to_bytes(4, "big")
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]


def test_read_image_turns_a_phone_photo_upright(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored image's left
    jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    (tmp_path / "phone.jpg").write_bytes(_with_exif_orientation(jpeg, 6))  # 6: turn 90 degrees clockwise to view
    (tmp_path / "plain.jpg").write_bytes(jpeg)
    upright = read_image(tmp_path / "phone.jpg")
    assert upright.shape == (60, 40, 3)  # turned: taller than wide
    assert upright[:10].mean() > 200 and upright[20:].mean() < 50  # the band is now on top
    assert read_image(tmp_path / "plain.jpg").shape == (40, 60, 3)


def test_frames_that_are_not_pictures_get_one_line_errors():
    for frame, reason in ((None, "is None"), (np.zeros((0, 5, 3), np.uint8), "not a picture"),
                          (np.zeros((4, 5, 2), np.uint8), "not a picture"),
                          ("a.jpg", r"not a picture \(str; .*a file is read by tracker.fileio.read_image\(path\)")):
        with pytest.raises(ImageReadError, match=reason) as err:
            to_bgr8(frame, "frame")
        assert "\n" not in str(err.value)
    deep = to_bgr8(np.full((4, 5), 65535, np.uint16))
    assert deep.shape == (4, 5, 3) and deep.dtype == np.uint8 and deep.min() == 255
    same = np.zeros((4, 5, 3), np.uint8)
    assert to_bgr8(same) is same  # a BGR uint8 frame is used as it is, no copy
    with pytest.warns(UserWarning, match="10- or 12-bit"):  # user test 10: 12-bit data came out black, silently
        to_bgr8(np.full((4, 5), 4095, np.uint16), "frame")
    hot = np.full((40, 50), 1023, np.uint16)
    hot[0, 0] = 65535  # one hot pixel hid 10-bit data (user test 24)
    with pytest.warns(UserWarning, match="10- or 12-bit"):
        to_bgr8(hot, "frame")


def test_a_library_warning_is_one_line_on_the_command_line(tmp_path, capsys):
    from tracker.cli import main

    cv2.imwrite(str(tmp_path / "dim.png"), np.full((64, 64), 4000, np.uint16))
    assert main(["images", "--input", str(tmp_path), "--out", str(tmp_path / "out")]) in (0, 1)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "12-bit" in x)
    assert line.startswith("warning: ") and "dim.png" in line and "UserWarning" not in err


def test_json_outputs_write_null_for_nan_and_infinity(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"nme": float("nan"), "fr": np.float64("inf"), "pts": np.array([[1.5, np.nan]]),
                                            "n": np.int64(3), "ok": [0.5, (2, float("-inf"))]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nme": None, "fr": None, "pts": [[1.5, None]], "n": 3, "ok": [0.5, [2, None]]}


def test_atomic_file_names_itself_only_for_its_own_errors(tmp_path):
    """Review of session 23: an OSError about something else in the block (a camera) was reported
    as a write error of the output file."""
    from tracker.fileio import atomic_file

    with pytest.raises(OSError) as err, atomic_file(tmp_path / "a.json", "w") as f:
        f.write("{")
        raise OSError(5, "camera unplugged")
    assert not isinstance(err.value, fileio.WriteError) and list(tmp_path.iterdir()) == []
    with atomic_file(tmp_path / "b.txt", "w") as f:
        f.write("ok")
    assert (tmp_path / "b.txt").read_text() == "ok"


@pytest.mark.parametrize("options", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]])
def test_a_jpeg_cut_short_is_refused_and_one_with_data_after_its_end_is_read(tmp_path, options):
    """A phone's motion photo (a JPEG with an MP4 appended after its end) was refused as truncated
    whenever the appended bytes held FF DA after their last FF D9 (review 26)."""
    from tracker.assets import DEMO_CLIP, DEMO_IMAGE

    picture = cv2.imread(str(DEMO_IMAGE))
    jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90, *options])[1].tobytes()
    clip = DEMO_CLIP.read_bytes()
    assert clip.rfind(b"\xff\xda") > clip.rfind(b"\xff\xd9")  # the case the old test got wrong
    for name, data in (("plain.jpg", jpeg), ("motion.jpg", jpeg + clip), ("motion2.jpg", jpeg + b"\xff\xda" + clip[:5000])):
        (tmp_path / name).write_bytes(data)
        np.testing.assert_array_equal(read_image(tmp_path / name), read_image(tmp_path / "plain.jpg"))
    for cut in (len(jpeg) // 5, len(jpeg) // 2, len(jpeg) - 3):
        (tmp_path / "cut.jpg").write_bytes(jpeg[:cut])
        with pytest.raises(ImageReadError, match="not a decodable image"):
            read_image(tmp_path / "cut.jpg")


def test_overlapping_quiet_opencv_blocks_put_back_the_level_from_before():
    """A read-ahead thread's decode and the main thread's can overlap: each block restoring the
    level it found could leave OpenCV silenced for good (review of session 32)."""
    from tracker.fileio import quiet_opencv

    before = cv2.utils.logging.getLogLevel()
    first, second = quiet_opencv(), quiet_opencv()
    first.__enter__()
    second.__enter__()  # opened while the first holds it silent
    first.__exit__(None, None, None)
    assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_SILENT  # the second is still open
    second.__exit__(None, None, None)
    assert cv2.utils.logging.getLogLevel() == before


def test_a_discarded_folder_goes_in_one_rename(tmp_path, monkeypatch):
    """A run killed while deleting a finished video's folder left it half-deleted; now it is moved
    aside first, and what a kill leaves there, ``remove_partial_outputs`` clears (review 35)."""
    import shutil

    video = tmp_path / "001"
    video.mkdir()
    for name in ("result.json", "000001.pts", "000002.pts"):
        (video / name).write_text(name)

    def killed(path, ignore_errors=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        discard_dir(video)
    monkeypatch.undo()
    assert not video.exists() and [p.name for p in tmp_path.iterdir()] != []
    remove_partial_outputs(tmp_path)
    assert list(tmp_path.iterdir()) == []
    discard_dir(video)  # absent: nothing to do


def test_atomic_output_dir_replaces_a_folder_another_attempt_put_there_meanwhile(tmp_path, monkeypatch):
    """Two attempts at one video (a retried Ray task whose first still ran): the second's rename met
    the first's new folder (not empty) and the finished video was reported skipped (review 36)."""
    target, rename, raced = tmp_path / "001", os.rename, []

    def racing(src, dst):
        if not raced:  # the other attempt finishes between this one's clean-up and its rename
            raced.append(1)
            os.mkdir(dst)
            with open(os.path.join(dst, "000001.pts"), "w") as f:
                f.write("the other attempt's")
        return rename(src, dst)

    monkeypatch.setattr(os, "rename", racing)
    with atomic_output_dir(target) as d:
        (d / "000001.pts").write_text("this attempt's")
    assert (target / "000001.pts").read_text() == "this attempt's" and sorted(p.name for p in tmp_path.iterdir()) == ["001"]


def test_atomic_file_is_renamed_while_its_stand_in_is_still_locked(tmp_path, monkeypatch):
    """Review 37: the stand-in was closed (unlocked) before its rename, so a second run's clean-up
    starting at that moment deleted it, and the whole table was lost."""
    from pathlib import Path

    import tracker.fileio as fio

    out = tmp_path / "table.csv"
    real_replace = os.replace

    def another_run_starts_now(src, dst):
        fio.remove_stale_temp_files(Path(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fio.os, "replace", another_run_starts_now)
    with fio.atomic_file(out, "w") as f:
        f.write("frame,time\n1,0.0\n")
    assert out.read_text() == "frame,time\n1,0.0\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
