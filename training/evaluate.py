"""Validation on the 300-W val split: dense maps (paper Fig. 6) and part segmentation (Table 1).

    python -m training.evaluate densereg [--model NAME=PATH.onnx ...] [--out docs/results]
    python -m training.evaluate parts [--model NAME=PATH.onnx ...] [--baseline runs/segbaseline-realtime] [--out docs/results]

Runs each ONNX model (default: the shipped one) on the 80 validation faces, cropped at their
landmark ROI exactly as in training validation, and reports per model: mean absolute UV error
on true-foreground pixels, foreground IoU, depth error, and the CED of the per-pixel UV error
normalised by the template's inter-ocular (outer-eye-corner) distance in UV space, with its
AUC up to 0.1.  Writes (into ``--out``, default ``out/evaluate``: the published ``docs/results``
change only when named) ``densereg_val.json``, ``densereg_val.md`` and ``densereg_ced.png``.
``parts`` transfers the template's part map through each model's UV and scores it (and the
directly trained segmenter, with ``--baseline``) against parts transferred with the true UV, and
the IoU of the face all its parts cover (``face``, the foreground each method reads):
``parts_val.json``, ``parts_val.md``, ``parts_val.png``; ``--landmarks DIR`` adds the parts the tracker
reads with ``TrackerConfig.template_maps`` (the template fitted to its final landmarks in DIR, the
output of ``run_tracker images`` over the same faces).  ``--flip`` scores every method with
test-time flipping (its answers for the crop and the mirrored crop averaged), ``--shifts 0 2`` with
test-time shifting (averaged over the crop moved by 0 or 2 pixels each way), all of them alike.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

from engines.onnx_engine import OnnxEngine
from tracker.assets import ASSETS
from tracker.crop import to_network_input, transform_points
from tracker.densemaps import infer_flip_averaged
from tracker.errors import MissingInputError, TrackerError, UsageError
from tracker.fileio import atomic_write_image, atomic_write_json, atomic_write_text
from tracker.metrics import ced, eye_distance
from training import REPO
from training.dataset import NO_AUGMENT, build_cache, cache_path, sample_crop, split_faces, val_crop_matrix
from training.densereg_task import dense_metrics
from training.template import DEFAULT_300W

CED_LIMIT = 0.1


def template_iod() -> float:
    with np.load(ASSETS / "template.npz") as z:
        lm = z["landmark_uv"]
    return eye_distance(lm)


def val_samples(data: Path, gt: Path, cache_dir: Path, size: int = 128, split: str = "val"):
    cache = build_cache(data, gt, split, cache_path(cache_dir, data, gt, split))
    rng = np.random.default_rng(0)
    return [sample_crop(cache, i, size, NO_AUGMENT, rng) for i in range(len(cache.names))]


def evaluate_model(path: Path, samples) -> dict:
    engine = OnnxEngine(path, threads=1)
    outs = [engine.infer({"image": to_network_input(s.image)}) for s in samples]
    uv = np.concatenate([o["uv"] for o in outs])
    fg = np.concatenate([o["fg"] for o in outs])
    depth = np.concatenate([o["depth"] for o in outs])
    truth_uv = np.stack([s.uv for s in samples])
    m = dense_metrics(uv, fg, depth, truth_uv, np.stack([s.depth for s in samples]), np.stack([s.valid for s in samples]))
    # Per-pixel Euclidean UV error over all true-face pixels, normalised by the template IOD.
    face = np.isfinite(truth_uv).all(axis=1) & np.stack([s.valid for s in samples])
    err = np.linalg.norm(uv - np.nan_to_num(truth_uv), axis=1)[face] / template_iod()
    xs, ys = ced(err, CED_LIMIT, 201)
    return {
        "uv_mae": float(m["uv_mae"].mean()),
        "fg_iou": float(m["fg_iou"].mean()),
        "depth_mae": float(m["depth_mae"].mean()),
        "uv_err_iod_median": float(np.median(err)),
        f"auc_{CED_LIMIT}": float(np.trapezoid(ys, xs) / CED_LIMIT),
        "ced": [xs.tolist(), ys.tolist()],
    }


def mask_at_stride(mask: np.ndarray, stride: int) -> np.ndarray:
    """A mask as well as a map at `stride` can hold it: area-averaged down, bilinearly up (as the
    networks upsample their maps), > 0.5.  The transfer through a perfect foreground of that
    resolution: what a network predicting its foreground there can reach at best."""
    if stride == 1:
        return mask
    h, w = mask.shape
    small = cv2.resize(mask.astype(np.float32), (w // stride, h // stride), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5


def lip_errors(pred: np.ndarray, truth: np.ndarray, holes: np.ndarray, valid: np.ndarray) -> dict[str, int]:
    """Where a method's lip labels are wrong, in pixels summed over both lips: labelled lip in
    the mask's holes (an open mouth); one lip for the other (the seam); lip for other face
    skin and skin for lip (the outer edge); lip for background and background for lip outside
    the holes (the face's outline).  Label images of any (equal) shape."""
    from tracker.parts import LOWER_LIP, OTHER, UPPER_LIP

    lip_p, lip_t = np.isin(pred, (UPPER_LIP, LOWER_LIP)) & valid, np.isin(truth, (UPPER_LIP, LOWER_LIP)) & valid
    return {"lip in the mouth's hole": int((lip_p & holes).sum()),
            "one lip for the other": int((lip_t & lip_p & (pred != truth)).sum()),
            "lip for skin": int((lip_p & (truth == OTHER)).sum()),
            "skin for lip": int((lip_t & (pred == OTHER)).sum()),
            "background for lip": int((lip_t & (pred == 0)).sum()),
            "lip for background, outside holes": int((lip_p & (truth == 0) & ~holes).sum())}


def unflip_part_scores(scores: np.ndarray) -> np.ndarray:
    """(...,9,H,W) per-part scores for a mirrored crop -> those of the crop: columns reversed and
    left and right parts swapped."""
    from tracker.parts import PART_FLIP

    return scores[..., PART_FLIP, :, :][..., ::-1].copy()


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(..., H, W) `a` with its content moved down `dy` and right `dx` pixels, the edge replicated
    into what is uncovered."""
    if dy == dx == 0:
        return a
    p = max(abs(dy), abs(dx))
    h, w = a.shape[-2:]
    padded = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(p, p), (p, p)], mode="edge")
    return padded[..., p - dy : p - dy + h, p - dx : p - dx + w]


def shift_averaged(infer, x: np.ndarray, offsets: tuple[int, ...] = (0,)) -> dict[str, np.ndarray]:
    """Test-time shifting: `infer` (network input (N,3,S,S) -> maps (N,C,S,S) by name) on `x`
    moved by every (dy, dx) of `offsets` x `offsets` pixels, each answer moved back, averaged.
    Offsets within the network's stride sample its stride-4 maps at other phases."""
    answers = [{k: shifted(v, -dy, -dx) for k, v in infer(np.ascontiguousarray(shifted(x, dy, dx))).items()}
               for dy in offsets for dx in offsets]
    return {k: sum(a[k] for a in answers) / len(answers) for k in answers[0]}


def transfer_maps(engine: OnnxEngine, image: np.ndarray, flip: bool, offsets: tuple[int, ...] = (0,)) -> tuple[np.ndarray, np.ndarray]:
    """A DenseReg graph's (2,H,W) UV and (H,W) foreground probability for one crop; with `flip`,
    the average of its answers for the crop and the mirrored crop (as the tracker's ``dense_flip``);
    with `offsets`, averaged over shifted copies (``shift_averaged``)."""
    infer = (lambda x: infer_flip_averaged(engine.infer, x)) if flip else (lambda x: engine.infer({"image": x}))
    out = shift_averaged(infer, to_network_input(image), offsets)
    return out["uv"][0], out["fg"][0, 0]


def segmenter_labels(net, image: np.ndarray, flip: bool, offsets: tuple[int, ...] = (0,)) -> np.ndarray:
    """A segmenter's (H,W) part labels for one crop; with `flip`, from its class probabilities
    averaged over the crop and the mirrored crop; with `offsets`, over shifted copies too."""
    import torch

    def infer(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            prob = net(torch.from_numpy(x)).seg_logits.softmax(1).numpy()
            if flip:
                mirrored = net(torch.from_numpy(np.ascontiguousarray(x[..., ::-1]))).seg_logits.softmax(1).numpy()
                prob = (prob + unflip_part_scores(mirrored)) / 2
        return {"prob": prob}

    return shift_averaged(infer, to_network_input(image), offsets)["prob"][0].argmax(0).astype(np.uint8)


def tracked_points_in_crops(pred_dir: Path, args) -> list[np.ndarray | None]:
    """Each val face's final landmarks from a ``run_tracker images`` output folder, in its val
    crop's pixels (``val_crop_matrix``); None where the tracker found no face there."""
    from tracker.evaluation import FINAL, load_predictions, pick_face

    rels = split_faces(args.data, args.split)
    found, _ = load_predictions(pred_dir, [Path(r).with_suffix("").as_posix() for r in rels])
    points = []
    for rel in rels:
        with np.load((args.gt / rel).with_suffix(".npz")) as z:
            truth = z["landmarks"][int(z["face_index"])].astype(np.float64)
        pts = pick_face(found.get(Path(rel).with_suffix("").as_posix(), []), FINAL, truth)
        points.append(None if pts is None else transform_points(val_crop_matrix(truth), pts))
    return points


def template_labels(pred_dir: Path, args, count: int, part_map: np.ndarray, size: int = 128) -> list[np.ndarray]:
    """The parts the tracker reads with ``TrackerConfig.template_maps``: the template fitted to its
    final landmarks (``tracker.templatemaps``), for each val crop; all background where it found
    no face."""
    from tracker.parts import lookup_parts
    from tracker.templatemaps import FACE_MODEL, load_face_model, template_maps

    model = load_face_model(ASSETS / FACE_MODEL, ASSETS / "template.npz")
    points = tracked_points_in_crops(pred_dir, args)
    if len(points) != count:
        raise TrackerError(f"{pred_dir}: {len(points)} faces in the {args.split} list, {count} in its cache")
    labels = []
    for pts in points:
        maps = None if pts is None else template_maps(model, pts, size)
        labels.append(np.zeros((size, size), np.uint8) if maps is None else lookup_parts(maps.uv, part_map, maps.fg > 0.5))
    return labels


def dense_fit_labels(maps: list[tuple[np.ndarray, np.ndarray]], part_map: np.ndarray) -> list[np.ndarray]:
    """The parts of the template fitted to each crop's network UV and foreground
    (``tracker.templatemaps.dense_fit``: no landmark, no other network); all background where it
    could not be fitted."""
    from tracker.parts import lookup_parts
    from tracker.templatemaps import FACE_MODEL, dense_fit_maps, load_face_model, uv_lookup

    model = load_face_model(ASSETS / FACE_MODEL, ASSETS / "template.npz")
    lookup = uv_lookup(model)
    labels = []
    for uv, fg in maps:
        fitted = dense_fit_maps(model, lookup, uv, fg, part_map=part_map)
        labels.append(np.zeros(fg.shape, np.uint8) if fitted is None else lookup_parts(fitted.uv, part_map, fitted.fg > 0.5))
    return labels


def bootstrap_mean_iou(preds: dict[str, np.ndarray], truth: np.ndarray, valid: np.ndarray, draws: int,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Each method's mean IoU (of the whole set, as the table's) on `draws` resamples of the faces,
    drawn with replacement, the same draws for every method: how large a difference between two
    methods these faces can tell from chance."""
    from tracker.parts import PART_NAMES, part_iou

    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(truth), (draws, len(truth)))
    out = {}
    for name, labels in preds.items():
        counts = np.array([[part_iou(p, t, v)[c] for c in PART_NAMES[1:]] for p, t, v in zip(labels, truth, valid)])
        sums = counts[draw].sum(axis=1)  # (draws, part, intersection / union)
        out[name] = (sums[..., 0] / np.maximum(sums[..., 1], 1)).mean(axis=1)
    return out


def load_segmenter(run: Path):
    """A segmenter run's best checkpoint as the network it was trained as (configuration, blocks,
    foreground stride from its options), in eval mode; and its step."""
    from training.model import DenseReg, configured
    from training.train import load_checkpoint

    ckpt = load_checkpoint(run / "best.pt")
    opts = ckpt.get("options", {})
    net = DenseReg(configured(opts.get("config", "realtime"), "segment", opts.get("decoder_blocks"), opts.get("fg_stride")))
    net.load_state_dict(ckpt["model"])
    return net.eval(), ckpt.get("step")


def evaluate_parts(args) -> int:
    """Per-class IoU of DenseReg part transfer and of the directly trained segmenter, against
    the parts transferred with the ground-truth UV (as in the paper)."""

    from tracker.parts import PART_NAMES, colorize_parts, lookup_parts, part_iou

    samples = val_samples(args.data, args.gt, args.cache, split=args.split)
    with np.load(ASSETS / "template.npz") as z:
        part_map = z["part_map"]
    truth = np.stack([lookup_parts(s.uv, part_map) for s in samples])
    true_masks = [np.isfinite(s.uv).all(axis=0) for s in samples]
    preds = {}
    offsets = tuple(args.shifts)
    tta = (", flipped" if args.flip else "") + (f", shifted by {{{', '.join(map(str, offsets))}}}² px" if offsets != (0,) else "")
    for name, path in _models(args).items():
        engine = OnnxEngine(Path(path), threads=1)
        maps = [transfer_maps(engine, s.image, args.flip, offsets) for s in samples]
        preds[f"DenseReg UV transfer, {name}{tta}"] = [lookup_parts(uv, part_map, fg > 0.5) for uv, fg in maps]
        if args.dense_fit:
            preds[f"template fitted to the DenseReg UV, {name}{tta}"] = dense_fit_labels(maps, part_map)
        if args.true_mask:  # splits the transfer's error into the mask's and the UV's
            for stride in (1, 2, 4):
                at = "" if stride == 1 else f" kept at stride {stride}"
                preds[f"DenseReg UV transfer, {name}{tta}, true face mask{at}"] = [
                    lookup_parts(uv, part_map, mask_at_stride(m, stride)) for (uv, _), m in zip(maps, true_masks)]
    for pred_dir in args.landmarks:
        preds[f"template fitted to the tracker's landmarks ({pred_dir})"] = template_labels(pred_dir, args, len(samples), part_map)
    for run in args.baseline:
        net, step = load_segmenter(Path(run))
        preds[f"segmenter {Path(run).name} (step {step}){tta}"] = [segmenter_labels(net, s.image, args.flip, offsets) for s in samples]
    preds = {name: np.stack(labels) for name, labels in preds.items()}  # stacked once for every score below
    table = {}
    valid = np.stack([s.valid for s in samples])
    tface = truth > 0
    for name, labels in preds.items():
        table[name] = {cls: i / max(u, 1) for cls, (i, u) in part_iou(labels, truth, valid).items()}
        table[name]["mean"] = float(np.mean(list(table[name].values())))
        face = labels > 0  # the foreground every method's parts lie in
        table[name]["face"] = float((face & tface & valid).sum() / max(((face | tface) & valid).sum(), 1))
    cols = list(PART_NAMES[1:]) + ["mean", "face"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{100 * r[c]:.1f}" for c in cols) + " |" for n, r in table.items()]
    md = "\n".join(lines)
    report = {"faces": len(samples), "iou": table}
    if args.true_mask:
        from tracker.templatemaps import face_holes

        # the open mouth: background the true face mask encloses, which a predicted foreground fills
        holes = np.stack([face_holes(m) for m in true_masks])
        report["faces_with_mask_holes"] = int(holes.any(axis=(1, 2)).sum())
        md += f"\n\n{report['faces_with_mask_holes']} of the {len(samples)} faces have a hole in the true face mask (the open mouth)."
        # the lips' errors by kind, for the methods that read a predicted mask
        errors = {n: lip_errors(p, truth, holes, valid) for n, p in preds.items() if "true face mask" not in n}
        report["lip_errors"] = errors
        kinds = list(next(iter(errors.values())))
        md += ("\n\nLip pixels wrongly labelled, by kind (both lips, all faces):\n\n| method | " + " | ".join(kinds) + " |\n"
               + "|---" * (len(kinds) + 1) + "|\n" + "\n".join(f"| {n} | " + " | ".join(str(e[k]) for k in kinds) + " |" for n, e in errors.items()))
    if args.bootstrap:
        boot = bootstrap_mean_iou(preds, truth, valid, args.bootstrap)
        rival = next((n for n in reversed(preds) if n.startswith("segmenter ")), None)  # the last --baseline
        report["bootstrap"] = {n: {"low": float(np.percentile(b, 2.5)), "high": float(np.percentile(b, 97.5)),
                                   **({"beats_segmenter": float((b > boot[rival]).mean())} if rival and n != rival else {})}
                               for n, b in boot.items()}
        rows = [f"| {n} | {100 * r['low']:.1f}-{100 * r['high']:.1f} | "
                + (f"{100 * r['beats_segmenter']:.0f}%" if "beats_segmenter" in r else "") + " |"
                for n, r in report["bootstrap"].items()]
        md += (f"\n\nMean IoU over {args.bootstrap} resamples of the faces (with replacement, the same for every method): "
               "95% interval" + (f", and how often a method beats {rival}" if rival else "") + ":\n\n"
               "| method | 95% interval | beats |\n|---|---|---|\n" + "\n".join(rows))
    print(md)
    atomic_write_json(args.out / "parts_val.json", report)
    atomic_write_text(args.out / "parts_val.md",
                      f"Part segmentation IoU (%) on the 300-W {args.split} split ({len(samples)} faces); ground truth = parts "
                      f"transferred with the ground-truth UV. `{_command(args)}`\n\n{md}\n\n"
                      f"![parts](parts_val.png)\n\nFigure columns: input crop, ground truth, " + ", ".join(preds) + ".\n")
    rows = []
    for i in range(0, min(len(samples), 24), 6):
        tiles = [samples[i].image, colorize_parts(truth[i])] + [colorize_parts(p[i]) for p in preds.values()]
        rows.append(np.hstack(tiles))
    atomic_write_image(args.out / "parts_val.png", np.vstack(rows))
    return 0


def evaluate_densereg(args) -> int:
    """The dense maps' errors and CED of every model (the module's docstring)."""
    models = _models(args)
    samples = val_samples(args.data, args.gt, args.cache, split=args.split)
    results = {name: evaluate_model(Path(path), samples) for name, path in models.items()}
    key = f"auc_{CED_LIMIT}"
    lines = ["| model | UV MAE | fg IoU | depth MAE | median UV err / IOD | AUC@0.1 (UV err / IOD) |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['uv_mae']:.4f} | {r['fg_iou']:.3f} | {r['depth_mae']:.4f} | {r['uv_err_iod_median']:.3f} | {r[key]:.3f} |")
    table = "\n".join(lines)
    print(table)
    atomic_write_json(args.out / "densereg_val.json",
                      {"faces": len(samples), "template_iod_uv": template_iod(), "models": {**models}, "results": results})
    atomic_write_text(args.out / "densereg_val.md", f"Dense maps on the 300-W {args.split} split ({len(samples)} faces), "
                      f"`{_command(args)}`\n\n{table}\n")
    from tracker.plots import ced_plot

    curves = {f"{k} (AUC {v[key]:.3f})": tuple(np.array(c) for c in v["ced"]) for k, v in results.items()}
    atomic_write_image(args.out / "densereg_ced.png",
                       ced_plot(curves, limit=CED_LIMIT, xlabel="per-pixel UV error / template inter-ocular distance"))
    return 0


def check_inputs(args) -> None:
    """Before any work (a missing baseline stopped the run after every model was scored; review 30)."""
    for m in args.model:
        name, _, path = m.partition("=")
        if not name or not path:
            raise UsageError(f"--model {m}: give NAME=PATH.onnx (the name labels its row)")
        if not Path(path).is_file():
            raise MissingInputError(f"--model {m}: no such file {path}")
        engine = OnnxEngine(Path(path), threads=1)
        if tuple(engine.input_names) != ("image",) or not {"uv", "fg", "depth"} <= set(engine.output_names):
            # (a refiner's graph failed on its first face with "missing inputs ['init']"; user test 22)
            raise UsageError(f"--model {m}: not a DenseReg network (it takes {', '.join(engine.input_names)} and gives "
                             f"{', '.join(engine.output_names)}; DenseReg takes image and gives uv, fg, depth)")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap {args.bootstrap}: give a number of resamples (0: none)")
    for run in args.baseline:
        if not (run / "best.pt").is_file():
            raise MissingInputError(f"--baseline {run}: no best.pt there (a segmenter's run folder of python -m training.train segbaseline)")


def _models(args) -> dict[str, str]:
    return dict(m.split("=", 1) for m in args.model) or {"shipped": str(ASSETS / "densereg_realtime.onnx")}


def _command(args) -> str:
    """The invocation that reproduces a table, quoted so that it can be pasted into a shell."""
    return shlex.join(["python", "-m", "training.evaluate", *args.argv])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["densereg", "parts"])
    ap.add_argument("--baseline", type=Path, action="append", default=[], help="parts: run folder of a segmentation baseline (best.pt; repeatable)")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH.onnx (repeatable); default: the shipped model")
    ap.add_argument("--data", type=Path, default=DEFAULT_300W)
    ap.add_argument("--gt", type=Path, default=REPO / "data" / "gt", help="ground truth from training.groundtruth")
    ap.add_argument("--cache", type=Path, default=REPO / "data" / "cache", help="face caches (as training.train's: one per --data and --gt)")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "evaluate",
                    help="folder for the tables and figures (default out/evaluate; the published ones: --out docs/results)")
    ap.add_argument("--landmarks", type=Path, action="append", default=[], metavar="DIR",
                    help="parts: also the template fitted to the tracker's final landmarks in DIR (run_tracker images --out DIR "
                         "over the same split), as TrackerConfig.template_maps reads parts (repeatable)")
    ap.add_argument("--dense-fit", action="store_true",
                    help="parts: also each model's parts through the 3D template fitted to its dense UV (every third foreground "
                         "pixel and every pixel of the small parts a correspondence; tracker.templatemaps.dense_fit): "
                         "the network's output alone, read through the template")
    ap.add_argument("--true-mask", action="store_true",
                    help="parts: also each model's transfer inside the true face mask instead of its predicted foreground, "
                         "and inside that mask kept at stride 2 and 4 (the best a foreground of that resolution can do)")
    ap.add_argument("--flip", action="store_true",
                    help="parts: test-time flipping for every method (the answers for the crop and the mirrored crop averaged)")
    ap.add_argument("--shifts", type=int, nargs="+", default=[0], metavar="PX",
                    help="parts: test-time shifting for every method: the crop moved by every (dy, dx) of these pixel "
                         "offsets, the answers moved back and averaged (e.g. 0 2: four copies, the stride-4 maps at two phases)")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="parts: also each method's mean IoU over N resamples of the faces (95%% interval) and how often it "
                         "beats the last --baseline: whether a difference is more than these faces' chance")
    ap.add_argument("--split", choices=["val", "train"], default="val", help="tune and report on val only; train shows over-fitting")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_inputs(args)
        return evaluate_parts(args) if args.what == "parts" else evaluate_densereg(args)
    except TrackerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
