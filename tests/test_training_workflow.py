"""The training workflow around the networks: face caches that follow --data and --gt, run
folders that are not overwritten, reproducible fresh runs, the refiner's tracker-starts cache,
ground-truth items that cannot be fitted, exports that the tracker could not run, evaluation's
output folder and the profiled views' split list."""
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[train]')")

from tracker.errors import MissingInputError, UsageError  # noqa: E402
from tracker.pts import read_pts, write_pts  # noqa: E402


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """A 300-W-layout folder of 6 train + 3 val synthetic faces and their ground truth."""
    from tests.test_gpukit import synthetic_source

    data, gt, _ = synthetic_source(tmp_path_factory.mktemp("faces"), 6, 3)
    return data, gt


def other_faces(data: Path, gt: Path, root: Path, train: int) -> tuple[Path, Path]:
    """A copy of `data` (same relative names) whose train split is its first `train` faces, and
    a copy of its ground truth."""
    shutil.copytree(data, root / "data")
    listed = (data / "splits" / "train.txt").read_text().split()[:train]
    (root / "data" / "splits" / "train.txt").write_text("".join(f"{r}\n" for r in listed))
    shutil.copytree(gt, root / "gt")
    return root / "data", root / "gt"


# --- face caches --------------------------------------------------------------------------------


def test_face_caches_follow_the_data_and_ground_truth_they_are_built_from(faces, tmp_path):
    from training.dataset import cache_path
    from training.densereg_task import DenseRegTask

    data, gt = faces
    cache = tmp_path / "cache"
    first = DenseRegTask(data, gt, "realtime", "quantized", 2, cache_dir=cache)
    assert len(first.train.names) == 6
    data2, gt2 = other_faces(data, gt, tmp_path / "other", train=2)
    second = DenseRegTask(data2, gt2, "realtime", "quantized", 2, cache_dir=cache)
    assert len(second.train.names) == 2  # not the first run's six faces
    # other ground truth for the same faces is another cache too
    assert cache_path(cache, data, gt, "val") != cache_path(cache, data, gt2, "val") != cache_path(cache, data2, gt2, "val")
    assert len(list(cache.glob("densereg_*.npz"))) == 4
    # training.gpukit's pack (no split lists) reads the caches unpacked under the plain name; any
    # other folder without its list is an error, not whatever cache has that name (review 30)
    (tmp_path / "pack.json").write_text("{}")
    assert cache_path(cache, tmp_path, tmp_path, "train") == cache / "densereg_train.npz"
    with pytest.raises(MissingInputError, match="no train split list"):
        cache_path(cache, tmp_path / "misspelt", tmp_path, "train")
    (data / "splits" / "empty.txt").write_text("\n")
    with pytest.raises(MissingInputError, match="lists no faces"):
        cache_path(cache, data, gt, "empty")


def test_missing_ground_truth_is_one_line_before_any_caching(faces, tmp_path, capsys):
    from training.dataset import build_cache
    from training.train import main

    data, gt = faces
    _, gt2 = other_faces(data, gt, tmp_path, train=6)
    missing = (gt2 / (data / "splits" / "train.txt").read_text().split()[3]).with_suffix(".npz")
    missing.unlink()
    with pytest.raises(MissingInputError, match="training.groundtruth"):
        build_cache(data, gt2, "train", tmp_path / "cache.npz")
    assert main(["densereg", "--data", str(data), "--gt", str(gt2), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(missing) in err and "python -m training.groundtruth" in err and "\n" not in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "last.pt").exists()


def test_ground_truth_made_with_another_pts_origin_is_refused_and_made_again(faces, tmp_path):
    """Ground truth made before session 28's .pts x origin lies +0.5 px in x, and was used
    silently (review 30): the cache refuses it in one line, and training.groundtruth, rerun on the
    same folder, knows such a file is not finished."""
    from training.dataset import build_cache, ground_truth_offset
    from training.groundtruth import Job, _finished

    data, gt = faces
    _, gt2 = other_faces(data, gt, tmp_path, train=6)
    rel = (data / "splits" / "train.txt").read_text().split()[0]
    npz = (gt2 / rel).with_suffix(".npz")
    assert ground_truth_offset(npz, (data / rel).with_suffix(".pts")) is None
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["landmarks"] = arrays["landmarks"] + np.array([0.5, 0.0], np.float32)  # as the old origin wrote it
    np.savez_compressed(npz, **arrays)
    assert np.allclose(ground_truth_offset(npz, (data / rel).with_suffix(".pts")), [0.5, 0.0], atol=1e-3)
    with pytest.raises(MissingInputError, match=r"its landmarks lie \(\+0.50, \+0.00\) px from .* run python -m training.groundtruth again"):
        build_cache(data, gt2, "train", tmp_path / "cache.npz")
    assert not _finished(Job(data / rel, npz, None)) and _finished(Job(data / rel, (gt / rel).with_suffix(".npz"), None))


def test_evaluate_reads_its_data_and_writes_outside_the_published_results(faces, tmp_path, monkeypatch):
    import training.evaluate as E

    data, gt = faces
    data2, gt2 = other_faces(data, gt, tmp_path / "other", train=6)
    (data2 / "splits" / "val.txt").write_text((data / "splits" / "val.txt").read_text().split()[0] + "\n")
    monkeypatch.setattr(E, "REPO", tmp_path)  # where the defaults point
    cache = ["--cache", str(tmp_path / "cache")]
    assert E.main(["densereg", "--data", str(data), "--gt", str(gt), *cache]) == 0
    written = tmp_path / "out" / "evaluate" / "densereg_val.json"
    assert json.loads(written.read_text())["faces"] == 3 and not (tmp_path / "docs").exists()
    assert E.main(["densereg", "--data", str(data2), "--gt", str(gt2), *cache, "--out", str(tmp_path / "second")]) == 0
    assert json.loads((tmp_path / "second" / "densereg_val.json").read_text())["faces"] == 1


# --- run folders ---------------------------------------------------------------------------------


class TinyTask:
    """The Task protocol on a linear layer; `score` is what validation reports."""

    val_key = "loss"
    batch_size = 2
    score = 1.0
    built: list = []  # every network's initial weights, in the order they were built

    def __init__(self):
        self.net = torch.nn.Linear(3, 1)
        TinyTask.built.append(self.net.weight.detach().clone())

    def batch(self, rng):
        return torch.from_numpy(rng.normal(size=(2, 3)).astype(np.float32))

    def loss(self, batch):
        return {"total": self.net(batch).square().mean()}

    def evaluate(self):
        return {"loss": TinyTask.score}


@pytest.fixture
def tiny(monkeypatch, tmp_path_factory):
    """``python -m training.train tiny`` trains a TinyTask, with a 300-W folder of its own as the
    default --data (it reads no faces; a clone without ../shared beside it failed: user test 25)."""
    import training.train
    from training.train import TASKS, Schedule, main

    data = tmp_path_factory.mktemp("300w")
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("")
    monkeypatch.setattr(training.train, "DEFAULT_300W", data)

    def build(args):
        task = TinyTask()
        return task, Schedule(args.steps or 4, task.batch_size, args.lr or 1e-2, warmup=1), {}

    monkeypatch.setitem(TASKS, "tiny", build)
    monkeypatch.setattr(TinyTask, "built", [])
    monkeypatch.setattr(TinyTask, "score", 1.0)
    return lambda *args: main(["tiny", *map(str, args)])


def test_a_run_folder_is_not_started_over_without_resume(tiny, tmp_path, capsys):
    from training.train import load_checkpoint

    run = tmp_path / "run"
    assert tiny("--out", run, "--steps", 4, "--stop-at", 2) == 0
    best = (run / "best.pt").read_bytes()
    capsys.readouterr()
    assert tiny("--out", run, "--steps", 4) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {run} holds a run (step 2): --resume continues it, another --out starts a new one"
    assert (run / "best.pt").read_bytes() == best and len(TinyTask.built) == 1  # refused before any work
    assert tiny("--out", run, "--steps", 4, "--resume") == 0
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert [json.loads(v)["step"] for v in (run / "val.jsonl").read_text().splitlines()] == [2, 4]


def test_a_fresh_run_starts_from_the_same_weights(tiny, tmp_path):
    assert tiny("--out", tmp_path / "a", "--steps", 2) == 0
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text('{"command": "a run stopped before its first checkpoint"}')
    assert tiny("--out", tmp_path / "b", "--steps", 2, "--lr", 0.5) == 0
    assert torch.equal(TinyTask.built[0], TinyTask.built[1])
    assert json.loads((tmp_path / "b" / "run.json").read_text())["command"].endswith("--lr 0.5")  # this run's, not the stale one


def test_resume_logs_each_step_once_and_keeps_the_better_best(tiny, tmp_path):
    from training.train import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    assert tiny("--out", run, "--steps", 60, "--stop-at", 30) == 0
    # killed after the checkpoint at 30: steps up to 50 logged, then lost
    with (run / "log.csv").open("a") as log:
        log.write("50,0.010000,total=1.00000\n")
    # ... and, at a checkpoint, between writing best.pt (better) and last.pt (its best value stale)
    best = load_checkpoint(run / "best.pt")
    save_checkpoint(run / "best.pt", {**best, "metrics": {"loss": 0.5}})
    TinyTask.score = 0.8  # worse than best.pt, better than last.pt says
    assert tiny("--out", run, "--steps", 60, "--resume") == 0
    assert [int(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()] == [25, 50]
    assert load_checkpoint(run / "best.pt")["metrics"]["loss"] == 0.5


def test_a_finished_run_resumed_again_trains_and_logs_nothing(tiny, tmp_path, capsys):
    """The cards' workflow is "--resume until validation stops improving": a finished run
    resumed again logged its last validation once more each time (review 30)."""
    run = tmp_path / "run"
    assert tiny("--out", run, "--steps", 4) == 0
    before = {name: (run / name).read_bytes() for name in ("val.jsonl", "log.csv", "last.pt", "best.pt")}
    capsys.readouterr()
    assert tiny("--out", run, "--steps", 4, "--resume") == 0
    assert f"{run}: already at step 4 of 4; nothing to train" in capsys.readouterr().err
    assert {name: (run / name).read_bytes() for name in before} == before
    assert "trained_s" in json.loads((run / "val.jsonl").read_text().splitlines()[-1])  # the card's training time
    # a caller's record of the run still comes (gpukit's report: a KeyError there failed a finished network; review 30b)
    from training.train import Schedule
    from training.train import run as train_run

    seen = []
    train_run(TinyTask(), Schedule(4, 2, 1e-2, warmup=1), run, 1.0, resume=True, on_checkpoint=lambda step, m: seen.append(step))
    assert seen == [4]
    # --resume with --init-from this folder's best.pt: last.pt wins, and each step is logged once (review 30b)
    run2 = tmp_path / "run2"
    assert tiny("--out", run2, "--steps", 100, "--stop-at", 50) == 0
    assert tiny("--out", run2, "--steps", 100, "--resume", "--init-from", run2 / "best.pt") == 0
    steps = [int(r.split(",")[0]) for r in (run2 / "log.csv").read_text().splitlines()]
    assert steps == [25, 50, 75, 100]


def test_a_run_killed_before_its_first_checkpoint_is_logged_once(tiny, tmp_path):
    """Killed before its first checkpoint, a folder holds log.csv and run.json only; the next
    run (new, or --resume: nothing to resume) logged its steps after the dead run's (review 30)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("25,0.010000,total=1.00000\n50,0.010000,total=1.00000\n")
    assert tiny("--out", run, "--steps", 60, "--resume") == 0
    assert [int(r.split(",")[0]) for r in (run / "log.csv").read_text().splitlines()] == [25, 50]


@pytest.mark.parametrize("change, message", [
    (("--steps", 8), "was trained with --steps 4, not 8"),
    (("--lr", 0.5), "was trained with --lr 0.01, not 0.5"),
])
def test_a_run_resumes_only_with_its_own_schedule(tiny, tmp_path, capsys, change, message):
    """Its learning rate would jump to another curve mid-run, silently (review 30)."""
    run = tmp_path / "run"
    assert tiny("--out", run, "--steps", 4, "--stop-at", 2) == 0
    capsys.readouterr()
    assert tiny("--out", run, "--steps", 4, "--resume", *change) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "resume with the run's own options" in err[0]
    assert tiny("--out", run, "--steps", 4, "--resume") == 0


def test_resume_takes_the_runs_own_options_and_reads_damaged_logs_in_one_line(tiny, tmp_path, capsys):
    """`--resume` alone was refused for the defaults of the options the run was started with
    (user test 22); a log row or a checkpoint cut short by a kill was a traceback."""
    from training.train import load_checkpoint, read_val_log

    run = tmp_path / "run"
    assert tiny("--out", run, "--steps", 8, "--lr", 0.02, "--stop-at", 4) == 0
    with (run / "val.jsonl").open("a") as log:
        log.write('{"step": 6, "ti')  # killed while writing a row
    assert [r["step"] for r in read_val_log(run)] == [4]
    capsys.readouterr()
    assert tiny("--out", run, "--resume", "--stop-at", 6) == 0  # --steps 8 --lr 0.02 are the run's; --stop-at this command's
    assert load_checkpoint(run / "last.pt")["step"] == 6 and [r["step"] for r in read_val_log(run)] == [4, 6]
    assert tiny("--out", run, "--resume") == 0  # a run stopped by its --stop-at goes on
    assert load_checkpoint(run / "last.pt")["step"] == 8
    assert tiny("--out", run, "--resume", "--lr", 0.5) == 2  # what the command gives still counts
    assert "was trained with --lr 0.02, not 0.5" in capsys.readouterr().err
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:3000])
    assert tiny("--out", run, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {run / 'last.pt'}: not a readable checkpoint, damaged or cut short")


def test_resume_from_another_folder_reads_the_runs_own_folders(tiny, tmp_path, monkeypatch):
    """A run started with relative --cache / --gt / --gt-extra and resumed from another working
    folder read them relative to the new one (only --data was resolved in run.json; review 32)."""
    from training.train import TASKS

    seen = []
    build = TASKS["tiny"]
    monkeypatch.setitem(TASKS, "tiny", lambda args: (seen.append(args), build(args))[1])
    (tmp_path / "first").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    assert tiny("--out", tmp_path / "run", "--steps", 4, "--stop-at", 2, "--cache", "c", "--gt", "g", "--gt-extra", "p") == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert tiny("--out", tmp_path / "run", "--resume") == 0
    first, resumed = seen
    assert first.cache == Path("c") and resumed.cache == tmp_path / "first" / "c"
    assert resumed.gt == tmp_path / "first" / "g" and resumed.gt_extra == [tmp_path / "first" / "p"]
    assert tiny("--out", tmp_path / "run", "--resume", "--cache", "mine") == 0  # what the command gives still counts
    assert seen[-1].cache == Path("mine")
    # --init-from is each command's while the folder holds a checkpoint; a run killed before its
    # first one started again from random weights, its card naming the file (review 33)
    monkeypatch.chdir(tmp_path / "first")
    torch.save({"model": torch.nn.Linear(3, 1).state_dict()}, "w.pt")
    assert tiny("--out", tmp_path / "fresh", "--steps", 4, "--init-from", "w.pt") == 0
    for name in ("last.pt", "best.pt"):
        (tmp_path / "fresh" / name).unlink()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert tiny("--out", tmp_path / "fresh", "--resume") == 0
    assert seen[-1].init_from == tmp_path / "first" / "w.pt"
    assert tiny("--out", tmp_path / "fresh", "--resume") == 0 and seen[-1].init_from is None  # its checkpoint's weights now


def test_a_run_resumes_only_with_its_own_options_and_network(tmp_path):
    from training.train import Schedule, run

    folder = tmp_path / "run"
    TinyTask.score = 0.5
    run(TinyTask(), Schedule(4, 2, 1e-2, warmup=1), folder, 1.0, resume=False, stop_at=2, options={"hole_weight": 3.0})
    with pytest.raises(UsageError, match="was trained with hole_weight = 3.0, not unset"):
        run(TinyTask(), Schedule(4, 2, 1e-2, warmup=1), folder, 1.0, resume=True)
    from training.train import _folders

    # a folder of views named another way (absolute, from elsewhere) is the same run's (review 30b)
    assert _folders(["views"]) == _folders([str(Path("views").resolve())]) == [str(Path.cwd() / "views")]
    other = TinyTask()
    other.net = torch.nn.Linear(4, 1)  # another network than the checkpoint's
    with pytest.raises(UsageError, match="holds another network than these options build"):
        run(other, Schedule(4, 2, 1e-2, warmup=1), folder, 1.0, resume=True, options={"hole_weight": 3.0})


def test_training_and_evaluation_refuse_bad_inputs_in_one_line_before_any_work(faces, tiny, tmp_path, capsys):
    from training.evaluate import main as evaluate_main

    data, gt = faces
    assert tiny("--out", tmp_path / "a", "--init-from", tmp_path / "nope.pt") == 2
    assert not (tmp_path / "a").exists()  # refused before run.json
    from tracker.assets import ASSETS

    for argv in (["densereg", "--model", "model.onnx"], ["densereg", "--model", f"x={tmp_path / 'nope.onnx'}"],
                 ["parts", "--baseline", str(tmp_path / "nope")], ["densereg", "--model", f"x={ASSETS / 'mdm_refiner.onnx'}"],
                 ["parts", "--bootstrap", "-1"]):
        assert evaluate_main([*argv, "--data", str(data), "--gt", str(gt), "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and err[0] == f"error: --init-from {tmp_path / 'nope.pt'}: no such file"
    assert all(m in line for line, m in zip(err[1:], ["give NAME=PATH.onnx", "no such file", "no best.pt there",
                                                      "not a DenseReg network (it takes image, init and gives points",
                                                      "--bootstrap -1: give a number of resamples"]))
    empty = tmp_path / "empty"
    shutil.copytree(data, empty)
    (empty / "splits" / "val.txt").write_text("")
    assert evaluate_main(["densereg", "--data", str(empty), "--gt", str(gt), "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "ev")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {empty / 'splits' / 'val.txt'}: lists no faces"


def test_a_weights_only_continuation_of_the_same_folder_keeps_its_better_best(tiny, tmp_path):
    """gpukit's --resume-from with weights-only tars (best.pt, no optimizer state) started from
    best = inf: its first, worse checkpoint replaced best.pt (user test 8)."""
    from training.train import Schedule, load_checkpoint, run

    folder = tmp_path / "run"
    TinyTask.score = 0.5
    assert tiny("--out", folder, "--steps", 4, "--stop-at", 2) == 0
    (folder / "last.pt").unlink()  # what a weights-only tar brings back
    (folder / "log.csv").write_text("25,0.010000,total=1.00000\n")  # ... with its log
    TinyTask.score = 0.9
    run(TinyTask(), Schedule(4, 2, 1e-2, warmup=1), folder, 1.0, resume=False, init_from=folder / "best.pt")
    assert load_checkpoint(folder / "best.pt")["metrics"]["loss"] == 0.5
    assert (folder / "log.csv").read_text().startswith("25,")  # the earlier run's rows kept (history)
    (folder / "last.pt").unlink()
    assert tiny("--out", folder, "--steps", 4, "--resume") == 0  # --resume with best.pt alone: its weights, not scratch
    assert load_checkpoint(folder / "best.pt")["metrics"]["loss"] == 0.5
    TinyTask.score = 0.2  # a better one still replaces it
    (folder / "last.pt").unlink()
    run(TinyTask(), Schedule(4, 2, 1e-2, warmup=1), folder, 1.0, resume=False, init_from=folder / "best.pt")
    assert load_checkpoint(folder / "best.pt")["metrics"]["loss"] == 0.2


def test_max_minutes_says_its_default(capsys):
    from training.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "(default 60)" in " ".join(capsys.readouterr().out.split())


# --- the refiner's tracker starts -------------------------------------------------------------


def test_tracker_starts_are_cached_per_data_folder(tmp_path, monkeypatch):
    """Two folders with the same relative names share a --cache: each gets its own starts."""
    import tracker
    import tracker.sources
    from tracker.shape_model import load_shape_model
    from training.mdm import tracker_starts

    class FakeTracker:  # the tracker leaves every face one pixel right of its annotation
        def __init__(self, config):
            pass

        def close(self):
            pass

    def track_stream(_, paths):
        for p in paths:
            landmarks = read_pts(p.with_suffix(".pts"), expected=68) + [1.0, 0.0]
            yield SimpleNamespace(path=p, result=SimpleNamespace(faces=[SimpleNamespace(landmarks=landmarks)]))

    monkeypatch.setattr(tracker, "Tracker", FakeTracker)
    monkeypatch.setattr(tracker.sources, "ImageSource", lambda paths, name: paths)
    monkeypatch.setattr(tracker.sources, "track_stream", track_stream)
    mean = load_shape_model().mean
    for k, root in enumerate((tmp_path / "a", tmp_path / "b")):
        (root / "splits").mkdir(parents=True)
        (root / "splits" / "val.txt").write_text("face.jpg\n")
        write_pts(root / "face.pts", mean * 40 + 100 + 10 * k)
    a, b = (tracker_starts(tmp_path / r, "val", (), tmp_path / "cache")["face.jpg"] for r in "ab")
    np.testing.assert_allclose(b - a, 10.0, atol=1e-4)
    assert len(list((tmp_path / "cache").glob("starts_val_*.npz"))) == 2


# --- ground truth ---------------------------------------------------------------------------------


@pytest.mark.shared_template
def test_groundtruth_skips_an_unfittable_face_and_a_second_image_of_one_stem(tmp_path, capsys):
    import cv2

    from tests.test_groundtruth import make_face
    from training import groundtruth as G

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    image, _ = make_face(src, "good")
    cv2.imwrite(str(src / "good.jpg"), cv2.imread(str(image)))  # the same stem twice: one good.npz
    cv2.imwrite(str(src / "degen.png"), np.full((100, 120, 3), 90, np.uint8))
    write_pts(src / "degen.pts", np.full((68, 2), 50.0))  # 68 identical points: no finite fit
    out.mkdir()
    np.savez(out / "old.npz", nme=np.array([np.nan], np.float32), face_index=np.array(0))  # an older version's failed fit
    rc = G.main(["--images", str(src), "--out", str(out), "--preview", str(tmp_path / "prev")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"skipped: {src / 'degen.png'}: fit failed" in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped:") and "good" in line]
    assert len(skipped) == 1 and "good.jpg" in skipped[0] and "good.png" in skipped[0]
    assert sorted(p.name for p in out.iterdir()) == ["good.npz", "old.npz", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == 1 and np.isfinite(summary["nme_median"])


def test_groundtruth_preview_of_points_outside_the_picture():
    from training.groundtruth import DenseGT, preview

    h, w = 60, 80
    gt = DenseGT(np.full((2, h, w), np.nan), np.full((h, w), np.nan), np.zeros((h, w), bool), np.zeros((h, w), np.uint8),
                 np.zeros((h, w), bool))
    far = np.full((1, 68, 2), 5000.0) + np.arange(68)[None, :, None]
    assert preview(np.zeros((h, w, 3), np.uint8), gt, far, far, width=90).shape == (2 * 68, 3 * 90, 3)


# --- export ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch, options, message", [
    ("mdm-fine", {}, "the tracker feeds mdm_fine.onnx 208 px crops; RUN trained a refiner on 128 px crops (export it as mdm)"),
    ("mdm", "fine", "the tracker feeds mdm_refiner.onnx 128 px crops; RUN trained a refiner on 208 px crops (export it as mdm-fine or mdm-single)"),
    ("densereg", {"config": "paper", "variant": "quantized"}, "the tracker feeds densereg_realtime.onnx 128 px crops; the 321 px"),
    ("mdm", {"config": "realtime", "variant": "quantized"}, "RUN is a DenseReg run: it cannot be exported as mdm (mdm_refiner.onnx)"),
    ("densereg-fast", "fine", "RUN is a refiner run: it cannot be exported as densereg-fast (densereg_fast.onnx)"),
    ("densereg", {"config": "realtime", "variant": "segment"}, "RUN is a part segmenter, not a DenseReg network"),
])
def test_export_refuses_a_run_the_tracker_could_not_run(tmp_path, capsys, arch, options, message):
    from dataclasses import asdict

    from training.export import main as export_main
    from training.mdm import FINE_CONFIG
    from training.train import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    options = asdict(FINE_CONFIG) if options == "fine" else options
    save_checkpoint(run / "best.pt", {"model": {}, "step": 1, "metrics": {}, "options": options})
    assert export_main([arch, "--run", str(run), "--out-dir", str(tmp_path / "assets")]) == 2  # as the other training commands
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message.replace("RUN", str(run)))
    assert not (tmp_path / "assets").exists()


# --- profiled views -------------------------------------------------------------------------------------


def test_profile_lists_every_finished_view_whatever_this_run_asked(tmp_path):
    from training import profile as PR

    data, gt, out = tmp_path / "data", tmp_path / "gt", tmp_path / "out"
    (data / "splits").mkdir(parents=True)
    gt.mkdir()
    (data / "splits" / "train.txt").write_text("set/a.jpg\nset/b.jpg\n")
    (out / "set").mkdir(parents=True)
    for stem in ("a_p1", "a_p2", "a_p3", "b_p1", "b_p2"):  # views of earlier runs (b_p2 unfinished: no npz)
        for ext in (".jpg", ".pts") + ((".npz",) if stem != "b_p2" else ()):
            (out / "set" / f"{stem}{ext}").write_bytes(b"")
    assert PR.main(["--gt", str(gt), "--data", str(data), "--out", str(out), "--views", "1", "--limit", "1"]) == 0
    assert (out / "splits" / "train.txt").read_text().split() == ["set/a_p1.jpg", "set/a_p2.jpg", "set/a_p3.jpg", "set/b_p1.jpg"]


def test_the_card_names_the_data_the_run_trained_on(tmp_path):
    """Every card said "1,932 300-W faces / 80 val faces", whatever the run trained on (user test 8)."""
    from training.export import data_lines

    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("a.jpg\nb.jpg\nc.jpg\n")
    (tmp_path / "splits" / "val.txt").write_text("d.jpg\n")
    mine = data_lines({"command": f"python -m training.train densereg --data {tmp_path} --steps 10"})
    assert mine == {"data": f"`{tmp_path}` (`splits/train.txt`: 3 faces)", "val_data": "its `splits/val.txt` (1 face)"}
    pack = data_lines({"command": "python -m training.gpukit train", "pack": {"counts": {"train": 9, "val": 3}}})
    assert "(9 faces)" in pack["data"] and "3 faces" in pack["val_data"]
    assert data_lines({})["data"].startswith("300-W training split")  # a CPU run without run.json: the default data
    assert data_lines({"command": f"python -m training.train densereg --data={tmp_path}"}) == mine


def test_ground_truth_made_again_in_the_same_folder_gets_its_own_cache_and_the_card_its_data(tmp_path):
    import os

    from training.dataset import cache_path
    from training.export import data_lines
    from training.train import write_run_info

    data, gt = tmp_path / "data", tmp_path / "gt"
    (data / "splits").mkdir(parents=True)
    (data / "splits" / "train.txt").write_text("a.jpg\n")
    gt.mkdir()
    (gt / "a.npz").write_bytes(b"")
    before = cache_path(tmp_path, data, gt, "train")
    os.utime(gt / "a.npz", ns=(0, (gt / "a.npz").stat().st_mtime_ns + 10**9))  # made again a second later
    assert cache_path(tmp_path, data, gt, "train") != before
    # a relative --data, run from elsewhere: the card takes the folder the run recorded
    write_run_info(tmp_path / "run", ["densereg", "--data", "data"], 16, 1e-3, None, paths={"data": str(data.resolve())})
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert data_lines(info)["data"] == f"`{data.resolve()}` (`splits/train.txt`: 1 face)"


def test_an_installed_package_writes_nothing_inside_itself(tmp_path):
    """User test 10: from a wheel, runs went into site-packages/runs and an export without
    --out-dir replaced the installed models.  The packages copied without pyproject.toml beside
    them (as in site-packages) put their defaults in the current folder and ask for outputs."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    for package in ("tracker", "training", "engines"):
        shutil.copytree(repo / package, site / package, ignore=shutil.ignore_patterns("*.onnx", "*.pt", "demo", "textures", "__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}

    def python(*args):
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    r = python("-c", "import training; print(training.REPO, training.INSTALLED)")
    assert r.stdout.split() == [str(work), "True"], r.stderr
    for module in ("training.export", "training.shape_pca"):
        r = python("-m", module, "mdm", "--run", "x") if module == "training.export" else python("-m", module)
        assert r.returncode == 2 and "required: --out" in r.stderr, (module, r.stderr)
    r = python("-m", "training.train", "mdm", "--steps", "1")
    assert r.returncode == 2 and "not a 300-W folder" in r.stderr and "Traceback" not in r.stderr
    assert not (site / "runs").exists() and not (work / "runs").exists()
    r = python("-c", "from tracker.errors import install_hint; print(install_hint('cnn'))")
    assert "densereg-tracker[cnn]" in r.stdout


def test_val_crop_matrix_cuts_the_val_crop_and_parts_score_a_tracker_output(faces, tmp_path, monkeypatch):
    """``val_crop_matrix`` maps the picture onto the validation crop ``sample_crop`` cuts (so a
    tracker's landmarks land where the crop shows them), and ``evaluate parts --landmarks``
    scores a folder of predictions beside the transfer."""
    import training.evaluate as E
    from tracker.fileio import read_image
    from training.dataset import split_faces, val_crop_matrix

    data, gt = faces
    samples = E.val_samples(data, gt, tmp_path / "cache")
    for rel, sample in zip(split_faces(data, "val"), samples):
        with np.load((gt / rel).with_suffix(".npz")) as z:
            m = val_crop_matrix(z["landmarks"][0].astype(np.float64))
        picture = read_image(data / rel)
        diff = [np.abs(cv2.warpAffine(picture, m + [[0, 0, dx], [0, 0, 0]], (128, 128)).astype(float) - sample.image).mean()
                for dx in (0, 3)]
        assert diff[0] < 2 and diff[1] > 4 * diff[0]  # 0.4 vs 7.5 (the crop passes through the 288-px cache: not bit-exact)
    pred = tmp_path / "pred"
    for rel in split_faces(data, "val"):
        (pred / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy((data / rel).with_suffix(".pts"), (pred / rel).with_suffix(".pts"))
    monkeypatch.setattr(E, "REPO", tmp_path)
    assert E.main(["parts", "--data", str(data), "--gt", str(gt), "--cache", str(tmp_path / "cache"), "--landmarks", str(pred)]) == 0
    table = json.loads((tmp_path / "out" / "evaluate" / "parts_val.json").read_text())["iou"]
    assert any(name.startswith("template fitted to the tracker's landmarks") for name in table)


def test_profiled_views_of_a_val_face_are_refused(tmp_path):
    """Each view's .npz records the face it was rendered from: one of the val split's would be
    trained on and then validated as a face never seen (review 30)."""
    from training.dataset import check_views_not_val

    data, views = tmp_path / "data", tmp_path / "views"
    for folder, split, names in ((data, "val", ["helen/a_1.jpg"]), (views, "train", ["helen/b_1_p0.jpg", "helen/a_1_p0.jpg"])):
        (folder / "splits").mkdir(parents=True)
        (folder / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    (views / "helen").mkdir()
    np.savez(views / "helen" / "b_1_p0.npz", source=np.array("helen/b_1.jpg"))
    check_views_not_val(data, views)  # the second view has no ground truth yet: not one
    np.savez(views / "helen" / "a_1_p0.npz", source=np.array("helen/a_1.jpg"))
    with pytest.raises(UsageError, match="its view helen/a_1_p0.jpg was rendered from helen/a_1.jpg, a face of"):
        check_views_not_val(data, views)


def test_a_log_row_without_its_newline_is_kept_and_a_cut_one_dropped(tmp_path):
    """``read_val_log`` counted a whole last row without its newline, ``append_val_row`` then
    deleted it (review 32)."""
    from training.train import append_val_row, read_val_log

    for text, steps in (('{"step": 1}\n{"step": 2}', [1, 2, 3]), ('{"step": 1}\n{"step": 2', [1, 3])):
        (tmp_path / "val.jsonl").write_text(text)
        append_val_row(tmp_path, {"step": 3})
        assert [r["step"] for r in read_val_log(tmp_path)] == steps
