"""TrackerConfig checks itself on construction; every network runs on the engine the config
names, built for the batches the config allows; every face carries its dense maps."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

import tracker.pipeline as pipeline
from engines import available_engines, load_engine, resolve_kind
from engines.base import EngineError, in_chunks
from tracker.assets import ASSETS, DEMO_CLIP, record
from tracker.crop import to_network_input, warp_image
from tracker.densemaps import DenseMaps, flip_averaged
from tracker.errors import ConfigError, TrackerError, UsageError
from tracker.pipeline import DENSEREG_ASSET, FAST_DENSEREG_ASSET, LANDMARK_TARGETS, Tracker, TrackerConfig, TrackerMode, engine_batches
from tracker.refiner import DEFAULT_REFINERS, ONE_STAGE, int8_variant, refine_cascade

DEMO = Path(__file__).resolve().parents[1] / "tracker" / "assets" / "demo" / "astronaut.jpg"

# -- validation ----------------------------------------------------------------------------


def test_mode_is_an_enum_that_accepts_its_strings():
    assert TrackerConfig().mode is TrackerMode.IMAGE
    video = TrackerConfig(mode="video")
    assert video.mode is TrackerMode.VIDEO and video.mode == "video" and str(video.mode) == "video"
    assert TrackerConfig(mode=TrackerMode.VIDEO) == video
    assert dataclasses.replace(TrackerConfig(), mode="video").mode is TrackerMode.VIDEO
    assert f"{video.mode}" == "video"


def test_a_mode_typo_is_a_clear_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"^TrackerConfig.mode='vidoe': must be one of image, video$") as err:
        TrackerConfig(mode="vidoe")
    assert isinstance(err.value, ValueError) and isinstance(err.value, TrackerError)
    with pytest.raises(ConfigError, match="mode"):
        dataclasses.replace(TrackerConfig(), mode="Video")  # replace() checks too
    with pytest.raises(ConfigError, match="mode"):
        TrackerConfig(mode=1)


def test_engine_and_refiners_are_checked():
    with pytest.raises(ConfigError, match=r"TrackerConfig.engine='cuda': must be one of auto, onnx, torch, tensorrt"):
        TrackerConfig(engine="cuda")
    with pytest.raises(ConfigError, match="refiners.*mdm_refiner.onnx, mdm_fine.onnx"):
        TrackerConfig(refiners=("mdm_coarse.onnx",))
    with pytest.raises(ConfigError, match="refiners"):
        TrackerConfig(refiners="mdm_fine.onnx")  # a string, not a tuple of names
    assert TrackerConfig(refiners=["mdm_fine.onnx"]).refiners == ("mdm_fine.onnx",)  # a list becomes a (hashable) tuple
    assert TrackerConfig(refiners=()).refiners == ()


@pytest.mark.parametrize("field, value, rule", [
    ("threads", 0, "a whole number >= 1"), ("threads", 2.5, "a whole number"), ("threads", True, "a whole number"),
    ("max_faces", 0, ">= 1"), ("detect_every", 0, ">= 1"), ("min_face", -1, ">= 0"), ("video_cnn_every", -3, ">= 0"),
    ("detect_threshold", float("nan"), "a finite number"), ("fg_threshold", 1.0, r"in \(0, 1\)"), ("fg_threshold", 0, r"in \(0, 1\)"),
    ("lost_fg_fraction", -0.1, r"in \[0, 1\]"), ("lost_confidence", 1.5, r"in \[0, 1\]"), ("lost_refiner_step", -1, ">= 0"),
    ("smooth_min_cutoff", 0.0, "> 0"), ("smooth_beta", "1", ">= 0"),
    ("cnn_fallback", "no", "True or False"), ("refine_flip", "yes", "True or False"), ("smooth", 1, "True or False"),
    ("assets", 3, "a folder"),
])
def test_numbers_out_of_range_are_one_line_errors(field, value, rule):
    with pytest.raises(ConfigError, match=rf"^TrackerConfig.{field}={value!r}: must be .*{rule}") as err:
        TrackerConfig(**{field: value})
    assert "\n" not in str(err.value)


def test_edge_values_are_accepted():
    config = TrackerConfig(threads=1, max_faces=np.int64(1), detect_every=1, min_face=0, video_cnn_every=0, detect_threshold=-0.5,
                           fg_threshold=0.01, lost_fg_fraction=0, lost_confidence=1, lost_refiner_step=0, smooth_beta=0)
    assert config.max_faces == 1 and config.fg_threshold == 0.01
    assert TrackerConfig(assets=str(ASSETS)).assets == ASSETS and TrackerConfig(refine=np.bool_(False)).refine == False  # noqa: E712


# -- engines: which, and for which batch ---------------------------------------------------------


@pytest.fixture
def loads(monkeypatch):
    """Every load_engine call of the Tracker, (model, kind, max_batch), served by ONNX Runtime."""
    calls = []

    def recording(path, kind="auto", threads=2, max_batch=1, calls_side_by_side=1, one_sample_per_call=False):
        calls.append((Path(path).name, kind, max_batch))
        return load_engine(path, "onnx", threads, max_batch, calls_side_by_side, one_sample_per_call)

    monkeypatch.setattr(pipeline, "load_engine", recording)
    return calls


@pytest.mark.parametrize("engine", ["onnx", "torch", "tensorrt", "auto"])
def test_every_network_runs_on_the_configured_engine(loads, engine):
    Tracker(TrackerConfig(engine=engine, threads=1))
    kind = resolve_kind(engine)  # "auto": TensorRT where usable, else ONNX Runtime
    assert kind in ("onnx", "tensorrt") if engine == "auto" else kind == engine
    refiners = [int8_variant(name) if kind == "onnx" else name for name in DEFAULT_REFINERS]  # the CPU runs the int8 variants
    assert [(name, k) for name, k, _ in loads] == [(DENSEREG_ASSET, kind)] + [(name, kind) for name in refiners]


class _Closing:
    """An engine that only records being closed."""

    def __init__(self, closed: list):
        self.closed = closed

    def close(self):
        self.closed.append(self)


@pytest.fixture
def tensorrt_fails_on_the_first_refiner(monkeypatch):
    """TensorRT looks usable, DenseReg's engine builds, the first refiner's build fails."""
    closed, kinds = [], []

    def load(path, kind="auto", threads=2, max_batch=1, calls=1, one_sample_per_call=False):
        kinds.append(kind)
        if kind == "tensorrt":
            if Path(path).name != DENSEREG_ASSET:
                raise EngineError("TensorRT engine build failed")
            return _Closing(closed)
        return load_engine(path, kind, threads, max_batch, calls, one_sample_per_call)

    monkeypatch.setattr(pipeline, "resolve_kind", lambda engine: "tensorrt" if engine in ("auto", "tensorrt") else engine)
    monkeypatch.setattr(pipeline, "load_engine", load)
    return closed, kinds


def test_auto_runs_onnx_runtime_when_a_tensorrt_build_fails(tensorrt_fails_on_the_first_refiner, caplog):
    closed, kinds = tensorrt_fails_on_the_first_refiner
    tracker = Tracker(TrackerConfig(engine="auto", threads=1))
    assert kinds[:2] == ["tensorrt", "tensorrt"] and set(kinds[2:]) == {"onnx"} and len(kinds) == 2 + 1 + len(DEFAULT_REFINERS)
    assert len(closed) == 1  # the TensorRT engine built before the failure was released
    assert "onnx" in tracker.describe() and len(tracker.refiners) == len(DEFAULT_REFINERS)
    assert "TensorRT engine build failed; auto runs ONNX Runtime on the CPU instead" in caplog.text
    assert len(tracker.track(cv2.imread(str(DEMO))).faces) == 1


def test_an_explicit_tensorrt_engine_reports_its_build_failure(tensorrt_fails_on_the_first_refiner):
    closed, kinds = tensorrt_fails_on_the_first_refiner
    with pytest.raises(EngineError, match="build failed"):
        Tracker(TrackerConfig(engine="tensorrt", threads=1))
    assert kinds == ["tensorrt", "tensorrt"] and len(closed) == 1


CORE_ASSETS = [DENSEREG_ASSET, "shape_pca.npz", "template.npz", LANDMARK_TARGETS]


def put_assets(folder: Path, names, source: dict[str, str] | None = None) -> Path:
    """Copies of shipped assets in `folder`, recorded in its MANIFEST.json; `source`: for some
    names, the shipped file to copy under that name instead."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes((ASSETS / (source or {}).get(name, name)).read_bytes())
        record(folder / name, folder / "MANIFEST.json")
    return folder


def test_int8_false_runs_the_float_refiners_and_a_folder_without_variants_falls_back(loads, tmp_path):
    Tracker(TrackerConfig(engine="onnx", threads=1, int8=False))
    assert [name for name, _, _ in loads[1:]] == list(DEFAULT_REFINERS)
    folder = put_assets(tmp_path / "assets", [*CORE_ASSETS, *DEFAULT_REFINERS])  # an older export: the float graphs only
    loads.clear()
    Tracker(TrackerConfig(engine="onnx", threads=1, assets=folder))
    assert [name for name, _, _ in loads[1:]] == list(DEFAULT_REFINERS)


def test_video_runs_the_fast_network_where_the_folder_has_it(loads, tmp_path):
    folder = put_assets(tmp_path / "assets", [*CORE_ASSETS, *map(int8_variant, DEFAULT_REFINERS), *DEFAULT_REFINERS])

    def densereg(**fields) -> str:
        loads.clear()
        Tracker(TrackerConfig(engine="onnx", threads=1, assets=folder, **fields))
        return loads[0][0]

    assert densereg(mode="video") == DENSEREG_ASSET  # an older folder: the full network
    with pytest.raises(TrackerError, match=FAST_DENSEREG_ASSET):
        densereg(mode="video", fast_network=True)
    put_assets(folder, [FAST_DENSEREG_ASSET], {FAST_DENSEREG_ASSET: DENSEREG_ASSET})  # chosen by name: any DenseReg graph
    assert densereg(mode="video") == FAST_DENSEREG_ASSET
    assert densereg(mode="image") == DENSEREG_ASSET
    assert densereg(mode="video", fast_network=False) == DENSEREG_ASSET
    assert densereg(mode="image", fast_network=True) == FAST_DENSEREG_ASSET
    with pytest.raises(ConfigError, match="fast_network"):
        TrackerConfig(fast_network="yes")


def test_assets_option_is_the_model_folder_and_batch_runs_record_what_it_holds(tmp_path):
    from tracker.cli import build_parser
    from tracker.cli.batch300vw import output_options

    folder = put_assets(tmp_path / "assets", [*CORE_ASSETS, *DEFAULT_REFINERS])  # no fast network
    parser = build_parser()
    mine = TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4", "--assets", str(folder)]), mode="video")
    assert mine.assets == folder
    shipped = TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4"]), mode="video")
    assert shipped.assets is None
    # what a batch run records is what the tracker runs: this folder has no fast network to choose
    assert output_options(shipped)["fast_network"] and "assets" not in output_options(shipped)
    assert not output_options(mine)["fast_network"] and output_options(mine)["assets"] == str(folder.resolve())
    for wrong, why in ((tmp_path / "missing", "no such folder"), (folder / "template.npz", "not a folder")):
        with pytest.raises(UsageError, match=f"--assets: .*{why}"):
            parser.parse_args(["images", "--input", "a", "--out", "b", "--assets", str(wrong)])


def test_an_int8_variant_of_another_float_graph_is_refused(tmp_path):
    """A `_int8.onnx` left from an earlier export names the float graph it was made from: beside
    a different float graph the tracker says so instead of running a mismatched pair."""
    fine, fine8 = DEFAULT_REFINERS[1], int8_variant(DEFAULT_REFINERS[1])
    folder = put_assets(tmp_path / "assets", [*CORE_ASSETS, *DEFAULT_REFINERS, *map(int8_variant, DEFAULT_REFINERS)],
                        {fine: ONE_STAGE[0]})  # another float fine stage
    with pytest.raises(TrackerError, match=f"{fine8}: made from another {fine}"):
        Tracker(TrackerConfig(engine="onnx", threads=1, assets=folder))
    Tracker(TrackerConfig(engine="onnx", threads=1, assets=folder, int8=False))  # the float graphs still run


def test_resolve_kind_rejects_an_unknown_engine():
    with pytest.raises(EngineError, match="unknown engine 'cuda'"):
        resolve_kind("cuda")


@pytest.mark.parametrize("int8", [False, True])
def test_a_batch_split_into_calls_side_by_side_gives_the_one_call_answer(int8):
    """On the CPU a frame's faces are split into up to `threads` network calls side by side,
    each on one thread; the faces, their order, ids and every stage's points are those of one
    call (to a few hundredths of a pixel with the int8 refiners, whose activations are quantized
    with one scale per call: a face's batch-mates move it a little)."""
    still = cv2.imread(str(DEMO))
    image = np.hstack([still, still[:, ::-1], still])
    boxes = [(179, 83, 267, 171), (756, 83, 844, 171), (1203, 83, 1291, 171)]  # the face in each copy
    results = {}
    for threads in (1, 2, 3):
        with Tracker(TrackerConfig(mode="image", engine="onnx", threads=threads, cnn_fallback=False, int8=int8)) as tracker:
            assert tracker.engine.device == "CPU (1 thread)"
            assert tracker.describe() == ("onnx on CPU (1 thread)" if threads == 1 else
                                          f"onnx on CPU, {threads} threads: one face a thread, up to {threads} faces at once")
            results[threads] = tracker.track(image, boxes=boxes).faces
    one = results[1]
    assert [f.box.x0 for f in one] == [179, 756, 1203]
    for faces in (results[2], results[3]):
        assert [(f.track_id, f.box, f.score) for f in faces] == [(f.track_id, f.box, f.score) for f in one]
        for f, g in zip(faces, one):
            assert f.stages.keys() == g.stages.keys()
            for k in f.stages:
                np.testing.assert_allclose(f.stages[k].points, g.stages[k].points, atol=0.1 if int8 else 0)


def test_an_engine_splits_a_batch_into_calls_and_joins_them_in_order():
    """Each part is one ONNX Runtime call on its own thread; the joined outputs are the whole
    batch's, row for row (the float refiner: exact)."""
    from engines.onnx_engine import OnnxEngine

    path = ASSETS / DEFAULT_REFINERS[1]
    rng = np.random.default_rng(0)
    feed = {"image": rng.normal(size=(5, 1, 208, 208)).astype(np.float32),
            "init": (rng.random((5, 68, 2)) * 150 + 30).astype(np.float32)}
    whole = OnnxEngine(path, threads=1).infer(feed)["points"]
    split = OnnxEngine(path, threads=1, calls=3)
    seen = []
    run = split._run
    split._run = lambda arrays: seen.append(len(arrays["image"])) or run(arrays)
    np.testing.assert_array_equal(split.infer(feed)["points"], whole)
    assert sorted(seen) == [1, 2, 2]
    seen.clear()
    split.infer({k: v[:1] for k, v in feed.items()})
    assert seen == [1]  # one face: one call, no thread
    split.close()


def test_max_batch_follows_max_faces_and_flip(loads):
    Tracker(TrackerConfig(max_faces=3, threads=1, refine_flip=False))
    Tracker(TrackerConfig(max_faces=3, refine_flip=True, threads=1))
    Tracker(TrackerConfig(max_faces=1, refine=False, threads=1))
    Tracker(TrackerConfig(max_faces=2, dense_flip=True, refine=False, threads=1))
    assert [batch for _, _, batch in loads] == [3, 3, 3, 3, 6, 6, 1, 4]
    assert engine_batches(TrackerConfig(max_faces=5, refine_flip=True)) == (5, 10)
    assert engine_batches(TrackerConfig(max_faces=5, dense_flip=True, refine_flip=False)) == (10, 5)


def test_a_batch_larger_than_the_engine_runs_in_chunks():
    sizes = []

    def run(arrays):
        sizes.append(len(arrays["image"]))
        return {"double": arrays["image"] * 2, "sum": arrays["image"].sum(axis=1) + arrays["init"][:, 0]}

    x = {"image": np.arange(20, dtype=np.float32).reshape(5, 4), "init": np.arange(5, dtype=np.float32)[:, None]}
    whole = run(x)
    sizes.clear()
    chunked = in_chunks(run, x, 2)
    assert sizes == [2, 2, 1]
    assert chunked.keys() == whole.keys() and all(np.array_equal(chunked[k], whole[k]) for k in whole)
    sizes.clear()
    in_chunks(run, x, 5)
    assert sizes == [5]


def test_tensorrt_cache_key_includes_the_batch():
    from engines.tensorrt_engine import cache_key

    assert cache_key(b"m", "GPU", (9, 0), "10.3", 4) != cache_key(b"m", "GPU", (9, 0), "10.3", 8)


@pytest.mark.gpu
def test_tensorrt_tracker_takes_more_boxes_than_max_faces():
    """The caller's boxes are not capped by max_faces: a batch beyond the engine's runs in chunks
    (three boxes on one face: one face comes back, as on ONNX Runtime)."""
    reason = available_engines()["tensorrt"]
    if reason:
        pytest.skip(f"TensorRT unavailable here: {reason}")
    image = cv2.imread(str(DEMO))
    trt = Tracker(TrackerConfig(engine="tensorrt", max_faces=1, threads=1))  # image mode: the refiner's batch holds the mirrored face
    assert trt.engine.max_batch == 1 and trt.refiners[0].infer.__self__.max_batch == 2
    assert len(trt.track(image, boxes=[(179, 83, 267, 171)] * 3).faces) == 1


@pytest.mark.slow
def test_torch_refiner_matches_onnx_on_the_demo_face():
    """The torch engine runs the refiner stages from their .pt deployables, and refines the
    demo face to the ONNX answer (measured: 0.005 px apart; 0.00003 px with flipping)."""
    reason = available_engines()["torch"]
    if reason:
        pytest.skip(f"torch engine: {reason}")
    image = cv2.imread(str(DEMO))
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    onnx = Tracker(TrackerConfig(engine="onnx", threads=1, cnn_fallback=False, int8=False))  # the float graphs: the .pt's twins
    torch = Tracker(TrackerConfig(engine="torch", threads=1, cnn_fallback=False))
    assert [r.infer.__self__.name for r in torch.refiners] == ["torch", "torch"] and torch.engine.name == "torch"
    start = onnx.track(image).faces[0].stages["pca"].points
    flip = np.load(pipeline.verified_asset("template.npz"))["flip_permutation"]
    for permutation in (None, flip):
        a = refine_cascade(onnx.refiners, gray, start, permutation)[-1][0].points
        b = refine_cascade(torch.refiners, gray, start, permutation)[-1][0].points
        assert np.hypot(*(a - b).T).max() < 0.05


# -- dense maps on every face ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["image", "video"])
def test_every_face_has_its_dense_maps(mode):
    image = cv2.imread(str(DEMO))
    tracker = Tracker(TrackerConfig(mode=mode, threads=1, cnn_fallback=False))
    for _ in range(2):  # in video, the second frame is tracked, not detected
        faces = tracker.track(image).faces
        assert faces
        for face in faces:
            s = tracker.input_size
            assert isinstance(face.maps, DenseMaps) and face.maps.uv.shape == (2, s, s) and face.maps.fg.shape == (s, s)
            assert face.maps.uv.dtype == np.float32 and face.visibility is None
            # crop_to_image takes the crop's centre to the ROI's centre, its width to the ROI's
            centre = face.crop_to_image @ [(s - 1) / 2, (s - 1) / 2, 1]
            assert np.allclose(centre, [face.roi.cx, face.roi.cy], atol=1e-6)
            assert np.isclose(np.linalg.norm(face.crop_to_image[:, 0]) * s, face.roi.size)
    assert not faces[0].detected or mode == "image"


def test_dense_flip_reads_each_face_from_its_maps_averaged_with_the_mirrored_crops():
    image = cv2.imread(str(DEMO))
    tracker = Tracker(TrackerConfig(dense_flip=True, refine=False, threads=1, cnn_fallback=False))
    face = tracker.track(image).faces[0]
    x = to_network_input(warp_image(image, face.roi, tracker.input_size)[None])
    plain = tracker.engine.infer({"image": x})
    expected = flip_averaged(tracker.engine.infer({"image": np.concatenate([x, x[..., ::-1]])}), 1)
    np.testing.assert_allclose(face.maps.uv, expected["uv"][0], atol=1e-5)
    np.testing.assert_allclose(face.maps.fg, expected["fg"][0, 0], atol=1e-5)
    assert np.abs(face.maps.uv - plain["uv"][0]).max() > 1e-3  # the mirrored crop did change the maps


def test_own_densereg_with_the_packaged_fast_network_is_noted_for_video(tmp_path, capsys):
    """A copy of the assets with one's own DenseReg exported into it: video ran the packaged fast
    network the copy came with, silently (user test 8)."""
    import argparse
    import json
    import shutil

    from tracker.assets import ASSETS

    folder = tmp_path / "assets"
    shutil.copytree(ASSETS, folder)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    args = argparse.Namespace(engine="auto", threads=1, max_faces=4, no_refine=False, flip=None, dense_flip=False, one_stage=False,
                              no_int8=False, fast_network=None, assets=folder)
    TrackerConfig.from_args(args, mode="video")
    assert capsys.readouterr().err == ""  # an unchanged copy
    manifest["densereg_realtime.onnx"] = "0" * 64  # as after `training.export densereg --out-dir`
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    TrackerConfig.from_args(args, mode="video")
    assert "packaged densereg_fast.onnx, which video runs by default" in capsys.readouterr().err
    TrackerConfig.from_args(args, mode="image")  # pictures run the folder's own
    TrackerConfig.from_args(argparse.Namespace(**{**vars(args), "fast_network": False}), mode="video")
    assert capsys.readouterr().err == ""


def test_the_cnn_looks_again_for_a_while_after_a_track_ends_while_another_goes_on():
    """A subject HOG missed after it came back from behind a board stayed lost for the rest of a
    clip while a bystander was tracked: the CNN looked only while nothing was tracked."""
    from tracker.crop import Roi, roi_from_box
    from tracker.detector import Detection

    tracker = Tracker(TrackerConfig(mode="video", threads=1, video_cnn_every=30))
    bystander = roi_from_box(400, 100, 480, 180)
    tracked = [(None, bystander)]
    tracker._frame = 30
    assert not tracker._cnn_after_loss_due([], tracked)  # no track has ended yet: a periodic search does not call it (~1 s)
    tracker._lost_at = 40
    tracker._frame = 50
    assert tracker._cnn_after_loss_due([], tracked)
    assert tracker._cnn_after_loss_due([Detection(400, 100, 480, 180, 1.0)], tracked)  # HOG saw the tracked face only
    assert not tracker._cnn_after_loss_due([Detection(100, 100, 180, 180, 1.0)], tracked)  # HOG found the new face itself
    tracker._cnn_at = 45
    assert not tracker._cnn_after_loss_due([], tracked)  # at most once in video_cnn_every frames
    tracker._frame = 40 + 3 * pipeline.LOST_CNN_FRAMES  # later, ever more rarely: once in half the time since the loss
    tracker._cnn_at = tracker._frame - 3 * pipeline.LOST_CNN_FRAMES // 2 + 1
    assert not tracker._cnn_after_loss_due([], tracked)
    tracker._cnn_at -= 1
    assert tracker._cnn_after_loss_due([], tracked)
    tracker._frame = 50
    tracker.config = dataclasses.replace(tracker.config, video_cnn_every=0)
    assert not tracker._cnn_after_loss_due([], [(None, Roi(0, 0, 10))])  # HOG only, as asked


def test_the_cnn_does_not_look_again_once_the_lost_face_is_back(monkeypatch):
    """The only face hidden for 3 frames and tracked again: the loss still had dlib's CNN (~1 s)
    run at 3 later frames, as if a face were still missing (review 36)."""
    from tracker.sources import VideoSource, load_frames

    frames = load_frames(VideoSource(DEMO_CLIP), limit=50)  # (the clip cuts to another shot later)
    tracker = Tracker(TrackerConfig(mode="video", threads=1, video_cnn_every=30))
    calls = []
    monkeypatch.setattr(pipeline, "cnn_available", lambda: True)
    monkeypatch.setattr(tracker, "_cnn_faces", lambda image: calls.append(tracker._frame) or [])
    ids, roi = [], None
    for i, frame in enumerate(frames):
        if i in (10, 11, 12):  # the face covered
            frame = frame.copy()
            frame[max(int(roi.cy - roi.size / 2), 0):int(roi.cy + roi.size / 2), max(int(roi.cx - roi.size / 2), 0):int(roi.cx + roi.size / 2)] = 128
        faces = tracker.track(frame, timestamp=i / 30).faces
        ids.append([f.track_id for f in faces])
        if i < 10:
            roi = faces[0].roi
    assert ids[11] == [] and ids[20] == [1] and ids[-1] == [1]  # lost, then a new track: the same face back
    assert calls == [] and tracker._lost_at == pipeline.NEVER
