"""Export trained networks to ONNX (+ the deployable .pt) with their model cards:

    python -m training.export densereg --run runs/densereg-realtime-quantized
    python -m training.export mdm --run runs/mdm
    python -m training.export mdm-fine --run runs/mdm-fine
    python -m training.export mdm-single --run runs/mdm-single2
    python -m training.export mdm --regraph   # same weights, today's graph code (e.g. a faster sampler)

Takes ``RUN/best.pt``, writes ``tracker/assets/<name>.onnx`` and ``.pt`` (decoding inside the
graph for DenseReg: outputs uv, fg, depth; a refiner also gets ``<name>_int8.onnx``, the graph
ONNX Runtime runs), records their SHA-256 in the manifest, checks
ONNX Runtime against PyTorch on random input, and writes the card from the run's logs (and
from ``RUN/run.json`` where a GPU run of ``training.gpukit`` left one: hardware, command, batch).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from tracker.assets import ASSETS, forget, record, sha256
from tracker.crop import NETWORK_INPUT
from tracker.errors import TrackerError, UsageError
from tracker.fileio import atomic_write_text, partial_dir, remove_partial_outputs
from tracker.refiner import FLOAT_GRAPH_KEY, FRAMES
from tracker.uvcodec import K_DEFAULT
from training import INSTALLED, REPO
from training.deploy import build_deployable, export
from training.losses import DEPTH_WEIGHT, PLAIN_WEIGHT
from training.mdm import MDMConfig
from training.model import CONFIGS
from training.template import DEFAULT_300W
from training.train import LOG_FIELDS, Schedule, load_checkpoint, read_val_log

NAMES = {"densereg": "densereg_realtime", "densereg-fast": "densereg_fast", "mdm": "mdm_refiner", "mdm-fine": "mdm_fine",
         "mdm-single": "mdm_single"}
# every refiner stage is the same architecture with other options; so are the two DenseReg assets
ARCH = {"mdm-fine": "mdm", "mdm-single": "mdm", "densereg-fast": "densereg"}


def parity(onnx_path: Path, arch: str, options: dict, state: dict, inputs: dict[str, np.ndarray]) -> tuple[float, float]:
    """Max abs difference between ONNX Runtime and PyTorch outputs on the same input, and the
    largest output magnitude (the refiner outputs pixels up to 128: its tolerance scales)."""
    from engines.onnx_engine import OnnxEngine

    module, names, outs = build_deployable(arch, options)
    module.load_state_dict(state)
    module.eval()
    with torch.no_grad():
        ref = module(*(torch.from_numpy(inputs[n]) for n in names))
    got = OnnxEngine(onnx_path).infer(inputs)
    diff = max(float(np.abs(got[o] - r.numpy()).max()) for o, r in zip(outs, ref))
    return diff, max(float(np.abs(r.numpy()).max()) for r in ref)


def export_checked(arch: str, options: dict, state: dict, onnx_path: Path, manifest: Path | None = None) -> tuple[str, float, float]:
    """Export (ONNX + deployable .pt) and compare ONNX Runtime with PyTorch on a noisy example
    input: (ONNX SHA-256, max abs difference, largest output magnitude).  With `manifest`, both
    files' SHA-256 are recorded there."""
    sha = export(arch, options, state, onnx_path)
    if manifest is not None:
        record(onnx_path, manifest)
        record(onnx_path.with_suffix(".pt"), manifest)
    diff, magnitude = parity(onnx_path, arch, options, state, example_inputs(arch, options))
    return sha, diff, magnitude


@contextmanager
def staged(out_dir: Path, names: list[str]):
    """A folder beside `out_dir`'s assets to write an export into; once the block ends without
    an error, its files among `names` replace theirs in `out_dir` and are recorded in the
    manifest, and those of `names` it lacks are removed there (an int8 variant this export could
    not make).  A failure (parity, a run without its logs, a crash) leaves `out_dir` as it was:
    a card beside another network's graph, or a graph its card does not describe, would ship
    (review 30)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "MANIFEST.json"
    remove_partial_outputs(out_dir)  # a killed export's staging folder stayed for good (user test 22)
    with partial_dir(out_dir, "export") as tmp:
        yield tmp
        for name in names:
            src, dst = Path(tmp) / name, out_dir / name
            if src.exists():
                os.replace(src, dst)
                if dst.suffix in (".onnx", ".pt"):
                    record(dst, manifest)
            elif dst.exists():
                dst.unlink()
                forget(dst, manifest)


class ParityError(TrackerError):
    """ONNX Runtime and PyTorch disagree on the exported graph: nothing was installed."""


def check_parity(diff: float, magnitude: float) -> None:
    if not parity_ok(diff, magnitude):
        raise ParityError(f"ONNX Runtime and PyTorch differ by up to {diff:.2e} on outputs up to {magnitude:.3g}: "
                          "the export was not installed")


def asset_files(name: str, arch: str) -> list[str]:
    """The files an export of `name` writes into an assets folder (graph, deployable, int8 variant, card)."""
    from tracker.refiner import int8_variant

    return [f"{name}.onnx", f"{name}.pt"] + ([int8_variant(f"{name}.onnx")] if arch == "mdm" else []) + [f"{name.upper()}_CARD.md"]


def write_int8_variant(arch: str, options: dict, onnx_path: Path, manifest: Path | None = None) -> str:
    """Write ``<stem>_int8.onnx`` beside a refiner graph (``tracker.refiner.int8_variant``): its
    fully connected layers (Gemm, MatMul: over half of its weights, read from memory on every step at
    batch 1) with uint8 weights by ONNX Runtime's dynamic quantization, which ONNX Runtime runs
    on the CPU (uint8 x uint8 needs no VNNI to avoid saturation).  TensorRT and torch keep the
    float graph.  Records its SHA-256 in `manifest`; returns the card's line about it."""
    import os

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from engines.onnx_engine import OnnxEngine
    from tracker.refiner import int8_variant

    out = onnx_path.with_name(int8_variant(onnx_path.name))
    tmp = out.with_name(out.name + ".part")
    try:
        quantize_dynamic(onnx_path, tmp, op_types_to_quantize=["Gemm", "MatMul"], weight_type=QuantType.QUInt8)
    except RuntimeError as exc:
        # ONNX Runtime up to 1.23 (the last for Python 3.10) cannot quantize the regraphed refiner
        # (it loses its MatMuls' types; told them, it builds a graph it cannot load: user test 10).
        # The tracker then runs the float graph; a variant of an earlier export must not stay.
        import onnxruntime

        tmp.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        if manifest is not None:
            forget(out, manifest)
        print(f"note: no {out.name}: ONNX Runtime {onnxruntime.__version__} cannot quantize this graph ({str(exc).splitlines()[0][:120]}); "
              "the tracker runs the float graph", file=sys.stderr)
        return (f"- **CPU variant**: none (the ONNX Runtime installed at export, {onnxruntime.__version__}, could not quantize it); "
                "ONNX Runtime runs the float graph.\n")
    model = onnx.load(str(tmp))
    # which float graph it was made from: the tracker refuses a variant left from another export
    onnx.helper.set_model_props(model, {FLOAT_GRAPH_KEY: sha256(onnx_path)})
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    sha = record(out, manifest) if manifest is not None else sha256(out)
    example = example_inputs(arch, options)
    diff = float(np.abs(OnnxEngine(out).infer(example)["points"] - OnnxEngine(onnx_path).infer(example)["points"]).max())
    return (f"- **CPU variant**: `{out.name}` ({out.stat().st_size / 1e6:.2f} MB), the fully connected layers' weights in uint8 "
            f"(ONNX Runtime dynamic quantization, `training.export`), run by ONNX Runtime (`TrackerConfig.int8`); max abs diff "
            f"{diff:.2f} px from the float graph on the parity input; SHA-256 `{sha}`.\n")


def example_inputs(arch: str, options: dict) -> dict[str, np.ndarray]:
    """The deployable's example inputs, the image made noisy (a real-looking range of values)."""
    module, inputs, _ = build_deployable(arch, options)
    example = {n: t.numpy() for n, t in zip(inputs, module.example_inputs())}
    rng = np.random.default_rng(0)
    return {k: (v + rng.normal(size=v.shape).astype(np.float32) if k == "image" else v) for k, v in example.items()}


def parity_ok(diff: float, magnitude: float) -> bool:
    return diff < 1e-3 * max(1.0, magnitude)


def run_summary(run: Path) -> dict:
    vals = read_val_log(run)
    if not vals:
        raise UsageError(f"--run {run}: its val.jsonl logs no validation yet")
    steps = [v["step"] for v in vals]
    if all("trained_s" in v for v in vals):  # what training.train measured (since review 30)
        hours = vals[-1]["trained_s"] / 3600
    else:
        # Runs begun before that (their first sessions unmeasured): checkpoints come every 5
        # minutes while training runs; a longer gap is time between sessions, not training, so
        # only the short intervals are summed, plus one period for the stretch before each
        # session's first checkpoint.
        times = [v["time"] for v in vals if "time" in v]
        gaps = [b - a for a, b in zip(times, times[1:])]
        sessions = (1 if times else 0) + sum(g >= 600 for g in gaps)
        hours = (sum(g for g in gaps if 0 < g < 600) + sessions * 60 * Schedule.checkpoint_minutes) / 3600
    return {"checkpoints": len(vals), "last_step": max(steps), "logged_hours": hours, "curve": curve_table(vals)}


def curve_table(vals: list[dict], rows: int = 12) -> str:
    """The validation curve as a markdown table: every metric at up to `rows` checkpoints
    spread over the run (always the first and the last)."""
    k = min(rows, len(vals))
    keep = sorted({round(i * (len(vals) - 1) / max(k - 1, 1)) for i in range(k)})
    names = [k for k in vals[-1] if k not in LOG_FIELDS and not k.startswith("1-")]  # "1-x": x as a loss, for best.pt
    lines = ["| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i in keep:
        lines.append(f"| {vals[i]['step']} | " + " | ".join(f"{vals[i].get(k, float('nan')):.4f}" for k in names) + " |")
    return "\n".join(lines)


CARD = """# {title} (`{name}.onnx`)

- **What**: {what}
- **Data**: {data}{data_extra}; validation on {val_data}, never trained on.
- **Recipe**: {recipe}
- **Command**: {train_cmd} (resumable; repeat until validation stops improving), then
  `python -m training.export {arch} --run {run}`.
- **Training**: best checkpoint at step {step} of {last_step} logged; about {trained} of training on {hardware}.
- **Validation at that step**: {metrics}
- **Size**: {size_mb:.2f} MB ONNX, {params:,} weights (state-dict values); ONNX Runtime vs PyTorch max abs diff {parity:.2e} on outputs up to {magnitude:.3g}.
- **SHA-256**: `{sha}` (also in `MANIFEST.json`, checked at load).
{cpu_variant}- **Licence**: trained on 300-W annotations (research use only) with ground truth derived from the
  Surrey Face Model (non-commercial use only): these weights inherit both restrictions.

## Validation curve (`{run}/val.jsonl`)

{curve}
"""

ABOUT = {
    "densereg": dict(
        title="DenseReg network, `{config}` configuration",
        what="per-pixel template coordinates (u_h, u_v) by quantized regression (K={bins} bins + residuals), foreground probability and normalised depth for a {size}x{size} face crop (`tracker/crop.py`); decoding inside the graph",
        data_extra=", dense ground truth from `python -m training.groundtruth`",
        recipe="{network} (`training/model.py`, `{config}`), trained from scratch: AdamW lr {lr:g}, warm-up then poly decay, batch {batch}, crops jittered in scale/shift/rotation (±30°), flips with u_h mirroring, colour/blur/noise, synthetic occluders (`training/dataset.py`); losses as the paper (CE + 40 x smooth-L1 residual on the responsible bin, depth)",
        train_cmd="`python -m training.train densereg --config realtime --variant quantized --steps 24000 --resume`",
    ),
    "mdm": dict(
        title="MDM-style landmark refiner",
        what="4 recurrent steps of patch features (16x16 around each of the 68 points) -> GRU -> shape update, in a canonical 128x128 crop (`tracker/refiner.py`)",
        data_extra="",
        recipe="initial shapes drawn around the truth (PCA-coefficient, similarity and per-point noise, `training/mdm.py: Perturbation`, matched to the errors of DenseReg+PCA), loss = outer-eye-corner-normalised error summed over steps; AdamW lr {lr:g}, batch {batch}, flips and photometric noise",
        train_cmd="`python -m training.train mdm --steps 30000 --out runs/mdm --resume` (shape noise 0.5 sd, ~7k steps), then `python -m training.train mdm --steps 24000 --out runs/mdm-v2 --init-from runs/mdm/last.pt --resume` (perturbations matched to measured DenseReg+PCA errors)",
    ),
    "mdm-fine": dict(
        title="MDM-style landmark refiner, fine stage",
        what="3 recurrent steps of 24x24 patches around each of the 68 points in a canonical 208x208 crop where the outer eye corners are 102 px apart (1 px = 0.98% of the eye distance; the first stage's is 1.74%); patch features keep their 6x6 layout (where inside the patch an edge is) before a per-point projection -> GRU -> shape update (`tracker/refiner.py: FINE`); runs on the first stage's output",
        data_extra="",
        recipe="initial shapes drawn around the truth like the first stage's output errors (`training/mdm.py: FINE_PERTURBATION`), loss = outer-eye-corner-normalised error summed over steps; AdamW lr {lr:g}, batch {batch}, flips and photometric noise",
        train_cmd="`python -m training.train mdm-fine --steps 30000 --out runs/mdm-fine --resume`",
    ),
    "mdm-single": dict(
        title="MDM-style landmark refiner, one stage (`--one-stage`)",
        what="the fine stage's network (24x24 patches in a canonical 208x208 crop, eye corners 102 px apart, `tracker/refiner.py: FINE`) with 4 recurrent steps instead of 3, run alone on the DenseReg+PCA output: the faster alternative to the two-stage cascade",
        data_extra="",
        recipe="started from the fine stage's weights; initial shapes drawn around the truth like the DenseReg+PCA output's errors (`training/mdm.py: SINGLE_PERTURBATION`), loss = outer-eye-corner-normalised error summed over steps; AdamW lr {lr:g}, batch {batch}, flips and photometric noise",
        train_cmd="`python -m training.train mdm-single --steps 6000 --lr 3e-4 --init-from runs/mdm-fine/best.pt --out runs/mdm-single`, then `python -m training.train mdm-single --steps 8000 --lr 2e-4 --init-from runs/mdm-single/best.pt --out runs/mdm-single2`",
    ),
}
ABOUT["densereg-fast"] = dict(
    ABOUT["densereg"],
    title="DenseReg network, fast variant (video)",
    what=ABOUT["densereg"]["what"] + "; the `{config}` network without its two blocks at stride 4, fine-tuned from it: "
    "what the tracker runs on video (`tracker/pipeline.py: FAST_DENSEREG_ASSET`)",
    recipe=ABOUT["densereg"]["recipe"].replace("trained from scratch", "fine-tuned from the trained `{config}` network (its "
                                              "weights, the removed blocks' left out)"),
)
# What the card says when the run left no run.json (a CPU run of training.train).
CPU_RUN = {"hardware": "a 2-core CPU (shared with other runs)", "batch": 16}
DEFAULT_LR = {"densereg": 2e-3, "mdm": 1e-3}
NETWORKS = {"paper": "ResNet-101, dilated, output stride 8"}  # otherwise the compact backbone


def regraph(name: str, out_dir: Path, steps: int = 0) -> tuple[str, float, float]:
    """Rebuild a shipped ONNX graph from its deployable ``.pt`` with today's graph code (same
    weights), and update the size, parity and SHA-256 lines of its card; the training facts
    stay as they are.  `steps`: run a refiner for this many recurrent steps (its steps share
    their weights, so a refiner trained with more can stop earlier); the card says so."""
    deploy = torch.load(str(out_dir / f"{name}.pt"), map_location="cpu", weights_only=True)
    with staged(out_dir, asset_files(name, deploy["arch"])) as stage:
        return _regraph(name, deploy, out_dir / f"{name.upper()}_CARD.md", stage, steps)


def _regraph(name: str, deploy: dict, card_path: Path, stage: Path, steps: int) -> tuple[str, float, float]:
    onnx_path = stage / f"{name}.onnx"
    options = dict(deploy["options"])
    card = card_path.read_text()
    if steps:
        if deploy["arch"] != "mdm":
            raise UsageError(f"{name} has no recurrent steps to set")
        # How many it was trained with: the card's note from an earlier --steps, else the .pt's.
        noted = re.search(r" \(runs \d+ of the (\d+) recurrent steps[^)]*\)", card)
        trained = int(noted.group(1)) if noted else MDMConfig(**options).steps
        options["steps"] = steps
        card = card.replace(noted.group(0), "") if noted else card
    sha, diff, magnitude = export_checked(deploy["arch"], options, deploy["state_dict"], onnx_path)
    check_parity(diff, magnitude)
    if steps:
        card = re.sub(r"(- \*\*What\*\*: [^\n]*)", rf"\1 (runs {steps} of the {trained} recurrent steps it was trained with: the steps share their weights)", card, count=1)
    card = re.sub(r"ONNX Runtime vs PyTorch max abs diff [^\n]*", f"ONNX Runtime vs PyTorch max abs diff {diff:.2e} on outputs up to {magnitude:.3g}.", card)
    card = re.sub(r"- \*\*Size\*\*: [0-9.]+ MB ONNX", f"- **Size**: {onnx_path.stat().st_size / 1e6:.2f} MB ONNX", card)
    card = re.sub(r"- \*\*SHA-256\*\*: `[0-9a-f]+`", f"- **SHA-256**: `{sha}`", card)
    if deploy["arch"] == "mdm":
        line = write_int8_variant("mdm", options, onnx_path)
        card = re.sub(r"- \*\*CPU variant\*\*: [^\n]*\n", "", card)
        card = re.sub(r"(- \*\*SHA-256\*\*: [^\n]*\n)", lambda m: m.group(1) + line, card, count=1)
    atomic_write_text(stage / card_path.name, card)
    return sha, diff, magnitude


def command_chain(run: Path) -> str:
    """The run's command (``RUN/run.json``), after the commands of the runs whose weights it
    started from (``init_from`` inside another run folder with a run.json, or an exported
    network whose card gives its own chain: a run started from the shipped weights)."""
    info = json.loads((run / "run.json").read_text())
    command = f"`{info['command']}`"
    if "init_from" not in info:
        return command
    init = Path(info["init_from"])
    if (init.parent / "run.json").exists() and init.parent.resolve() != run.resolve():
        return f"{command_chain(init.parent)}, then {command}"
    earlier = card_chain(init)
    if earlier is None or command in earlier:  # (the latter: this run's own earlier export, read back)
        return command if earlier is None else earlier
    return f"{earlier}, then {command} (from the weights those commands made, shipped as `{init.as_posix()}` before it)"


def card_chain(weights: Path) -> str | None:
    """The training commands in the card beside an exported network (``X.pt``: ``X_CARD.md``),
    None without one."""
    card = weights.with_name(f"{weights.stem.upper()}_CARD.md")
    found = re.search(r"- \*\*Command\*\*: (.*?) \(resumable", card.read_text(), re.S) if card.exists() else None
    return None if found is None else found.group(1)


# A run's options that change its training (loss, checkpoint choice), not its network (kept out
# of the network's builder), and how its card says them.
LOSS_OPTIONS = {
    "part_loss": "plus {:g} x the part-transfer loss (`training/losses.py: part_transfer_loss`)",
    "hole_weight": "the classification loss weighted {:g}x on the face mask's holes and their edge (`training/losses.py: hole_weights`)",
    "part_weight": "the classification loss weighted {:g}x on the brows, eyes and lips (`training/losses.py: part_weights`)",
    "fg_loss": "plus {:g} x a cross-entropy on the foreground probability the tracker reads (`training/losses.py: densereg_loss`)",
    "depth_weight": f"the depth loss weighted {{:g}} instead of {DEPTH_WEIGHT:g} (`training/losses.py: DEPTH_WEIGHT`)",
    "aux_parts": "plus {:g} x the segmenter's loss on a training-only head of part logits, not exported (`training/model.py: NetConfig.aux_parts`)",
    "ema": "the weights' exponential moving average (decay {:g}) validated and kept (`training/train.py: WeightAverage`)",
    "best_by_parts": "the best checkpoint kept by the part transfer's validation mIoU, not the UV error",
}


def network_options(options: dict) -> dict:
    """A run's options less what it trained on and how (``LOSS_OPTIONS``, ``gt_extra``): the
    arguments of its network's builder (``training.deploy.build_deployable``)."""
    return {k: v for k, v in options.items() if k not in LOSS_OPTIONS and k != "gt_extra"}


def check_fits(arch: str, options: dict, run: Path) -> None:
    """Refuse a run the tracker could not run as `arch`'s asset, in any asset folder (``--assets``):
    a DenseReg run for a refiner's asset or the reverse, a DenseReg network for other than the
    tracker's crop size (``NETWORK_INPUT``), a refiner stage for another stage's canonical crop
    (``tracker.refiner.FRAMES``).  The tracker would otherwise fail on its first face."""
    name = NAMES[arch]
    dense_run = not set(options) <= {f.name for f in fields(MDMConfig)}  # a refiner run's options are its MDMConfig's
    if (ARCH.get(arch, arch) == "densereg") != dense_run:
        raise UsageError(f"{run} is a {'DenseReg' if dense_run else 'refiner'} run: it cannot be exported as {arch} ({name}.onnx)")
    if dense_run and options.get("variant") == "segment":
        raise UsageError(f"{run} is a part segmenter, not a DenseReg network: `python -m training.evaluate parts "
                         f"--baseline {run}` scores it; nothing of the tracker runs it")
    if dense_run:
        config = options.get("config", "realtime")
        if CONFIGS[config].input_size != NETWORK_INPUT:
            raise UsageError(f"the tracker feeds {name}.onnx {NETWORK_INPUT} px crops; the {CONFIGS[config].input_size} px "
                             f"network of config '{config}' ({run}) cannot be one")
        return
    config, frame = MDMConfig(**options), FRAMES[f"{name}.onnx"]
    if (config.crop, config.patch) != (frame.crop, frame.patch):
        fits = [a for a, n in NAMES.items() if (f := FRAMES.get(f"{n}.onnx")) and (f.crop, f.patch) == (config.crop, config.patch)]
        raise UsageError(f"the tracker feeds {name}.onnx {frame.crop} px crops; {run} trained a refiner on {config.crop} px crops"
                         + (f" (export it as {' or '.join(fits)})" if fits else ""))


def data_lines(info: dict) -> dict[str, str]:
    """The card's training and validation data, from what the run recorded (a gpukit pack's
    counts, else ``--data`` in its command and that folder's split lists): every card said
    "1,932 300-W faces" whatever the run trained on (user test 8)."""
    counts = info.get("pack", {}).get("counts")
    if counts:
        return {"data": f"a `training.gpukit` pack of 300-W's training split ({counts['train']} faces)",
                "val_data": f"the pack's {counts['val']} faces of `splits/val.txt`"}
    args = shlex.split(info.get("command", ""))
    given = [b for a, b in zip(args, args[1:]) if a == "--data"] + [a.split("=", 1)[1] for a in args if a.startswith("--data=")]
    # the folder the run recorded (resolved); older runs: their command's, taken from the repository's root
    data = Path(info["data"]) if "data" in info else REPO / given[-1] if given else DEFAULT_300W

    def faces(split: str) -> str:
        listing = data / "splits" / f"{split}.txt"
        if not listing.is_file():
            return "faces not counted: the list is not here"
        n = len(listing.read_text().split())
        return f"{n:,} face{'s' * (n != 1)}"

    if data.resolve() == DEFAULT_300W.resolve():
        return {"data": f"300-W training split (`splits/train.txt`: {faces('train')} from AFW, Helen train, LFPW train)",
                "val_data": f"`splits/val.txt` ({faces('val')} of Helen train)"}
    return {"data": f"`{data}` (`splits/train.txt`: {faces('train')})", "val_data": f"its `splits/val.txt` ({faces('val')})"}


def export_run(arch: str, run: Path, out_dir: Path) -> tuple[str, float, float]:
    """Export ``RUN/best.pt`` into `out_dir` with its card; returns ``export_checked``'s answer.
    Everything the card needs is read first, and the files are installed together only once
    ONNX Runtime agrees with PyTorch (``staged``)."""
    def need(name: str, why: str) -> None:
        if not (run / name).is_file():
            raise UsageError(f"--run {run}: no {name} ({why}) there; give a training run folder "
                             "(python -m training.train writes best.pt and val.jsonl at its first checkpoint)")

    need("best.pt", "its best checkpoint")
    ckpt = load_checkpoint(run / "best.pt")
    recorded = ckpt.get("options", {})
    options = network_options(recorded)
    extra_data = recorded.get("gt_extra", [])  # what the run trained on, not how the network is built
    losses = {k: recorded[k] for k in LOSS_OPTIONS if k in recorded}  # how it was trained, likewise
    check_fits(arch, options, run)
    need("val.jsonl", "its validation log, which the card quotes")
    summary = run_summary(run)
    name = NAMES[arch]
    config = options.get("config", "realtime")  # DenseReg's; refiners have none
    densereg = ARCH.get(arch, arch) == "densereg"
    size = CONFIGS[config].input_size if densereg else 0
    info = {**CPU_RUN, "lr": DEFAULT_LR[ARCH.get(arch, arch)], **(json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {})}
    minutes = info.get("minutes", summary["logged_hours"] * 60)
    fill = dict(lr=info["lr"], batch=info["batch"], config=config, size=size, network=NETWORKS.get(config, "MobileNetV2-style encoder-decoder"),
                bins=options.get("bins", K_DEFAULT))
    about = {k: v.format(**fill) for k, v in ABOUT[arch].items()}
    if "command" in info:
        about["train_cmd"] = command_chain(run)
    starts = re.search(r"--tracker-starts[= ](\S+)", info.get("command", ""))
    if starts:
        about["recipe"] += (f"; {float(starts.group(1)):.0%} of the training faces instead start where the tracker leaves them "
                            "(`training/mdm.py: tracker_starts`: its earlier stages run on the photo, the error scaled by "
                            "`START_GAIN`), and validation starts there too: its numbers are this stage's inside the tracker")
    occluders = re.search(r"--occluders[= ](\S+)", info.get("command", ""))
    if occluders and float(occluders.group(1)):
        about["recipe"] += (f"; a synthetic occluder (`training/dataset.py: occlude`) over {float(occluders.group(1)):.0%} of the "
                            "training crops, the target still the true shape (`training/mdm.py: sample`), and validation also "
                            "on the same faces each under an occluder (`val_occluded_*`)")
    about["data_extra"] += info.get("data_extra", "")
    for key, value in losses.items():
        about["recipe"] += "; " + LOSS_OPTIONS[key].format(value)
    if densereg and options.get("decoder_blocks") is not None:
        about["recipe"] += f"; {options['decoder_blocks']} block(s) at stride 4 instead of 2 (`training/model.py: NetConfig.decoder_blocks`)"
    if densereg and options.get("fg_stride") == 2:
        about["recipe"] += "; the foreground corrected at stride 2 (`training/model.py: NetConfig.fg_stride`, `FgBranch`)"
    if extra_data:
        about["data_extra"] += ", plus the views in " + ", ".join(f"`{d}`" for d in extra_data) + " (`training.profile`)"
    if densereg and options.get("variant") == "plain":  # the paper's plain-regression baseline
        about["what"] = about["what"].replace(f"by quantized regression (K={fill['bins']} bins + residuals)", "by plain regression")
        about["recipe"] = about["recipe"].replace("CE + 40 x smooth-L1 residual on the responsible bin",
                                                  f"foreground CE + {PLAIN_WEIGHT:g} x smooth-L1 on (u_h, u_v)")
    metrics = ", ".join(f"{k} = {v:.4f}" for k, v in ckpt.get("metrics", {}).items() if not k.startswith("1-"))
    step, last_step, curve = ckpt.get("step", "?"), summary["last_step"], summary["curve"]
    if isinstance(step, int) and step > last_step:  # a kill cut best.pt's val.jsonl row short ("step 500 of 400": user test 23)
        last_step, curve = step, curve + f"\n\n(step {step}'s row was cut short in val.jsonl; its metrics are best.pt's, above)"
    with staged(out_dir, asset_files(name, ARCH.get(arch, arch))) as stage:
        onnx_path = stage / f"{name}.onnx"
        sha, diff, magnitude = export_checked(ARCH.get(arch, arch), options, ckpt["model"], onnx_path)
        check_parity(diff, magnitude)
        cpu_variant = write_int8_variant("mdm", options, onnx_path) if ARCH.get(arch, arch) == "mdm" else ""
        card = CARD.format(name=name, arch=arch, run=run.as_posix(), step=step, last_step=last_step,
                           trained=f"{minutes / 60:.1f} h" if minutes >= 60 else f"{minutes:.0f} min", hardware=info["hardware"],
                           metrics=metrics, size_mb=onnx_path.stat().st_size / 1e6, params=sum(v.numel() for v in ckpt["model"].values()),
                           parity=diff, magnitude=magnitude, sha=sha, cpu_variant=cpu_variant, curve=curve,
                           **data_lines(info), **about)
        atomic_write_text(stage / f"{name.upper()}_CARD.md", card)
    return sha, diff, magnitude


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    ap.add_argument("arch", choices=sorted(NAMES))
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="training run folder holding best.pt and val.jsonl")
    src.add_argument("--regraph", action="store_true",
                     help="re-export the shipped .pt with today's graph code (graph-only changes: same weights, same card)")
    ap.add_argument("--out-dir", type=Path, default=ASSETS, required=INSTALLED, help="default: the package's assets (in a checkout)")
    ap.add_argument("--steps", type=int, default=0, help="with --regraph: run the refiner for this many recurrent steps")
    args = ap.parse_args(argv)
    name = NAMES[args.arch]
    onnx_path = args.out_dir / f"{name}.onnx"
    try:
        if args.regraph:
            sha, diff, magnitude = regraph(name, args.out_dir, args.steps)
        else:
            sha, diff, magnitude = export_run(args.arch, args.run, args.out_dir)
    except ParityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrackerError as exc:  # one line, exit 2, as the other training commands
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {onnx_path} (sha256 {sha[:12]}, parity {diff:.2e}) at {time.strftime('%H:%M')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
