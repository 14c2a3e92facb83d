"""Train the project's networks on the CPU: ``python -m training.train TASK ...``.

    python -m training.train densereg --config realtime [--variant quantized|plain] [--gt-extra DIR] [--max-minutes M] [--resume]
    python -m training.train mdm [--gt-extra DIR] [--max-minutes M] [--resume]
    python -m training.train mdm-fine [--gt-extra DIR] [--max-minutes M] [--resume]

One loop serves every task (``Task``: batches, loss, validation): deterministic seeds,
checkpoints every few minutes and on SIGINT/SIGTERM (so training continues across sessions
with ``--resume``; without it, a run folder that holds a run is refused), tqdm progress, ``log.csv`` (loss terms per step) and ``val.jsonl``
(validation at every checkpoint), ``best.pt`` by the task's validation key.  Checkpoints are
plain state dicts loaded with ``torch.load(weights_only=True)``.  The same loop trains on a GPU
for ``training.gpukit`` (device, batches from DataLoader workers, bf16 autocast).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tracker.errors import InputError, TrackerError, UsageError
from tracker.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from training import REPO
from training.model import AUX_HEAD, CONFIGS
from training.template import DEFAULT_300W

SEED = 0
# The fields of a val.jsonl row that are not metrics (when, and after how much training).
LOG_FIELDS = ("step", "time", "trained_s")


class Task(Protocol):
    net: torch.nn.Module
    batch_size: int
    val_key: str  # lower is better

    def batch(self, rng: np.random.Generator): ...

    def loss(self, batch) -> dict[str, torch.Tensor]: ...

    def evaluate(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch: int
    lr: float
    warmup: int = 300
    checkpoint_minutes: float = 5.0
    weight_decay: float = 1e-4
    # Decay over the run's time budget as well (the LR follows whichever of steps and time is
    # further along): a GPU lease's step count is not known in advance, its minutes are.
    by_time: bool = False


def poly_lr(step: int, s: Schedule, elapsed: float = 0.0, warm_elapsed: float = 0.0) -> float:
    """Linear warm-up (the paper's 'warm start') then polynomial decay (power 0.9) over the steps
    after it, or over the time budget left after it when `elapsed` (the fraction of the budget
    spent; `warm_elapsed`: spent when the warm-up ended) is further along.  The decay starts at
    the warm-up's end: counted from step 0 it dropped the rate there at once (x0.93 for 4,000
    steps, x0.63 where a GPU lease's warm-up took 40% of its time; review 30)."""
    if step < s.warmup:
        return s.lr * (0.1 + 0.9 * step / s.warmup)
    by_steps = min(step - s.warmup, s.steps - s.warmup - 1) / max(s.steps - s.warmup, 1)
    by_time = (elapsed - warm_elapsed) / max(1.0 - warm_elapsed, 1e-9) if elapsed else 0.0
    return s.lr * (1 - max(by_steps, min(by_time, 0.999))) ** 0.9


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """A checkpoint's dict; InputError (one line naming it) for a file torch cannot read, cut
    short by a kill or a full disk (a torch traceback; user test 22)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError ... by how the file is damaged
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:100]  # (a 0-byte file's error has no message: user test 23)
        raise InputError(f"{path}: not a readable checkpoint, damaged or cut short ({reason})") from None


def held_run_step(out: Path) -> int | None:
    """The step of the run a folder already holds (its last.pt, else its best.pt); None if none."""
    for name in ("last.pt", "best.pt"):
        if (out / name).exists():
            return int(load_checkpoint(out / name)["step"])
    return None


def drop_log_rows_after(log: Path, step: int) -> None:
    """Keep the rows of ``log.csv`` up to `step`: a run resumed from its last checkpoint trains
    the steps after it again (after a kill), and would log them twice."""
    if not log.exists():
        return
    rows = log.read_text().splitlines(keepends=True)
    kept = [r for r in rows if (n := r.split(",", 1)[0]).isdigit() and int(n) <= step]
    if len(kept) < len(rows):
        atomic_write_text(log, "".join(kept))


def _map_tensors(obj, fn):
    """`fn` applied to every tensor in a (nested) tuple, list, dict or dataclass."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj)})
    return obj


class _DeviceBridge(torch.nn.Module):
    """The network on `device` behind CPU tensors in and out: the tasks' ``evaluate`` is shared
    with CPU training and feeds its network CPU tensors.  It stands in for the network: keyword
    arguments pass through, and so does what it is asked that is the network's (``cfg``)."""

    def __init__(self, net: torch.nn.Module, device: torch.device):
        super().__init__()
        self.net, self.device = net, device

    def forward(self, *args, **kwargs):
        args, kwargs = _map_tensors((args, kwargs), lambda t: t.to(self.device))
        return _map_tensors(self.net(*args, **kwargs), lambda t: t.cpu())

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


@contextmanager
def evaluated_on(task: Task, device: torch.device):
    """Within: ``task.evaluate()`` runs its network on `device` (see ``_DeviceBridge``).  The
    CPU goes through the same bridge (a no-op there), so CPU tests run the GPU's path: a bridge
    that took no keyword arguments once stopped every GPU run at its first evaluation (review 27)."""
    net = task.net
    task.net = _DeviceBridge(net, device)
    try:
        yield
    finally:
        task.net = net


# Layers a checkpoint may lack that start with their output at zero, so that the maps are
# unchanged at the first step: the stride-2 foreground branch (``training.model.FgBranch``) and
# residual blocks at stride 4 beyond the checkpoint's (``--decoder-blocks`` above its count).
ADDED_BLOCKS = "backbone.fuse4."
STARTS_AT_ZERO = ("backbone.fg2.", ADDED_BLOCKS, AUX_HEAD)  # the last: training-only, never in the maps
HEAD = ("backbone.head.weight", "backbone.head.bias")


def init_weights(checkpoint: dict) -> dict:
    """The network weights of a training checkpoint ('model') or of an exported network
    (``training.export``'s .pt: 'state_dict'), so a run can start from the shipped weights."""
    for key in ("model", "state_dict"):
        if key in checkpoint:
            return checkpoint[key]
    raise ValueError("--init-from: neither a training checkpoint ('model') nor an exported network ('state_dict')")


def load_init_weights(net: torch.nn.Module, state: dict) -> None:
    """Load a trained network's weights into `net`, which may lack some of its layers (a
    configuration with blocks removed, e.g. ``--decoder-blocks``): those weights are left out,
    with one log line.  `net` may also have layers of ``STARTS_AT_ZERO`` the checkpoint lacks
    (the stride-2 foreground branch, added stride-4 blocks): they start as no-ops.  A quantized
    head with a multiple of the checkpoint's bins starts as the checkpoint's (``split_bins``).
    Every other layer of `net` must get weights of the same shape."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    fresh = [k for k in missing if k.startswith(STARTS_AT_ZERO)]
    if fresh:
        print(f"--init-from: {len(fresh)} tensors of branches the checkpoint lacks start fresh as no-ops ("
              f"{', '.join(sorted({k.split('.')[1] for k in fresh}))})", file=sys.stderr)
        missing = [k for k in missing if k not in fresh]
    if missing:
        raise ValueError(f"--init-from: the checkpoint has no weights for {len(missing)} tensors of this network "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    dropped = sorted(set(state) - set(own))
    if dropped:
        print(f"--init-from: {len(dropped)} tensors of layers this network does not have are left out "
              f"({', '.join(sorted({k.rsplit('.', 3)[0] for k in dropped}))})", file=sys.stderr)
    state = {k: state.get(k, v) for k, v in own.items()}
    for k in HEAD:  # a quantized network with more bins: split the checkpoint's
        if k in own and state[k].shape != own[k].shape:
            from training.model import head_bins, split_bins

            k_from, k_to = head_bins(state[k].shape[0]), head_bins(own[k].shape[0])
            state[k] = split_bins(state[k], k_to)
            print(f"--init-from: {k} split from {k_from} into {k_to} bins", file=sys.stderr)
    net.load_state_dict(state)
    zero_new_blocks(net, fresh)


def zero_new_blocks(net: torch.nn.Module, fresh: list[str]) -> None:
    """Added stride-4 blocks pass their input through: the scale of their last batch norm at
    zero (the FgBranch zero-initialises its own output and is left as it is built)."""
    from training.model import InvertedResidual

    for name, m in net.named_modules():
        if (name.startswith(ADDED_BLOCKS) and isinstance(m, InvertedResidual) and m.residual
                and any(k.startswith(f"{name}.") for k in fresh)):
            torch.nn.init.zeros_(m.body[-1][1].weight)


class WeightAverage:
    """An exponential moving average of a network's weights and buffers (Polyak averaging), the
    network validated and kept with it: one step's weights are noisy (a DenseReg run's part
    transfer moves 1-3 mIoU points from one validation to the next), their average is not.
    The decay ramps up as (1 + n) / (10 + n) over the first updates, as is usual."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.is_floating_point():
                    self.state[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
                else:  # batch norm's step count
                    self.state[k].copy_(v)

    @contextmanager
    def swapped_into(self, net: torch.nn.Module):
        """`net` holds the averaged weights inside the block, its own again after."""
        own = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.state)
        try:
            yield
        finally:
            net.load_state_dict(own)


@dataclass
class StopRequest:
    """A SIGINT/SIGTERM that asked training to stop (``run``'s, or a caller's own handler's)."""

    signum: int = 0

    def __bool__(self) -> bool:
        return bool(self.signum)


@contextmanager
def stopping_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Within: SIGINT and SIGTERM set `stop` instead of interrupting (training checkpoints and
    ends); the handlers before are put back after."""

    def on_signal(signum, frame):
        stop.signum = signum

    before = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def run(task: Task, sched: Schedule, out: Path, max_minutes: float, resume: bool, seed: int = SEED,
        options: dict | None = None, init_from: Path | None = None, stop_at: int = 0, device: str = "cpu",
        batches: Iterator | None = None, amp: bool = False,
        on_checkpoint: Callable[[int, dict[str, float]], None] | None = None, ema: float = 0.0,
        stop: StopRequest | None = None) -> dict[str, float]:
    """Train until `sched.steps` (or `stop_at`, leaving the LR schedule of `sched.steps` intact, so
    that runs compared at equal budget share one schedule) or `max_minutes`; returns the last
    validation metrics.  With `ema` (a decay, e.g. 0.998) the weights' moving average
    (``WeightAverage``) is what is validated and kept in ``best.pt``; ``last.pt`` holds both.

    For ``training.gpukit``: the network trains on `device`; `batches` yields CPU batches made
    elsewhere (DataLoader workers) instead of ``task.batch`` in this process; `amp` runs the
    forward pass and loss under bf16 autocast; `on_checkpoint(step, metrics)` follows every
    checkpoint; `stop` is shared with the caller: a SIGINT/SIGTERM sets it, and set (by either
    side, before or during the run) it ends the run with a checkpoint.  Checkpoints always hold
    CPU tensors."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    task.net.to(dev)
    opt = torch.optim.AdamW(task.net.parameters(), lr=sched.lr, weight_decay=sched.weight_decay)
    step, best, trained_s = 0, float("inf"), 0.0
    last = out / "last.pt"
    if ema:  # best.pt says how its weights were chosen (the card quotes it)
        options = {**(options or {}), "ema": ema}
    if resume and not last.exists() and (out / "best.pt").exists() and init_from is None:
        # a folder with best.pt alone (a gpukit tar too large for last.pt): continue its weights,
        # the step count restarting; starting from scratch replaced best.pt with a worse network
        init_from = out / "best.pt"
    weights_only = init_from is not None and not (resume and last.exists())  # (last.pt wins over --init-from on --resume)
    own_best = weights_only and (out / "best.pt").exists() and Path(init_from).resolve() == (out / "best.pt").resolve()
    if weights_only:
        # Weights only: a new run (new data or recipe) starting from a trained network.
        init = load_checkpoint(init_from)
        load_init_weights(task.net, init_weights(init))
        if own_best:
            # this folder's own best weights continued (a gpukit lease's weights-only tar): the
            # same network on the same validation, so it stays best.pt until beaten
            best = float(init.get("metrics", {}).get(task.val_key, best))
    if resume and last.exists():
        state = load_checkpoint(last)
        check_same_run(state, sched, options or {}, last)
        try:
            task.net.load_state_dict(state["model"])
        except RuntimeError as exc:  # another network's options than the run's (a traceback of 36 keys)
            raise UsageError(f"{last} holds another network than these options build ({str(exc).splitlines()[0][:100]}); "
                             "resume with the run's own options") from None
        opt.load_state_dict(state["optimizer"])
        step, best, trained_s = int(state["step"]), float(state["best"]), float(state.get("trained_s", 0.0))
        if (out / "best.pt").exists():  # newer than last.pt's `best` after a kill between writing the two
            best = float(load_checkpoint(out / "best.pt")["metrics"].get(task.val_key, best))
        rng.bit_generator.state = json.loads(state["rng"])
        if "torch_rng" in state:  # absent in checkpoints of older runs
            torch.set_rng_state(state["torch_rng"])
    average = WeightAverage(task.net, ema) if ema else None
    if average is not None and resume and last.exists() and "ema" in state:
        average.state, average.updates = {k: v.to(dev) for k, v in state["ema"].items()}, int(state["ema_updates"])
    end = min(sched.steps, stop_at) if stop_at > 0 else sched.steps
    if step >= end:
        # a finished run resumed again: nothing to train, and a checkpoint now would log its
        # last validation once more (the card showed it three times, review 30)
        print(f"{out}: already at step {step} of {end}; nothing to train", file=sys.stderr)
        metrics = last_metrics(out)
        if on_checkpoint is not None:  # the caller's record of the run, as after a checkpoint (gpukit's report; review 30b)
            on_checkpoint(step, metrics)
        return metrics

    def checkpoint() -> dict[str, float]:
        nonlocal best
        # (the average goes into the network itself, not the bridge that stands in for it)
        with (average.swapped_into(task.net) if average is not None else nullcontext()), evaluated_on(task, dev):
            metrics = task.evaluate()
        model = {k: v.cpu() for k, v in task.net.state_dict().items()}
        kept = model if average is None else {k: v.cpu() for k, v in average.state.items()}
        if metrics[task.val_key] < best:
            best = metrics[task.val_key]
            save_checkpoint(out / "best.pt", {"model": kept, "step": step, "metrics": metrics, "options": options or {}})
        more = {} if average is None else {"ema": kept, "ema_updates": average.updates}
        trained = trained_s + time.time() - t0
        save_checkpoint(last, {"model": model, "optimizer": _map_tensors(opt.state_dict(), lambda t: t.cpu()), "step": step, "best": best,
                               "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                               "schedule": dataclasses.asdict(sched), "options": options or {}, "trained_s": trained, **more})
        append_val_row(out, {"step": step, "time": time.time(), "trained_s": round(trained, 1), **metrics})
        if on_checkpoint is not None:
            on_checkpoint(step, metrics)
        return metrics

    stop = stop if stop is not None else StopRequest()
    t0 = last_ckpt = time.time()
    warm_elapsed = 0.0
    metrics: dict[str, float] = {}
    if not own_best:
        # a resumed run trains the steps after its checkpoint again (after a kill), a new one all
        # of them: either would log them twice (a run killed before its first checkpoint left its
        # rows; review 30).  A weights-only continuation of this folder keeps the log it brought.
        drop_log_rows_after(out / "log.csv", step if resume and last.exists() else 0)
    with stopping_on_signals(stop), tqdm(total=sched.steps, initial=step, unit="step", mininterval=5) as bar:
        with (out / "log.csv").open("a") as log:
            while step < end and not stop and time.time() - t0 < max_minutes * 60:
                elapsed = (time.time() - t0) / (max_minutes * 60) if sched.by_time else 0.0
                if step == sched.warmup:
                    warm_elapsed = elapsed
                lr = poly_lr(step, sched, elapsed, warm_elapsed)
                for g in opt.param_groups:
                    g["lr"] = lr
                batch = next(batches) if batches is not None else task.batch(rng)
                if dev.type != "cpu":
                    batch = _map_tensors(batch, lambda t: t.to(dev, non_blocking=True))
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    terms = task.loss(batch)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                torch.nn.utils.clip_grad_norm_(task.net.parameters(), 10.0)
                opt.step()
                if average is not None:
                    average.update(task.net)
                step += 1
                bar.update(1)
                if step % 25 == 0:
                    log.write(",".join([str(step), f"{lr:.6f}"] + [f"{k}={v.item():.5f}" for k, v in terms.items()]) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{terms['total'].item():.3f}")
                if time.time() - last_ckpt > sched.checkpoint_minutes * 60:
                    metrics = checkpoint()
                    tqdm.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
                    last_ckpt = time.time()
        metrics = checkpoint()
        tqdm.write(f"stopped at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def read_val_log(out: Path) -> list[dict]:
    """Every validation a run folder logged (``val.jsonl``, one row per checkpoint), [] for none;
    a last row cut short (a kill while it was written) left out, any other that is not JSON an
    InputError naming it (a traceback; user test 22)."""
    path = out / "val.jsonl"
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            if line.strip():
                rows.append(dict(json.loads(line)))
        except (ValueError, TypeError):
            if number == len(text.splitlines()) and not text.endswith("\n"):
                break
            raise InputError(f"{path}, line {number}: not a row of a run's log ({line[:60]!r})") from None
    return rows


def append_val_row(out: Path, row: dict) -> None:
    """Add a row to ``val.jsonl``, first dropping a row a kill cut short (``read_val_log`` leaves
    it out as the last row; with a row after it, the log could not be read)."""
    path = out / "val.jsonl"
    with path.open("ab+") as f:
        f.seek(0)
        data = f.read()
        if data and not data.endswith(b"\n"):
            tail = data[data.rfind(b"\n") + 1:]
            try:  # a whole row without its newline is a row (``read_val_log`` counts it): ended, not dropped (review 32)
                json.loads(tail)
                f.write(b"\n")
            except ValueError:
                f.truncate(data.rfind(b"\n") + 1)
        f.write((json.dumps(row) + "\n").encode())


def last_metrics(out: Path) -> dict[str, float]:
    """The last validation a run folder logged, without its step and times."""
    rows = read_val_log(out)
    return {k: v for k, v in rows[-1].items() if k not in LOG_FIELDS} if rows else {}


def check_same_run(state: dict, sched: Schedule, options: dict, last: Path) -> None:
    """Refuse to resume a run with another schedule or other options than it was trained with:
    its learning rate would jump to another curve, or its loss change, mid-run, while run.json
    kept the first command (review 30).  Not a GPU lease's (``training.gpukit``): its schedule
    decays over each lease's time and each lease's command says its options.  Older checkpoints
    recorded neither."""
    if sched.by_time:
        return
    was = state.get("schedule")
    if was is not None:
        now = dataclasses.asdict(sched)
        for key in ("steps", "lr", "batch", "warmup"):
            if was.get(key) != now[key]:
                raise UsageError(f"{last} was trained with --{key} {was.get(key)}, not {now[key]}: resume with the run's own "
                                 f"options (its run.json has its command), or start a new run with --init-from {last.parent / 'best.pt'}")
    if "options" in state and state["options"] != options:
        key = next(k for k in {**state["options"], **options} if state["options"].get(k, "?") != options.get(k, "?"))
        raise UsageError(f"{last} was trained with {key} = {state['options'].get(key, 'unset')}, not {options.get(key, 'unset')}: "
                         "resume with the run's own options (its run.json has its command)")


TASKS: dict[str, Callable[[argparse.Namespace], tuple[Task, Schedule, dict]]] = {}


def task(name: str):
    def register(fn):
        TASKS[name] = fn
        return fn

    return register


@task("densereg")
def _densereg(args) -> tuple[Task, Schedule, dict]:
    from training.dataset import PAPER_AUGMENT, Augment
    from training.densereg_task import DenseOptions, DenseRegTask

    # paper §4.1: 20k iterations, batch 10, poly LR 1e-3, scale augmentation {0.5, ..., 1.5};
    # realtime and large: trained from scratch (no ImageNet weights here), so longer, larger steps.
    compact = (40000, 16, 2e-3, Augment())
    steps, batch, lr, augment = {"paper": (20000, 10, 1e-3, PAPER_AUGMENT), "realtime": compact, "large": compact}[args.config]
    dense = DenseOptions.from_args(args)
    t = DenseRegTask(args.data, args.gt, args.config, args.variant, args.batch or batch, augment, tuple(args.gt_extra), args.cache, dense)
    # the network's shape (the export needs it) and the losses (the card says them)
    options = {"config": args.config, "variant": args.variant, **dense.recorded()}
    if args.gt_extra:
        options["gt_extra"] = _folders(args.gt_extra)
    return t, Schedule(args.steps or steps, t.batch_size, args.lr or lr), options


@task("segbaseline")
def _segbaseline(args) -> tuple[Task, Schedule, dict]:
    """The directly trained part segmenter: same backbone, data, augmentation and budget."""
    args.variant = "segment"
    return _densereg(args)


def _folders(paths) -> list[str]:
    """Folders as a run records them: resolved, so that a resume that names them another way (from
    another folder, absolute) is the same run (review 30b)."""
    return [str(Path(d).resolve()) for d in paths]


def _refiner_options(args, after: tuple[str, ...]) -> dict:
    """``MDMTask``'s options from the command line: its tracker starts (``--tracker-starts SHARE``,
    ``--starts-assets``; `after`: the refiner stages the tracker runs before this one) and its
    synthetic occluders (``--occluders``)."""
    return {"starts_after": after if args.tracker_starts else None, "start_share": args.tracker_starts, "cache_dir": args.cache,
            "assets": args.starts_assets, "occluders": args.occluders}


@task("mdm")
def _mdm(args) -> tuple[Task, Schedule, dict]:
    from training.mdm import MDMTask

    t = MDMTask(args.data, args.batch or 16, extra_train=tuple(args.gt_extra), **_refiner_options(args, ()))
    return t, Schedule(args.steps or 30000, t.batch_size, args.lr or 1e-3), {"gt_extra": _folders(args.gt_extra)} if args.gt_extra else {}


@task("mdm-fine")
def _mdm_fine(args) -> tuple[Task, Schedule, dict]:
    """The refiner's second stage: twice the resolution, started from the first stage's output."""
    from dataclasses import asdict

    from tracker.refiner import DEFAULT_REFINERS, FINE
    from training.mdm import FINE_CONFIG, FINE_PERTURBATION, MDMTask

    t = MDMTask(args.data, args.batch or 16, FINE_PERTURBATION, FINE_CONFIG, FINE, extra_train=tuple(args.gt_extra),
                **_refiner_options(args, DEFAULT_REFINERS[:1]))
    return t, Schedule(args.steps or 30000, t.batch_size, args.lr or 1e-3), asdict(FINE_CONFIG)


@task("mdm-single")
def _mdm_single(args) -> tuple[Task, Schedule, dict]:
    """One refiner stage for the whole job: the fine stage's resolution and network, one more
    recurrent step, started from the DenseReg+PCA output (SINGLE_PERTURBATION)."""
    from dataclasses import asdict, replace

    from tracker.refiner import FINE
    from training.mdm import FINE_CONFIG, SINGLE_PERTURBATION, MDMTask

    config = replace(FINE_CONFIG, steps=4)
    t = MDMTask(args.data, args.batch or 16, SINGLE_PERTURBATION, config, FINE, extra_train=tuple(args.gt_extra),
                **_refiner_options(args, ()))
    return t, Schedule(args.steps or 30000, t.batch_size, args.lr or 1e-3), asdict(config)


def write_run_info(out: Path, argv: list[str], batch: int, lr: float, init_from: Path | None, resume: bool = False,
                   paths: dict[str, str | list[str]] | None = None) -> None:
    """``OUT/run.json`` for the model card (``training.export``): the command, batch, learning
    rate, the weights it started from and the paths it read (`paths`, each option's resolved:
    the command's may be relative to wherever it ran; ``data`` also on its own, which the card
    reads).  Written when the run starts, kept on ``--resume`` (a new run replaces one
    left by a run stopped before its first checkpoint)."""
    path = out / "run.json"
    if resume and path.exists():
        return
    info = {"command": "python -m training.train " + shlex.join(argv), "hardware": "a 2-core CPU (training.train)", "batch": batch, "lr": lr}
    if paths:
        info["paths"] = paths
        if "data" in paths:
            info["data"] = paths["data"]
    if init_from is not None:
        info["init_from"] = init_from.as_posix()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, info)


RUN_COMMAND = "python -m training.train "
# What one command of a run decides for itself, not taken from the run's first command on
# --resume: a run stopped by its --stop-at is resumed to go on; the weights it started from are
# in its last.pt (a moved --init-from file refused the resume; review 32).
SESSION_OPTIONS = ("out", "resume", "stop_at", "max_minutes", "threads", "init_from")


def run_paths(ap: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str | list[str]]:
    """Every path option of `args` but ``--out`` (``--data``, ``--gt``, ``--gt-extra``,
    ``--cache``, ``--starts-assets``, ``--init-from``) resolved, as run.json records them: a
    ``--resume`` from another folder reads the run's own, where a relative path would name
    another (or no) folder."""
    paths: dict[str, str | list[str]] = {}
    for action in ap._actions:
        value = getattr(args, action.dest, None)
        if action.type is not Path or action.dest == "out" or value is None:
            continue
        paths[action.dest] = _folders(value) if isinstance(value, list) else _folders([value])[0]
    return paths


def with_run_options(ap: argparse.ArgumentParser, argv: list[str], args: argparse.Namespace, out: Path) -> argparse.Namespace:
    """`args` of a ``--resume`` with the options its command line does not give taken from the
    run's own command (``OUT/run.json``; its paths as resolved there), but SESSION_OPTIONS:
    resuming needed every schedule option repeated, the defaults being refused as "other options"
    (user test 22).  The options it gives still win, and ``check_same_run`` refuses those that
    change the run."""
    path = out / "run.json"
    try:
        info = dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return args  # no record (a run from before run.json, or none yet): the command's options as they are
    command = str(info.get("command", ""))
    if not command.startswith(RUN_COMMAND):
        return args  # another tool's run (training.gpukit): its options are its own
    unset = type("Unset", (list,), {})()  # (a list: an append option copies it before adding)
    given = ap.parse_args(argv, argparse.Namespace(**{a.dest: unset for a in ap._actions}))
    try:
        recorded = ap.parse_args(shlex.split(command[len(RUN_COMMAND):]))
    except SystemExit:  # (argparse has printed why)
        raise UsageError(f"{path}: its command cannot be read by this version; resume with the run's options given") from None
    if recorded.task != args.task:
        raise UsageError(f"{out} holds a {recorded.task} run, not {args.task}")
    merged = argparse.Namespace(**{dest: getattr(recorded, dest) if value is unset and dest not in SESSION_OPTIONS
                                   else getattr(args, dest) for dest, value in vars(given).items() if dest != "help"})
    held = any((out / name).exists() for name in ("last.pt", "best.pt"))
    for dest, path in dict(info.get("paths") or ({"data": info["data"]} if "data" in info else {})).items():
        if dest == "init_from" and held:
            continue  # its weights went on in the checkpoint (a moved --init-from file refused the resume; review 32)
        if getattr(given, dest, None) is unset:  # (the command's may be relative to wherever it ran)
            # (a run killed before its first checkpoint starts again from its --init-from; review 33)
            setattr(merged, dest, [Path(p) for p in path] if isinstance(path, list) else Path(path))
    return merged


def main(argv: list[str] | None = None) -> int:
    from training.densereg_task import DenseOptions

    ap = argparse.ArgumentParser(prog="python -m training.train", description="Train a network on the CPU (resumable).")
    ap.add_argument("task", choices=sorted(TASKS))
    ap.add_argument("--config", default="realtime", choices=sorted(CONFIGS), help="densereg, segbaseline: the network's size")
    ap.add_argument("--variant", default="quantized", choices=["quantized", "plain"], help="densereg: the paper's two regressions")
    ap.add_argument("--max-minutes", type=float, default=60.0,
                    help="stop after this many minutes of training (default 60), with a checkpoint: --resume continues")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/last.pt with the run's own options (refused with others); a folder with best.pt "
                         "alone continues from its weights")
    ap.add_argument("--out", type=Path, default=None,
                    help="run folder (default runs/densereg-CONFIG-VARIANT, runs/segbaseline-CONFIG, runs/TASK for the refiners)")
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--gt", type=Path, default=REPO / "data" / "gt", help="ground truth from training.groundtruth")
    ap.add_argument("--gt-extra", type=Path, action="append", default=[],
                    help="also train on this folder of profiled views (training.profile --out; repeatable; val is unchanged)")
    ap.add_argument("--cache", type=Path, default=REPO / "data" / "cache", help="face caches (built once for each --data, --gt and split list)")
    ap.add_argument("--steps", type=int, default=0,
                    help="length of the LR schedule (default: densereg and segbaseline 40000, paper config 20000; refiners 30000)")
    ap.add_argument("--stop-at", type=int, default=0,
                    help="stop at this step; the LR schedule still spans --steps (equal-budget comparisons)")
    ap.add_argument("--batch", type=int, default=0, help="default: 16 (paper config 10)")
    DenseOptions.add_arguments(ap)
    ap.add_argument("--lr", type=float, default=0.0, help="peak learning rate (default: densereg 2e-3, paper config 1e-3; refiners 1e-3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest while anything else runs)")
    ap.add_argument("--tracker-starts", type=float, default=0.0, metavar="SHARE",
                    help="refiner tasks: this share of the training faces start where the shipped tracker leaves them "
                         "(its earlier stages run on the photo), and validation starts there too (training.mdm.tracker_starts)")
    ap.add_argument("--starts-assets", type=Path, help="with --tracker-starts: the tracker's models from this folder (default: the shipped ones)")
    ap.add_argument("--occluders", type=float, default=0.0, metavar="SHARE",
                    help="refiner tasks: the share of training crops with a synthetic occluder (training.mdm.sample)")
    ap.add_argument("--init-from", type=Path,
                    help="start a new run from these weights: a checkpoint's 'model' or an exported network (tracker/assets/*.pt)")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="validate and keep the weights' exponential moving average (e.g. 0.998; 0: the weights themselves)")
    args = ap.parse_args(argv)
    default = {"densereg": f"densereg-{args.config}-{args.variant}", "segbaseline": f"segbaseline-{args.config}"}.get(args.task, args.task)
    out = args.out or REPO / "runs" / default
    try:
        if args.resume:
            args = with_run_options(ap, argv if argv is not None else sys.argv[1:], args, out)
        torch.set_num_threads(args.threads)
        held = held_run_step(out)
        if held is not None and not args.resume:  # a new run there would replace its best.pt with a worse one
            raise UsageError(f"{out} holds a run (step {held}): --resume continues it, another --out starts a new one")
        if not (Path(args.data) / "splits" / "train.txt").is_file():  # (a FileNotFoundError traceback; user test 10)
            raise UsageError(f"--data {args.data}: not a 300-W folder (no splits/train.txt there); give the folder of the faces")
        if args.init_from is not None and not args.init_from.is_file():  # (a traceback after the caches were built)
            raise UsageError(f"--init-from {args.init_from}: no such file")
        torch.manual_seed(SEED)  # before the network is built: its initial weights are part of the run
        t, sched, options = TASKS[args.task](args)
        write_run_info(out, argv if argv is not None else sys.argv[1:], t.batch_size, sched.lr, args.init_from, args.resume,
                       run_paths(ap, args))
        metrics = run(t, sched, out, args.max_minutes, args.resume, options=options, init_from=args.init_from,
                      stop_at=args.stop_at, ema=args.ema)
    except TrackerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
