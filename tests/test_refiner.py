"""The MDM-style refiner: patch sampler, canonical frames, export parity, flip equivariance,
the two-stage cascade."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.assets import ASSETS, verified_asset
from tracker.crop import transform_points
from tracker.metrics import eye_distance
from tracker.refiner import (
    COARSE,
    DEFAULT_REFINERS,
    FINE,
    FLOAT_GRAPH_KEY,
    ONE_STAGE,
    RefinerStage,
    canonical_transform,
    refine,
    refine_cascade,
)
from tracker.shape_model import load_shape_model

DEMO = ASSETS / "demo" / "astronaut.jpg"


def test_fine_frame_resolution():
    """The fine stage's point of being: a pixel is at most 1% of the eye distance."""
    model = load_shape_model()
    assert eye_distance(COARSE.reference(model)) == pytest.approx(57.3, abs=0.5)
    assert eye_distance(FINE.reference(model)) >= 100
    for frame in (COARSE, FINE):  # the mean shape and half a patch fit in the crop
        ref = frame.reference(model)
        assert ref.min() > frame.patch / 2 and ref.max() < frame.crop - frame.patch / 2


@pytest.mark.parametrize("size,patch", [(128, 16), (208, 24), (40, 7)])
def test_sample_patches_is_grid_sample(size, patch):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from training.mdm import sample_patches

    g = torch.Generator().manual_seed(size)
    image = torch.rand(2, 1, size, size, generator=g)
    points = torch.rand(2, 68, 2, generator=g) * (size + 40) - 20
    points[0, 0] = torch.tensor([-500.0, 3.0])  # far outside: all padding
    points[1, 5] = torch.tensor([size - 0.5, size + 2.25])  # straddling the border
    offs = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2
    gy, gx = torch.meshgrid(offs, offs, indexing="ij")
    grid = (2 * (points[:, :, None, None] + torch.stack([gx, gy], -1)) + 1) / size - 1
    ref = F.grid_sample(image, grid.reshape(2, 68 * patch, patch, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    ref = ref.reshape(2, 1, 68, patch, patch).permute(0, 2, 1, 3, 4).reshape(-1, 1, patch, patch)
    got = sample_patches(image, points, patch)
    assert got.shape == ref.shape
    assert float((got - ref).abs().max()) < 1e-4  # grid_sample itself rounds pixel -> [-1,1] -> pixel
    # gradients reach the points, as through grid_sample (MDM trains through its steps)
    pts = points.clone().requires_grad_(True)
    sample_patches(image, pts, patch).sum().backward()
    assert torch.isfinite(pts.grad).all() and float(pts.grad.abs().sum()) > 0


@pytest.mark.parametrize("stage", ["coarse", "fine"])
def test_refiner_export_parity(tmp_path, stage):
    torch = pytest.importorskip("torch")
    from engines.onnx_engine import OnnxEngine
    from training.deploy import export
    from training.mdm import FINE_CONFIG, MDM, MDMConfig

    config = {"coarse": MDMConfig(), "fine": FINE_CONFIG}[stage]
    torch.manual_seed(0)
    net = MDM(config)
    for p in net.head.parameters():  # the head starts at zero: give the steps something to do
        torch.nn.init.normal_(p, std=0.05)
    net.eval()
    image = torch.randn(2, 1, config.crop, config.crop)
    init = torch.rand(2, 68, 2) * config.crop * 0.6 + config.crop * 0.2
    with torch.no_grad():
        ref = net(image, init).numpy()
    path = tmp_path / f"{stage}.onnx"
    export("mdm", asdict(config), net.state_dict(), path)
    got = OnnxEngine(path, threads=1).infer({"image": image.numpy(), "init": init.numpy()})["points"]
    assert got.shape == (2, config.steps, 68, 2)
    assert np.abs(got - ref).max() < 1e-3 * config.crop
    assert np.abs(got[:, -1] - init.numpy()).max() > 0.1  # the steps did move the points


def _demo_start():
    """A face, the shipped tracker's PCA stage on it, and the tracker."""
    from tracker import Tracker, TrackerConfig

    image = cv2.imread(str(DEMO))
    tracker = Tracker(TrackerConfig(mode="image", threads=1, cnn_fallback=False, refine_flip=False))
    face = tracker.track(image).faces[0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), face.stages["pca"].points, face.landmarks, tracker


def test_int8_refiners_refine_the_demo_face_as_the_float_graphs():
    """The CPU's int8 variants (``refiner.int8_variant``) land within a fraction of a pixel of
    the float graphs on a real face (measured: 0.12 px at most, 0.05 px on average)."""
    from tracker import Tracker, TrackerConfig

    gray, start, _, int8 = _demo_start()
    float_graphs = Tracker(TrackerConfig(mode="image", threads=1, cnn_fallback=False, int8=False))
    assert [p.name for p in int8.model_files[1:]] == ["mdm_refiner_int8.onnx", "mdm_fine_int8.onnx"]
    assert [p.name for p in float_graphs.model_files[1:]] == ["mdm_refiner.onnx", "mdm_fine.onnx"]
    a = refine_cascade(int8.refiners, gray, start)[-1][0].points
    b = refine_cascade(float_graphs.refiners, gray, start)[-1][0].points
    assert np.hypot(*(a - b).T).max() < 0.5


@pytest.mark.parametrize("name", ["mdm_refiner", "mdm_fine", "mdm_single"])
def test_the_shipped_refiners_gather_their_patches_at_indices_computed_in_integers(name):
    """Each patch's flat index (up to ~44k) is the floored point cast to integers, then integer
    arithmetic: computed in float, TensorRT's FP16 mode could round it to a neighbour 32 apart
    (88-95% of the patches moved, up to 16 px; review 27)."""
    onnx = pytest.importorskip("onnx")
    for path in (ASSETS / f"{name}.onnx", ASSETS / f"{name}_int8.onnx"):
        graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
        kinds = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
        kinds.update({t.name: t.data_type for t in graph.initializer})
        made_by = {out: node for node in graph.node for out in node.output}
        gathers = [node for node in graph.node if node.op_type == "GatherElements"]
        casts, todo, seen = [], [node.input[1] for node in gathers], set()
        while todo:
            name_ = todo.pop()
            if name_ in seen or name_ not in made_by:
                continue
            seen.add(name_)
            node = made_by[name_]
            assert kinds.get(name_) == onnx.TensorProto.INT64, f"{path.name}: {node.op_type} {name_} feeds an index in float"
            if node.op_type == "Cast":
                casts.append(made_by[node.input[0]].op_type)
            else:
                todo += list(node.input)
        assert gathers and casts and set(casts) == {"Floor"}, (path.name, casts)


def test_shipped_refiner_is_flip_equivariant():
    """Trained with mirrored faces, the refiner answers a mirrored picture with the mirrored
    answer, up to its own error: a broken flip permutation in training would show here."""
    gray, init, _, tracker = _demo_start()
    perm = np.load(verified_asset("template.npz"))["flip_permutation"]
    w = gray.shape[1]
    stage = tracker.refiners[0]

    def mirror(p):
        return p[perm] * [-1, 1] + [w - 1, 0]

    direct = refine(stage.infer, gray, init, stage.reference, stage.frame.crop)[0].points
    mirrored = mirror(refine(stage.infer, np.ascontiguousarray(gray[:, ::-1]), mirror(init), stage.reference, stage.frame.crop)[0].points)
    gap = np.linalg.norm(direct - mirrored, axis=1).mean() / eye_distance(direct)
    assert gap < 0.03  # the first stage's own error level (2.1% of the eye distance from the shipped PCA start)
    # ... and a wrong permutation (identity) is far off
    wrong = refine(stage.infer, np.ascontiguousarray(gray[:, ::-1]), init * [-1, 1] + [w - 1, 0], stage.reference, stage.frame.crop)[0].points
    assert np.linalg.norm(direct - (wrong * [-1, 1] + [w - 1, 0]), axis=1).mean() / eye_distance(direct) > 5 * gap
    # test-time flipping averages the two in one call
    both = refine(stage.infer, gray, init, stage.reference, stage.frame.crop, flip=perm)[0].points
    assert np.abs(both - (direct + mirrored) / 2).max() < 0.05


@pytest.mark.parametrize("flip", [False, True])
def test_a_one_step_refiner_reports_its_move_from_the_start(flip):
    """A graph run for 1 recurrent step (``export --regraph --steps 1``) has no previous step:
    its move is measured from the start, with test-time flipping too (which used to fail)."""
    model = load_shape_model()
    perm = np.load(ASSETS / "template.npz")["flip_permutation"]
    gray = np.random.default_rng(0).integers(0, 255, (240, 320)).astype(np.uint8)
    inits = np.stack([FINE.reference(model) * 0.8 + [60.0, 20.0], FINE.reference(model) * 0.5 + [150.0, 90.0]])  # two faces

    def shift_right(feed):  # one step that moves every point 2 px right in the crop
        return {"points": (feed["init"] + [2.0, 0.0])[:, None]}

    refined = refine(shift_right, gray, inits, FINE.reference(model), FINE.crop, perm if flip else None)
    assert len(refined) == 2
    for r, init in zip(refined, inits):
        if flip:  # the mirrored crop's step goes right there, so left here: the average does not move
            np.testing.assert_allclose(r.points, init, atol=1e-4)
            assert r.last_step < 1e-4
        else:
            assert r.last_step > 0.1 and np.ptp(np.linalg.norm(r.points - init, axis=1)) < 1e-4  # float32 graph


def test_cascade_feeds_each_stage_the_previous_answer():
    gray, init, final, tracker = _demo_start()
    stage = tracker.refiners[0]
    np.testing.assert_allclose(refine_cascade(tracker.refiners, gray, init)[-1][0].points, final, atol=1e-6)  # what the tracker reports
    seen = []

    def recording(inputs):
        seen.append(inputs["init"].copy())
        return stage.infer(inputs)

    twice = [RefinerStage(recording, stage.frame, stage.reference)] * 2
    steps = refine_cascade(twice, gray, init)
    assert len(steps) == 2
    np.testing.assert_allclose(steps[0][0].points, refine(stage.infer, gray, init, stage.reference, stage.frame.crop)[0].points, atol=1e-6)
    m = canonical_transform(steps[0][0].points, stage.reference)
    np.testing.assert_allclose(seen[1][0], transform_points(m, steps[0][0].points), atol=1e-3)


@pytest.mark.parametrize("int8", [False, True])
def test_faces_batched_in_one_call_answer_as_one_at_a_time(int8):
    """The tracker refines every face of a group in one engine call per stage (and the
    mirrored crops with them under flipping): each face's answer is what it gets alone.  The
    int8 variants quantize a call's activations with one scale for the whole call, so their
    engine runs each sample alone: batched, a face moved by up to 0.08 px with its batch-mates,
    and a batch run's frames changed with --threads (user test, round 7)."""
    from tracker import Tracker, TrackerConfig

    gray, init, _, _ = _demo_start()
    tracker = Tracker(TrackerConfig(mode="image", threads=1, cnn_fallback=False, int8=int8))
    tolerance = 1e-3
    perm = np.load(verified_asset("template.npz"))["flip_permutation"]
    other = init * 1.05 - init.mean(0) * 0.05 + [3.0, -2.0]  # a second, differently placed start
    calls = []

    def counting(stage):
        def infer(inputs):
            calls.append(len(inputs["image"]))
            return stage.infer(inputs)
        return RefinerStage(infer, stage.frame, stage.reference)

    for flip in (None, perm):
        calls.clear()
        together = refine_cascade([counting(s) for s in tracker.refiners], gray, np.stack([init, other]), flip)
        assert calls == [2 * (2 if flip is not None else 1)] * len(tracker.refiners)
        for face, start in enumerate((init, other)):
            alone = refine_cascade(tracker.refiners, gray, start, flip)
            for stage_batch, stage_alone in zip(together, alone):
                np.testing.assert_allclose(stage_batch[face].points, stage_alone[0].points, atol=tolerance)
                assert abs(stage_batch[face].last_step - stage_alone[0].last_step) < tolerance


def _exported_fine_card(tmp_path, val_log: str) -> tuple[Path, str]:
    """`training.export mdm-fine --run` of a run folder whose best.pt (an untrained MDM_FINE) is
    step 200 and whose val.jsonl is `val_log`: the assets folder and the card."""
    import torch

    from training.export import main as export_main
    from training.mdm import FINE_CONFIG, MDM

    run, out = tmp_path / "run", tmp_path / "assets"
    run.mkdir()
    out.mkdir()
    torch.save({"model": MDM(FINE_CONFIG).state_dict(), "step": 200, "metrics": {"val_nme_refined": 0.03}, "options": asdict(FINE_CONFIG)},
               str(run / "best.pt"))
    (run / "val.jsonl").write_text(val_log)
    assert export_main(["mdm-fine", "--run", str(run), "--out-dir", str(out)]) == 0
    return out, (out / "MDM_FINE_CARD.md").read_text()


def test_a_card_after_a_validation_row_cut_short_says_so(tmp_path):
    """best.pt at step 200 whose val.jsonl row a kill cut short: the card said "step 200 of 100"
    (user test 23)."""
    pytest.importorskip("torch")
    import json

    _, card = _exported_fine_card(tmp_path, json.dumps({"step": 100, "time": 0.0, "val_nme_refined": 0.05}) + '\n{"step": 200, "ti')
    assert "best checkpoint at step 200 of 200" in card and "step 200's row was cut short in val.jsonl" in card


def test_export_writes_a_card_with_the_validation_curve_and_regraph_keeps_it(tmp_path):
    """`training.export mdm-fine --run` from a run folder, then `--regraph` of what it wrote."""
    torch = pytest.importorskip("torch")
    import json

    from tracker.assets import read_manifest, sha256
    from training.export import main as export_main

    rows = [{"step": s, "time": 1000.0 + 300 * i, "val_nme_refined": 0.05 - 0.01 * i} for i, s in enumerate((100, 200, 300))]
    out, card = _exported_fine_card(tmp_path, "".join(json.dumps(r) + "\n" for r in rows))
    assert "best checkpoint at step 200 of 300" in card and "## Validation curve" in card
    assert "| 300 | 0.0300 |" in card and "| 100 | 0.0500 |" in card
    assert read_manifest(out / "MANIFEST.json")["mdm_fine.onnx"] == sha256(out / "mdm_fine.onnx")
    # the CPU variant: written beside it, in the manifest and the card, close to the float graph
    from engines.onnx_engine import OnnxEngine

    int8 = out / "mdm_fine_int8.onnx"
    assert read_manifest(out / "MANIFEST.json")[int8.name] == sha256(int8) and sha256(int8) in card
    feed = {"image": np.random.default_rng(0).normal(size=(1, 1, 208, 208)).astype(np.float32),
            "init": np.full((1, 68, 2), 104.0, np.float32)}
    assert np.abs(OnnxEngine(int8).infer(feed)["points"] - OnnxEngine(out / "mdm_fine.onnx").infer(feed)["points"]).max() < 2.0
    assert OnnxEngine(int8).metadata[FLOAT_GRAPH_KEY] == sha256(out / "mdm_fine.onnx")  # which float graph it was made from
    assert export_main(["mdm-fine", "--regraph", "--out-dir", str(out)]) == 0
    again = (out / "MDM_FINE_CARD.md").read_text()
    assert "| 300 | 0.0300 |" in again and sha256(out / "mdm_fine.onnx") in again
    assert again.count("**CPU variant**") == 1 and sha256(int8) in again
    # --steps: the same weights run for fewer recurrent steps, in both deployables and the card
    for steps in (2, 1):  # a second --steps keeps counting from the trained 3
        assert export_main(["mdm-fine", "--regraph", "--steps", str(steps), "--out-dir", str(out)]) == 0
        import onnxruntime

        assert int8.exists() or onnxruntime.__version__.startswith("1.2")  # (1.32 here quantizes it)
        if not int8.exists():  # ONNX Runtime <= 1.23 (Python 3.10) cannot quantize this graph: said, and no stale variant
            card = (out / "MDM_FINE_CARD.md").read_text()
            assert "**CPU variant**: none" in card and int8.name not in read_manifest(out / "MANIFEST.json")
        card = (out / "MDM_FINE_CARD.md").read_text()
        assert card.count("recurrent steps it was trained with") == 1 and f"runs {steps} of the 3 recurrent steps" in card
        assert torch.load(str(out / "mdm_fine.pt"), weights_only=True)["options"]["steps"] == steps
        feed = {"image": np.zeros((1, 1, 208, 208), np.float32), "init": np.full((1, 68, 2), 104.0, np.float32)}
        for graph in ("mdm_fine.onnx", "mdm_fine_int8.onnx")[: 1 + int8.exists()]:
            assert OnnxEngine(out / graph, threads=1).infer(feed)["points"].shape == (1, steps, 68, 2)
        assert not int8.exists() or OnnxEngine(int8).metadata[FLOAT_GRAPH_KEY] == sha256(out / "mdm_fine.onnx")
        assert read_manifest(out / "MANIFEST.json")["mdm_fine.onnx"] == sha256(out / "mdm_fine.onnx")


def test_command_line_options_become_one_config():
    from tracker.cli import build_parser
    from tracker.pipeline import TrackerConfig

    parser = build_parser()
    plain = TrackerConfig.from_args(parser.parse_args(["images", "--input", "a", "--out", "b"]), mode="image")
    assert (plain.refine, plain.refine_flip, plain.threads, plain.mode) == (True, True, 2, "image")  # flipping: on for pictures
    assert not TrackerConfig.from_args(parser.parse_args(["images", "--input", "a", "--out", "b", "--no-flip"]), mode="image").refine_flip
    assert not TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4"]), mode="video").refine_flip  # ... off for video
    args = parser.parse_args(["video", "clip.mp4", "--flip", "--threads", "1", "--no-refine"])
    flipped = TrackerConfig.from_args(args, mode="video", smooth=False)
    assert (flipped.refine, flipped.refine_flip, flipped.threads, flipped.smooth) == (False, True, 1, False)
    assert plain.refiners == DEFAULT_REFINERS
    assert TrackerConfig.from_args(parser.parse_args(["images", "--input", "a", "--out", "b", "--one-stage"]), mode="image").refiners == ONE_STAGE
    assert plain.int8 and not TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4", "--no-int8"]), mode="video").int8
    assert plain.fast_network is None  # the mode decides (pipeline.Tracker)
    assert not plain.dense_flip and TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4", "--dense-flip"]), mode="video").dense_flip
    assert TrackerConfig.from_args(parser.parse_args(["images", "--input", "a", "--out", "b", "--fast-network"]), mode="image").fast_network
    assert TrackerConfig.from_args(parser.parse_args(["video", "clip.mp4", "--no-fast-network"]), mode="video").fast_network is False


def test_one_stage_refiner_lands_near_the_cascade():
    """``--one-stage``: the single refiner stage alone from the PCA start ends within a few
    pixels of the two-stage cascade on the demo face (both are trained to the same truth)."""
    gray, init, final, _ = _demo_start()
    from tracker import Tracker, TrackerConfig

    one = Tracker(TrackerConfig(mode="image", threads=1, cnn_fallback=False, refiners=ONE_STAGE))
    assert [r.frame for r in one.refiners] == [FINE]
    points = refine_cascade(one.refiners, gray, init)[-1][0].points
    gap = np.linalg.norm(points - final, axis=1)
    assert np.median(gap) / eye_distance(final) < 0.03 and np.linalg.norm(init - final, axis=1).mean() > gap.mean()


def test_export_keeps_data_provenance_out_of_the_network_options(tmp_path):
    """A DenseReg run trained with --gt-extra records it in its options; export builds the
    network without it and names the extra data in the card."""
    torch = pytest.importorskip("torch")
    import json

    from training.export import main as export_main
    from training.model import CONFIGS, DenseReg

    run, out = tmp_path / "run", tmp_path / "assets"
    run.mkdir()
    out.mkdir()
    options = {"config": "realtime", "variant": "quantized", "gt_extra": ["data/gt_profiled"]}
    torch.save({"model": DenseReg(CONFIGS["realtime"]).state_dict(), "step": 5, "metrics": {"uv_mae": 0.1}, "options": options}, str(run / "best.pt"))
    (run / "val.jsonl").write_text(json.dumps({"step": 5, "time": 1.0, "uv_mae": 0.1}) + "\n")
    assert export_main(["densereg", "--run", str(run), "--out-dir", str(out)]) == 0
    assert "plus the views in `data/gt_profiled`" in (out / "DENSEREG_REALTIME_CARD.md").read_text()


def test_card_gives_the_chain_of_training_commands_and_the_tracker_starts(tmp_path):
    """Each run's run.json (``training.train.write_run_info``) names its command and the weights
    it started from; the card strings the commands together and states the recipe's starts."""
    torch = pytest.importorskip("torch")
    import json

    from training.export import main as export_main
    from training.mdm import FINE_CONFIG, MDM
    from training.train import write_run_info

    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "assets"
    out.mkdir()
    write_run_info(first, ["mdm-fine", "--out", "first"], 16, 1e-3, None)
    write_run_info(second, ["mdm-fine", "--tracker-starts", "0.5", "--lr", "2e-4"], 16, 2e-4, first / "best.pt")
    write_run_info(second, ["something", "else"], 8, 1.0, None, resume=True)  # --resume: the first record stays
    assert json.loads((second / "run.json").read_text())["lr"] == 2e-4
    torch.save({"model": MDM(FINE_CONFIG).state_dict(), "step": 1, "metrics": {}, "options": asdict(FINE_CONFIG)}, str(second / "best.pt"))
    (second / "val.jsonl").write_text(json.dumps({"step": 1, "time": 1.0, "val_nme_refined": 0.03}) + "\n")
    assert export_main(["mdm-fine", "--run", str(second), "--out-dir", str(out)]) == 0
    card = (out / "MDM_FINE_CARD.md").read_text()
    assert ("`python -m training.train mdm-fine --out first`, then `python -m training.train mdm-fine --tracker-starts 0.5 --lr 2e-4`"
            in card)
    assert "50% of the training faces instead start where the tracker leaves them" in card and "AdamW lr 0.0002" in card
    # a run started from that export (the shipped weights) carries its card's chain on
    third = tmp_path / "third"
    write_run_info(third, ["mdm-fine", "--occluders", "0.3"], 16, 2e-4, out / "mdm_fine.pt")
    torch.save({"model": MDM(FINE_CONFIG).state_dict(), "step": 1, "metrics": {}, "options": asdict(FINE_CONFIG)}, str(third / "best.pt"))
    (third / "val.jsonl").write_text(json.dumps({"step": 1, "time": 1.0, "val_nme_refined": 0.03}) + "\n")
    assert export_main(["mdm-fine", "--run", str(third), "--out-dir", str(out)]) == 0
    card = (out / "MDM_FINE_CARD.md").read_text()
    chain = ("`python -m training.train mdm-fine --out first`, then `python -m training.train mdm-fine --tracker-starts 0.5 --lr 2e-4`, "
             "then `python -m training.train mdm-fine --occluders 0.3` (from the weights those commands made")
    assert chain in card
    # exported again over its own card: the chain is read back, not extended
    assert export_main(["mdm-fine", "--run", str(third), "--out-dir", str(out)]) == 0
    again = (out / "MDM_FINE_CARD.md").read_text()
    assert chain in again and again.count("--occluders 0.3") == card.count("--occluders 0.3")
    assert "a synthetic occluder (`training/dataset.py: occlude`) over 30% of the training crops" in card


# -- training from the tracker's own starts (training.mdm.tracker_starts) ----------------------


def test_a_tracker_start_flips_with_its_face_and_is_scaled_about_the_truth():
    pytest.importorskip("torch")
    from training.mdm import CACHE, FINE_PERTURBATION, sample
    from training.template import FLIP_PERMUTATION

    model = load_shape_model()
    geometry = CACHE[FINE]
    rng = np.random.default_rng(0)
    cached = rng.integers(0, 255, (geometry.size(FINE),) * 2).astype(np.uint8)
    gt = geometry.reference(FINE, model)
    start = gt + rng.normal(size=gt.shape) * 3

    def mirror(p):
        return p[FLIP_PERMUTATION] * [-1, 1] + [cached.shape[1] - 1, 0]

    flipped = sample(cached, gt, model, FINE.reference(model), FINE_PERTURBATION, None, flip=True, start=start, size=FINE.crop)
    mirrored = sample(cached[:, ::-1], mirror(gt), model, FINE.reference(model), FINE_PERTURBATION, None, flip=False,
                      start=mirror(start), size=FINE.crop)
    for a, b in zip(flipped, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-4)
    _, init, target = sample(cached, gt, model, FINE.reference(model), FINE_PERTURBATION, None, flip=False, start=start, gain=0.0,
                             size=FINE.crop)
    np.testing.assert_allclose(init, target, atol=1e-9)  # gain 0: the truth itself
    _, init1, target1 = sample(cached, gt, model, FINE.reference(model), FINE_PERTURBATION, None, flip=False, start=start, size=FINE.crop)
    _, init2, target2 = sample(cached, gt, model, FINE.reference(model), FINE_PERTURBATION, None, flip=False, start=start, gain=2.0,
                               size=FINE.crop)
    # twice the start's error, in each sample's own canonical frame (which follows its init)
    e1, e2 = (np.linalg.norm(i - t, axis=1).mean() / eye_distance(t) for i, t in ((init1, target1), (init2, target2)))
    assert e2 == pytest.approx(2 * e1, rel=1e-6)


def test_tracker_starts_are_the_trackers_points_near_each_annotation(tmp_path):
    pytest.importorskip("torch")
    from tracker import Tracker, TrackerConfig
    from tracker.pts import write_pts
    from training.mdm import tracker_starts

    image = cv2.imread(str(DEMO))
    pca = Tracker(TrackerConfig(mode="image", threads=1, refine=False)).track(image).faces[0].landmarks
    (tmp_path / "set").mkdir()
    (tmp_path / "splits").mkdir()
    for name, shift in (("near", 0.0), ("far", 0.5)):  # "far": its annotation is half an eye distance off every point
        cv2.imwrite(str(tmp_path / "set" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        write_pts(tmp_path / "set" / f"{name}.pts", pca + shift * eye_distance(pca))
    (tmp_path / "splits" / "train.txt").write_text("set/near.jpg\nset/far.jpg\n")
    cache = tmp_path / "cache"
    starts = tracker_starts(tmp_path, "train", (), cache)
    assert list(starts) == ["set/near.jpg"]  # no prediction within 25% NME of the far one
    assert np.abs(starts["set/near.jpg"] - pca).max() < 0.5  # the picture re-encoded: within a fraction of a pixel
    assert len(list(cache.glob("starts_train_*.npz"))) == 1
    np.testing.assert_array_equal(tracker_starts(tmp_path, "train", (), cache)["set/near.jpg"], starts["set/near.jpg"])


def test_an_occluder_covers_part_of_the_crop_and_leaves_the_shapes_alone(monkeypatch):
    pytest.importorskip("torch")
    import training.mdm
    from training.mdm import CACHE, FINE_PERTURBATION, sample

    # each crop is normalised by its own statistics, which the occluder changes: compare raw crops
    monkeypatch.setattr(training.mdm, "normalise_crop", lambda g: g.astype(np.float32))

    model = load_shape_model()
    geometry = CACHE[FINE]
    cached = np.random.default_rng(0).integers(0, 255, (geometry.size(FINE),) * 2).astype(np.uint8)
    gt = geometry.reference(FINE, model)
    start = gt + np.random.default_rng(1).normal(size=gt.shape) * 3
    args = (cached, gt, model, FINE.reference(model), FINE_PERTURBATION, None)
    clean = sample(*args, flip=False, start=start, size=FINE.crop)
    covered = sample(*args, flip=False, start=start, size=FINE.crop, occluder=np.random.default_rng(2))
    np.testing.assert_array_equal(covered[1], clean[1])  # the same start...
    np.testing.assert_array_equal(covered[2], clean[2])  # ...and the true shape as the target, occluder or not
    changed = (covered[0] != clean[0]).mean()
    assert 0.005 < changed < 0.5  # part of the crop, not all of it
    again = sample(*args, flip=False, start=start, size=FINE.crop, occluder=np.random.default_rng(2))
    np.testing.assert_array_equal(again[0], covered[0])  # drawn from the generator alone


def test_occluders_draw_grey_and_colour_pictures_alike():
    from training.dataset import occlude

    grey = np.full((64, 64), -1.0, np.float32)  # a value no occluder has: its pixels are the changed ones
    for seed in range(20):
        out = occlude(grey, np.random.default_rng(seed))
        assert out.shape == grey.shape and out.dtype == grey.dtype
        covered = out != -1
        assert 0 < covered.mean() < 0.6 and out[covered].min() >= 0 and out.max() <= 255
        colour = occlude(np.full((64, 64, 3), -1.0, np.float32), np.random.default_rng(seed))
        # the same polygon in both: the generator's draws do not depend on the channels
        np.testing.assert_array_equal((colour != -1).all(axis=2), covered)


def test_a_run_can_start_from_a_checkpoint_or_from_a_shipped_network(tmp_path):
    torch = pytest.importorskip("torch")
    from training.train import init_weights, load_checkpoint

    shipped = load_checkpoint(ASSETS / "mdm_refiner.pt")
    assert init_weights(shipped) is shipped["state_dict"]
    assert init_weights({"model": shipped["state_dict"], "step": 3}) is shipped["state_dict"]
    torch.save({"step": 3}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither a training checkpoint"):
        init_weights(load_checkpoint(tmp_path / "other.pt"))
