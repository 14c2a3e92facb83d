"""The GPU kit's CPU dry run: pack -> train (a few steps, DataLoader workers) -> ONNX -> resume
-> import with training.export; the pack's codec and size limit; the speed command."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[train]')")

from training.gpukit import KitError, build_pack, decode_maps, decode_webp, encode_maps, encode_webp, pack_size, refiner_crop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# What the GPU machine lacks: the kit must run without ever importing them.
ABSENT_ON_GPU = ("dlib", "tensorrt", "pycuda", "face_recognition_models")


def synthetic_source(root: Path, n_train: int, n_val: int, views: int = 0) -> tuple[Path, Path, Path]:
    """A 300-W-layout folder (photos + .pts + splits), its ground truth in the format of
    training.groundtruth, and `views` profiled views (ground truth + photo beside it): a face
    is the PCA mean shape, randomly posed, on a textured background; its uv runs linearly over
    an ellipse around the points."""
    from tracker.pts import write_pts
    from tracker.shape_model import load_shape_model

    mean = load_shape_model().mean
    rng = np.random.default_rng(0)
    data, gt, profiled = root / "300w", root / "gt", root / "profiled"
    names = {"train": [], "val": []}
    for i in range(n_train + n_val + views):
        size = 240
        a = np.radians(rng.uniform(-15, 15))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        points = mean @ rot.T * rng.uniform(30, 45) + rng.uniform(100, 140, 2)
        image = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 3)
        lo, hi = points.min(0) - 8, points.max(0) + 8
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        u, v = (xs - lo[0]) / (hi[0] - lo[0]), (ys - lo[1]) / (hi[1] - lo[1])
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.25
        image[mask] = (np.stack([u, v, 1 - u], -1)[mask] * 255).astype(np.uint8)
        ignore = np.zeros((size, size), bool)
        ignore[:30, :30] = True
        arrays = dict(uv=np.where(mask, np.stack([u, v]), np.nan).astype(np.float16),
                      depth=np.where(mask, 1 - (u - 0.5) ** 2 - (v - 0.5) ** 2, np.nan).astype(np.float16),
                      mask=mask, parts=np.zeros((size, size), np.uint8), ignore=ignore,
                      landmarks=points[None].astype(np.float32), face_index=np.array(0))
        if i < n_train + n_val:
            split = "train" if i < n_train else "val"
            rel = f"synth/face{i:03d}.png"
            names[split].append(rel)
            folder, gt_folder = data, gt
            write_pts((data / rel).with_suffix(".pts"), points)
        else:
            rel, folder, gt_folder = f"synth/view{i:03d}.png", profiled, profiled
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (gt_folder / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / rel), image)
        np.savez_compressed((gt_folder / rel).with_suffix(".npz"), **arrays)
    (data / "splits").mkdir(parents=True)
    for split, rels in names.items():
        (data / "splits" / f"{split}.txt").write_text("\n".join(rels) + "\n")
    return data, gt, profiled


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_source(tmp_path_factory.mktemp("synthetic"), 8, 3, views=4)


def kit(*args: str, isolated: bool = False) -> tuple[int, str]:
    """`python -m training.gpukit ARGS` -> (exit status, stderr); `isolated`: in a process where
    the packages the GPU machine lacks cannot be imported."""
    if not isolated:
        import contextlib
        import io

        from training.gpukit import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            return main(list(args)), err.getvalue()
    code = (f"import sys\nfor m in {ABSENT_ON_GPU!r}: sys.modules[m] = None\n"
            "from training.gpukit import main\nsys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    return done.returncode, done.stdout[-2000:] + done.stderr[-3000:]


def test_maps_survive_the_pack_codec():
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 1, (2, 40, 40)).astype(np.float16)
    depth = rng.uniform(0, 1, (40, 40)).astype(np.float16)
    uv[:, :10] = np.nan
    depth[:, :10] = np.nan
    flags = rng.integers(0, 4, (40, 40)).astype(np.uint8)
    uv2, depth2, flags2 = decode_maps(decode_webp(encode_webp(encode_maps(uv, depth, flags), lossless=True)))
    np.testing.assert_array_equal(flags2, flags)
    np.testing.assert_array_equal(np.isnan(uv2), np.isnan(uv))
    np.testing.assert_array_equal(np.isnan(depth2), np.isnan(depth))
    assert np.nanmax(np.abs(uv2.astype(np.float32) - uv)) <= 0.5 / 254 + 1e-3  # half a step, plus float16
    assert np.nanmax(np.abs(depth2.astype(np.float32) - depth)) <= 0.5 / 254 + 1e-3


def test_refiner_crop_puts_the_truth_on_the_mean_shape():
    from tracker.shape_model import load_shape_model

    mean = load_shape_model().mean
    truth = mean * 40.0 + [150.0, 120.0]  # 40 px per unit in the photo: below the 72 stored
    crop, points = refiner_crop(np.zeros((300, 300), np.uint8), truth, mean)
    assert crop.shape == (round(2 * 2.1 * 40), round(2 * 2.1 * 40))  # the photo's own resolution, never upsampled
    np.testing.assert_allclose(points, mean * 40 + (crop.shape[0] - 1) / 2, atol=1e-6)
    crop, points = refiner_crop(np.zeros((900, 900), np.uint8), mean * 150.0 + 450, mean)
    assert crop.shape == (302, 302)  # 72 px per unit, 2.1 units each side


def test_pack_limit_is_enforced_and_profiled_views_fill_the_rest(synthetic, tmp_path):
    data, gt, profiled = synthetic
    full = build_pack(data, gt, tmp_path / "full", profiled)
    assert full["counts"] == {"train": 8, "val": 3, "profiled": 4, "profiled_available": 4, "skipped": 0}
    real = build_pack(data, gt, tmp_path / "real", None)
    full_bytes, real_bytes = pack_size(tmp_path / "full"), pack_size(tmp_path / "real")
    limit = full_bytes - (full_bytes - real_bytes) / 8  # room for 3.5 views
    some = build_pack(data, gt, tmp_path / "some", profiled, max_mib=limit / 2**20)
    assert 0 < some["counts"]["profiled"] < 4 and pack_size(tmp_path / "some") <= limit
    assert real["counts"]["profiled"] == 0
    before = (tmp_path / "real" / "faces.zip").read_bytes()
    with pytest.raises(KitError, match="exceed --max-mib"):
        build_pack(data, gt, tmp_path / "real", None, max_mib=real_bytes / 2 / 2**20)
    assert (tmp_path / "real" / "faces.zip").read_bytes() == before  # the old pack is kept
    assert not (tmp_path / "real.tmp").exists()


def test_a_pack_split_into_parts_joins_back_and_a_missing_or_bad_part_is_named(synthetic, tmp_path):
    """The tree (~43 MiB) and a whole pack (~39 MiB) exceed the 64 MiB a device call carries:
    the pack travels in parts, one per call, and is joined on the machine."""
    from training.gpukit import join_pack, pack_parts, read_manifest, split_pack, travelling_bytes, unpack

    data, gt, _ = synthetic
    pack = tmp_path / "gpupack"
    build_pack(data, gt, pack, None)
    whole = (pack / "faces.zip").read_bytes()
    parts = split_pack(pack, len(whole) // 3 + 1)
    assert [p.name for p in parts] == ["gpupack.part1", "gpupack.part2", "gpupack.part3"] == [p.name for p in pack_parts(pack)]
    assert (parts[0] / "pack.json").exists() and not (parts[1] / "pack.json").exists()
    shutil.rmtree(pack)  # on the machine only the parts arrive
    join_pack(pack)
    assert (pack / "faces.zip").read_bytes() == whole
    assert read_manifest(pack)["counts"]["train"] == 8
    unpack(pack, tmp_path / "work", 1)  # checks the SHA-256 of pack.json
    chunk = parts[1] / "faces.zip.2"
    chunk.write_bytes(chunk.read_bytes()[:-1])
    with pytest.raises(KitError, match="gpupack.part2: its chunk's SHA-256"):
        join_pack(pack)
    shutil.rmtree(parts[1])
    with pytest.raises(KitError, match="part 2 of 3 is missing"):
        join_pack(pack)
    assert (pack / "faces.zip").read_bytes() == whole  # a failed join leaves the last good pack
    # a warm machine keeps the parts of an earlier split: they are named, not joined in
    old = tmp_path / "old_part3"
    shutil.copytree(split_pack(pack, len(whole) // 3 + 1)[2], old)
    split_pack(pack, len(whole) // 2 + 1)
    shutil.copytree(old, tmp_path / "gpupack.part3")
    with pytest.raises(KitError, match="gpupack.part3 is of another split"):
        join_pack(pack)
    tree = travelling_bytes()
    if (REPO / ".git").exists():  # (CI's fresh clone is one; an unpacked archive is not, and says None)
        assert tree > 10 * 2**20  # the shipped networks alone


def check_dry_run(pack: Path, tmp_path: Path, monkeypatch=None) -> None:
    """Train DenseReg and the refiner stages for 2 steps (one DataLoader worker each) in a process
    without dlib & co and check what comes back.  With `monkeypatch`, also: continue DenseReg
    from its full .tar and the refiner from a weights-only one, import DenseReg with
    training.export, and train with a refiner that fails."""
    from engines.onnx_engine import OnnxEngine
    from training.train import load_checkpoint

    common = ["--device", "cpu", "--config", "realtime", "--batch-mult", "0.125", "--workers", "1", "--work", str(tmp_path / "work")]
    # a loss option (recorded in the checkpoint, not the network's) must not reach the export
    status, log = kit("train", "--pack", str(pack), "--out", str(tmp_path / "out1"), "--minutes", "3", "--steps", "2", *common,
                      "--segmenter", "--best-by-parts", isolated=True)
    assert status == 0, log
    out = tmp_path / "out1"
    # by default both refiner stages train, the fine one from the same refiner crops
    assert sorted(p.name for p in out.iterdir()) == ["densereg-realtime.tar", "gpukit.log", "mdm-fine.tar", "mdm.tar", "metrics.json",
                                                     "segbaseline-realtime.tar"]
    assert all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and set(metrics["networks"]) == {"densereg-realtime", "mdm", "mdm-fine", "segbaseline-realtime"}
    for name, net in metrics["networks"].items():
        assert net["steps"] == 2 and net["onnx"]["ok"], name
        assert net["best"]["step"] == 2
        # the shipped model, scored on the same faces (no segmenter ships)
        assert (net["shipped"] is None) == (name == "segbaseline-realtime"), name
    assert "to DenseReg's 2 steps" in (out / "gpukit.log").read_text()
    # the segmenter comes back as the network evaluate parts scores
    import torch

    from training.evaluate import load_segmenter

    with tarfile.open(out / "segbaseline-realtime.tar") as t:
        t.extractall(tmp_path / "returned", filter="data")
    seg, step = load_segmenter(tmp_path / "returned" / "segbaseline-realtime")
    assert step == 2 and seg(torch.zeros(1, 3, 128, 128)).seg_logits.shape == (1, 9, 128, 128)
    with tarfile.open(out / "densereg-realtime.tar") as t:
        t.extractall(tmp_path / "returned", filter="data")
    run_dir = tmp_path / "returned" / "densereg-realtime"
    assert {"best.pt", "last.pt", "val.jsonl", "run.json", "densereg-realtime.onnx"} <= {p.name for p in run_dir.iterdir()}
    engine = OnnxEngine(run_dir / "densereg-realtime.onnx")
    maps = engine.infer({"image": np.zeros((1, 3, 128, 128), np.float32)})
    assert maps["uv"].shape == (1, 2, 128, 128) and np.isfinite(maps["fg"]).all()
    if monkeypatch is None:
        return

    previous = tmp_path / "previous"  # DenseReg's tar as returned, the refiner's weights only (README, step 5)
    previous.mkdir()
    (previous / "densereg-realtime.tar").write_bytes((out / "densereg-realtime.tar").read_bytes())
    with tarfile.open(out / "mdm.tar") as t:
        t.extractall(tmp_path / "returned", filter="data")
    with tarfile.open(previous / "mdm.tar", "w") as t:
        for name in ("best.pt", "run.json", "val.jsonl"):
            t.add(tmp_path / "returned" / "mdm" / name, arcname=f"mdm/{name}")
    status, log = kit("train", "--pack", str(pack), "--out", str(tmp_path / "out2"), "--minutes", "3", "--steps", "3",
                      "--resume-from", str(previous), *common)
    assert status == 0, log
    for name in ("densereg-realtime", "mdm"):
        with tarfile.open(tmp_path / "out2" / f"{name}.tar") as t:
            t.extractall(tmp_path / "continued", filter="data")
    continued = tmp_path / "continued" / "densereg-realtime"
    assert load_checkpoint(continued / "last.pt")["step"] == 3
    assert [json.loads(line)["step"] for line in (continued / "val.jsonl").read_text().splitlines()] == [2, 3]
    kit_log = (tmp_path / "out2" / "gpukit.log").read_text()
    assert "densereg-realtime: continuing" in kit_log and "from last.pt, step 2" in kit_log
    assert "mdm: continuing" in kit_log and "weights of best.pt" in kit_log
    before = json.loads((tmp_path / "returned" / "mdm" / "run.json").read_text())["minutes"]
    assert json.loads((tmp_path / "continued" / "mdm" / "run.json").read_text())["minutes"] > before  # minutes add up

    from training.export import main as export_main

    assert export_main(["densereg", "--run", str(continued), "--out-dir", str(tmp_path / "assets")]) == 0
    card = (tmp_path / "assets" / "DENSEREG_REALTIME_CARD.md").read_text()
    assert "a CPU dry run of training.gpukit" in card and "python -m training.gpukit train" in card

    from training.mdm import MDMTask

    def broken(self, batch):
        raise RuntimeError("a refiner bug")

    monkeypatch.setattr(MDMTask, "loss", broken)
    status, log = kit("train", "--pack", str(pack), "--out", str(tmp_path / "out3"), "--minutes", "3", "--steps", "1", *common)
    assert status == 1, log  # the refiner failed ...
    metrics = json.loads((tmp_path / "out3" / "metrics.json").read_text())
    assert metrics["networks"]["mdm"]["error"] == "RuntimeError: a refiner bug"
    assert metrics["networks"]["densereg-realtime"]["onnx"]["ok"]  # ... DenseReg trained and exported all the same
    assert "a refiner bug" in (tmp_path / "out3" / "gpukit.log").read_text()

    # The device's time limit (SIGTERM) while DenseReg trains: it checkpoints and comes back, and
    # the refiners do not start in the seconds before the kill (review 27).
    import signal

    from training.densereg_task import DenseRegTask

    real_loss = DenseRegTask.loss

    def terminated(self, batch):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, batch)

    monkeypatch.setattr(DenseRegTask, "loss", terminated)
    status, log = kit("train", "--pack", str(pack), "--out", str(tmp_path / "out4"), "--minutes", "3", "--steps", "5", *common)
    assert status == 1, log
    metrics = json.loads((tmp_path / "out4" / "metrics.json").read_text())
    assert metrics["stopped_by_signal"] == signal.SIGTERM and not metrics["finished"]
    assert metrics["networks"]["densereg-realtime"]["best"]["step"] == 1  # the step under way, then its checkpoint
    assert metrics["networks"]["mdm"]["error"] == f"not trained: stopped by signal {int(signal.SIGTERM)}"
    assert sorted(p.name for p in (tmp_path / "out4").iterdir()) == ["densereg-realtime.tar", "gpukit.log", "metrics.json"]


@pytest.mark.slow
def test_dry_run_on_a_synthetic_pack(synthetic, tmp_path, monkeypatch):
    data, gt, _ = synthetic
    build_pack(data, gt, tmp_path / "pack", None)
    check_dry_run(tmp_path / "pack", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.shared_data
def test_pack_20_shared_faces_and_dry_run(data_300w, tmp_path):
    gt = REPO / "data" / "gt"
    if not (gt / "helen").is_dir():
        pytest.skip("no ground truth in data/gt (python -m training.groundtruth)")
    status, log = kit("pack", "--out", str(tmp_path / "pack"), "--faces", "20", "--data", str(data_300w), "--gt", str(gt),
                      "--profiled", str(tmp_path / "none"))
    assert status == 0, log
    manifest = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert manifest["counts"]["train"] + manifest["counts"]["val"] == 20 and pack_size(tmp_path / "pack") < 20 * 40 * 1024
    assert manifest["quantisation"]["uv_max_abs"] < 0.003
    check_dry_run(tmp_path / "pack", tmp_path)  # resuming is the synthetic test's


def test_train_and_speed_refuse_cpu_only_machines_with_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    status, err = kit("speed", "--configs", "realtime")
    assert status == 2 and "no CUDA here" in err and "--device cpu" in err
    status, err = kit("train", "--pack", str(tmp_path), "--out", str(tmp_path / "out"), "--minutes", "1")
    assert status == 2 and "--device cpu" in err
    status, err = kit("train", "--pack", str(tmp_path), "--out", str(tmp_path / "out"), "--minutes", "1", "--device", "cpu")
    assert status == 2 and "not a pack" in err
    assert not (tmp_path / "out").exists()  # nor the default --work (runs/gpukit was left in the repository)


def test_speed_dry_run_on_cpu(tmp_path, capsys):
    status, err = kit("speed", "--device", "cpu", "--configs", "realtime", "--batches", "1", "--runs", "1", "--warmup", "0",
                      "--json", str(tmp_path / "speed.json"))
    assert status == 0, err
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert [(r["config"], r["batch"], r["precision"]) for r in rows] == [("realtime", 1, "fp32")] and rows[0]["median_ms"] > 0
    assert "ms/image" in capsys.readouterr().out


def test_lr_decays_over_the_time_budget_when_asked():
    from training.train import Schedule, poly_lr

    steps = Schedule(steps=1000, batch=4, lr=1.0, warmup=10)
    timed = Schedule(steps=10**9, batch=4, lr=1.0, warmup=10, by_time=True)
    assert poly_lr(505, steps) == poly_lr(505, steps, 0.0) == pytest.approx(0.5**0.9)  # decayed over the 990 steps after warm-up
    assert poly_lr(500, timed, 0.5) == pytest.approx(0.5**0.9) and poly_lr(500, timed, 0.9) < poly_lr(500, timed, 0.5)
    assert poly_lr(5, timed, 0.9) == poly_lr(5, steps)  # warm-up first, whatever the clock says
    # the decay starts where the warm-up ends, without a jump (review 30: x0.63 where the
    # warm-up took 40% of a lease's time)
    for schedule, clock in ((steps, (0.0, 0.0)), (Schedule(steps=400, batch=4, lr=1.0, warmup=300), (0.0, 0.0)), (timed, (0.4, 0.4))):
        end, start = poly_lr(schedule.warmup - 1, schedule, *clock), poly_lr(schedule.warmup, schedule, *clock)
        assert start - end <= 0.9 / schedule.warmup + 1e-9 and start == pytest.approx(1.0, abs=0.01), schedule  # one warm-up step
    assert poly_lr(500, timed, 0.7, 0.4) == pytest.approx(0.5**0.9)  # half the time left after the warm-up


def test_the_gpu_paths_of_the_run_loop_on_the_cpu(tmp_path):
    """What training.train.run does differently for the kit, on the CPU: batches from an
    iterator, bf16 autocast, the checkpoint callback; and the bridge that evaluates a task's
    network on another device maps through nested outputs (RawOutput dataclasses)."""
    from training.losses import densereg_loss
    from training.model import DenseReg, NetConfig, RawOutput
    from training.train import Schedule, _map_tensors, run

    torch.manual_seed(0)
    net = DenseReg(NetConfig("realtime", 32))
    image, classes = torch.randn(2, 3, 32, 32), torch.randint(0, 11, (2, 2, 32, 32))
    target = (image, classes, torch.rand(2, 2, 32, 32), torch.rand(2, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool))

    class Task:
        val_key, batch_size = "loss", 2

        def __init__(self):
            self.net = net

        def batch(self, rng):
            raise AssertionError("batches come from the iterator")

        def loss(self, batch):
            return densereg_loss(self.net(batch[0]), *batch[1:])

        def evaluate(self):
            with torch.no_grad():
                return {"loss": float(self.loss(target)["total"])}

    def batches():
        while True:
            yield target

    seen = []
    run(Task(), Schedule(steps=3, batch=2, lr=1e-3, warmup=1, by_time=True), tmp_path, max_minutes=5, resume=False,
        batches=batches(), amp=True, on_checkpoint=lambda step, metrics: seen.append((step, metrics["loss"])))
    assert [s for s, _ in seen] == [3] and np.isfinite(seen[0][1])
    raw = RawOutput(depth=torch.zeros(1), logits=torch.ones(2))
    mapped = _map_tensors((raw, [torch.ones(1)], {"a": torch.zeros(2)}, 3), lambda t: t + 1)
    assert float(mapped[0].depth) == 1 and mapped[0].residual is None and float(mapped[1][0]) == 2 and mapped[3] == 3


@pytest.mark.parametrize("network", ["densereg", "mdm", "mdm-fine"])
def test_the_networks_train_on_a_device_other_than_the_cpu(network):
    """Forward, loss and backward with every tensor on another device ("meta": shapes only, the
    same device checks as CUDA): a tensor made on the CPU inside a forward pass (the refiner's
    patch index was) stops a GPU run at its first step (review 27)."""
    from training.losses import densereg_loss
    from training.mdm import FINE_CONFIG, MDM, MDMConfig, mdm_loss
    from training.model import DenseReg, NetConfig

    meta = torch.device("meta")
    if network == "densereg":
        net = DenseReg(NetConfig("realtime", 32)).to(meta)
        truth = (torch.zeros(2, 2, 32, 32, dtype=torch.long), torch.zeros(2, 2, 32, 32), torch.zeros(2, 32, 32),
                 torch.ones(2, 32, 32, dtype=torch.bool))
        loss = densereg_loss(net(torch.zeros(2, 3, 32, 32, device=meta)), *(t.to(meta) for t in truth))["total"]
    else:
        config = MDMConfig() if network == "mdm" else FINE_CONFIG
        net = MDM(config).to(meta)
        init = torch.zeros(2, 68, 2, device=meta)
        loss = mdm_loss(net(torch.zeros(2, 1, config.crop, config.crop, device=meta), init), init)
    loss.backward()
    assert loss.device == meta and all(p.grad is not None and p.grad.device == meta for p in net.parameters() if p.requires_grad)


def test_a_network_bundle_keeps_within_what_the_other_returned_files_leave(tmp_path):
    """16 MiB a file and 64 MiB in all come back from a device run: with 50 MiB already in OUT
    a network's tar keeps its best weights and leaves its continuation out, says so, and leaves
    no stand-in in OUT (review 27: six networks passed 64 MiB)."""
    from training.gpukit import MIB, Network, bundle

    run_dir, out = tmp_path / "run", tmp_path / "out"
    run_dir.mkdir()
    out.mkdir()
    with (out / "densereg-large.tar").open("wb") as f:
        f.truncate(50 * MIB)  # sparse: the size is what counts
    (run_dir / "run.json").write_text("{}")
    for name in ("best.pt", "last.pt"):
        with (run_dir / name).open("wb") as f:
            f.truncate(8 * MIB)
    net = Network("mdm", "mdm", None, None, {}, run_dir, 0.25)
    included, left_out = bundle(net, out)
    assert included == ["run.json", "best.pt"] and len(left_out) == 1 and left_out[0].startswith("last.pt")
    assert "64 MiB in all" in left_out[0]
    assert sorted(p.name for p in out.iterdir()) == ["densereg-large.tar", "mdm.tar"]
    with tarfile.open(out / "mdm.tar") as t:
        assert t.getnames() == ["mdm/run.json", "mdm/best.pt"]
    assert not list(run_dir.glob(".*tmp"))
    with (out / "segbaseline-large.tar").open("wb") as f:  # now only run.json fits: the tar with the weights stays
        f.truncate(11 * MIB)
    assert bundle(net, out)[0] == ["run.json", "best.pt"]
    with tarfile.open(out / "mdm.tar") as t:
        assert t.getnames() == ["mdm/run.json", "mdm/best.pt"]


@pytest.mark.slow
def test_the_device_script_rehearsed_on_the_cpu(synthetic, tmp_path):
    """training/gpukit_run.sh as the device runs it (join, speeds, train), on the CPU: the
    training budget is what the call's limit leaves after the speeds, MINUTES at most."""
    data, gt, _ = synthetic
    build_pack(data, gt, tmp_path / "pack", None)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVICE": "cpu", "PACK": str(tmp_path / "pack"), "OMP_NUM_THREADS": "1",
           "SPEED_ARGS": "--configs realtime --runs 1 --warmup 0", "LIMIT_S": "150"}
    (tmp_path / "out").mkdir()
    done = subprocess.run(["bash", str(REPO / "training" / "gpukit_run.sh"), "--steps", "2", "--batch-mult", "0.125", "--workers", "1",
                           "--config", "realtime", "--refiners", "", "--work", str(tmp_path / "work")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    budget = float(done.stdout.split("training budget: ", 1)[1].split()[0])
    assert 1.0 <= budget < 2.0  # 150 s less 30 s less what the speeds took, not the default 8 minutes
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["minutes_budget"] == budget
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["densereg-realtime.tar", "gpukit.log", "metrics.json", "speed.json"]


@pytest.mark.parametrize("filtering", [True, False])
def test_a_lease_bundle_is_extracted_inside_its_folder_only(tmp_path, monkeypatch, filtering):
    """``filter="data"`` is a TypeError before Python 3.10.12 (a lent machine's may be older):
    the same refusal is made by hand there."""
    import io
    import tarfile

    from tracker.errors import InputError
    from training.gpukit import extract_safely

    if filtering and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no data filter (before 3.10.12 / 3.11.4)")
    if not filtering:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    with tarfile.open(good, "w") as t:
        info = tarfile.TarInfo("net/best.pt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    with tarfile.open(bad, "w") as t:
        info = tarfile.TarInfo("../escaped.pt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    with tarfile.open(good) as t:
        extract_safely(t, tmp_path / "work")
    assert (tmp_path / "work" / "net" / "best.pt").read_bytes() == b"abc"
    with tarfile.open(bad) as t, pytest.raises((InputError, tarfile.FilterError) if filtering else InputError):
        extract_safely(t, tmp_path / "work")
    assert not (tmp_path / "escaped.pt").exists()


def test_a_bundle_with_a_damaged_run_record_is_one_line(tmp_path, monkeypatch):
    """``--resume-from`` a bundle whose run.json is damaged was a ValueError traceback (review 33)."""
    import argparse
    import io

    from training.gpukit import prepare
    from training.train import TASKS, Schedule

    class Tiny:
        batch_size = 2
        net = torch.nn.Linear(3, 1)

    monkeypatch.setitem(TASKS, "tiny", lambda ns: (Tiny(), Schedule(4, 2, 1e-2), {}))
    previous = tmp_path / "previous"
    previous.mkdir()
    with tarfile.open(previous / "tiny.tar", "w") as t:
        info = tarfile.TarInfo("tiny/run.json")
        info.size = 9
        t.addfile(info, io.BytesIO(b'{"minutes'))
    with pytest.raises(KitError, match=r"tiny/run.json is damaged"):
        prepare("tiny", "tiny", argparse.Namespace(), 1.0, tmp_path / "work", previous, 1.0, 0.0, 0)
    (previous / "tiny.tar").unlink()
    assert prepare("tiny", "tiny", argparse.Namespace(), 1.0, tmp_path / "work", previous, 1.0, 0.0, 0).previous_minutes == 0.0
