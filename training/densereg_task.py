"""The DenseReg training task: batches from the face cache, the paper's losses, val metrics."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from tracker.assets import ASSETS
from tracker.crop import to_network_input
from tracker.parts import lookup_parts, mean_iou
from tracker.uvcodec import K_DEFAULT, encode
from training import REPO
from training.dataset import NO_AUGMENT, Augment, build_cache, cache_path, check_views_not_val, concat_caches, sample_crop
from training.losses import DEPTH_WEIGHT, ce_weights, densereg_loss, part_transfer_loss, segment_loss, soft_part_map
from training.model import DenseReg, configured, deployed_maps


@dataclass(frozen=True)
class DenseOptions:
    """How a DenseReg (or segmenter) run departs from the paper's network and losses; the
    defaults are the paper's.  One place for them: ``training.train`` and ``training.gpukit``
    parse them with ``add_arguments`` and a run's checkpoint records the ones set (``recorded``).

    decoder_blocks: blocks at stride 4 (``NetConfig.decoder_blocks``; None: the config's);
    fg_stride: the foreground's stride (``NetConfig.fg_stride``; None: 4);
    part_loss: weight of ``part_transfer_loss`` added to the losses;
    hole_weight: the classification loss's weight on the face mask's holes and their edge
    (``training.losses.hole_weights``); part_weight: its weight on the brows, eyes and lips
    (``training.losses.part_weights``; where both apply, the larger);
    fg_loss: weight of a cross-entropy on the foreground the transfer reads
    (``training.losses.densereg_loss``); depth_weight: the depth loss's weight;
    bins: the quantized regression's K per coordinate (``NetConfig.k``; None: the paper's 10);
    aux_parts: weight of the segmenter's loss on a training-only parts head
    (``NetConfig.aux_parts``; 0: no such head)."""

    decoder_blocks: int | None = None
    fg_stride: int | None = None
    bins: int | None = None
    part_loss: float = 0.0
    hole_weight: float = 0.0
    part_weight: float = 0.0
    fg_loss: float = 0.0
    depth_weight: float = DEPTH_WEIGHT
    aux_parts: float = 0.0
    best_by_parts: bool = False

    def recorded(self) -> dict:
        """The options that differ from the paper's, as a checkpoint's options keep them."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) != f.default}

    @property
    def for_parts(self) -> bool:
        """Whether the run was made for the part transfer (it keeps its best checkpoint by it)."""
        return bool(self.best_by_parts or self.aux_parts or self.part_loss or self.hole_weight or self.part_weight or self.fg_loss
                    or self.fg_stride not in (None, 4)
                    or self.depth_weight != DEPTH_WEIGHT or self.bins not in (None, K_DEFAULT))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DenseOptions:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--decoder-blocks", type=int, default=None, metavar="N",
                            help="densereg: blocks at stride 4 (training.model.NetConfig.decoder_blocks; default the config's, 2)")
        parser.add_argument("--fg-stride", type=int, choices=[2, 4], default=None,
                            help="densereg: the foreground's stride (training.model.NetConfig.fg_stride; default 4)")
        parser.add_argument("--bins", type=int, default=None, metavar="K",
                            help="densereg: bins per coordinate of the quantized regression (training.model.NetConfig.k; default "
                                 f"the paper's {K_DEFAULT}); --init-from a network with a divisor of K splits its bins")
        parser.add_argument("--part-loss", type=float, default=0.0, metavar="W",
                            help="densereg: add W x the part-transfer loss (training.losses.part_transfer_loss) to the paper's losses")
        parser.add_argument("--hole-weight", type=float, default=0.0, metavar="W",
                            help="densereg: weigh the classification loss W times on the face mask's holes (an open mouth) and "
                                 "their edge (training.losses.hole_weights)")
        parser.add_argument("--part-weight", type=float, default=0.0, metavar="W",
                            help="densereg: weigh the classification loss W times on the brows, eyes and lips (training.losses.part_weights)")
        parser.add_argument("--fg-loss", type=float, default=0.0, metavar="W",
                            help="densereg: add W x a cross-entropy on the foreground probability the tracker reads "
                                 "(training.losses.densereg_loss)")
        parser.add_argument("--depth-weight", type=float, default=DEPTH_WEIGHT, metavar="W",
                            help=f"densereg: the depth loss's weight (default {DEPTH_WEIGHT:g}; lower leaves the small decoder "
                                 "more to the UV and the foreground)")
        parser.add_argument("--aux-parts", type=float, default=0.0, metavar="W",
                            help="densereg: add W x the segmenter's loss on a training-only head of part logits "
                                 "(training.model.NetConfig.aux_parts; not exported: the parts still come from the UV)")
        parser.add_argument("--best-by-parts", action="store_true",
                            help="densereg: keep the best checkpoint by the part transfer's validation mIoU (as the options "
                                 "above do) instead of the UV error, e.g. for an equal-budget comparison with the segmenter")


PAPER = DenseOptions()  # the paper's network and losses


class _Pinned:
    def pin_memory(self):
        """What ``DataLoader(pin_memory=True)`` calls (the GPU kit's loaders): it pins tuples and
        dicts itself, a dataclass only through this."""
        from torch.utils.data._utils.pin_memory import pin_memory

        return replace(self, **{f.name: pin_memory(getattr(self, f.name)) for f in fields(self)})


@dataclass(frozen=True)
class DenseBatch(_Pinned):
    """A DenseReg training batch: the network input and its loss targets."""

    image: torch.Tensor  # (N,3,S,S) normalised crops
    classes: torch.Tensor  # (N,2,S,S) int64: each coordinate's bin, 0 off the face (``tracker.uvcodec.encode``)
    uv: torch.Tensor  # (N,2,S,S) float32 template UV, 0 off the face
    depth: torch.Tensor  # (N,S,S) float32, 0 off the face
    valid: torch.Tensor  # (N,S,S) bool: not in an ignore region
    extra: dict = field(default_factory=dict)  # what the optional loss terms need (ce_weight, parts)


@dataclass(frozen=True)
class SegmentBatch(_Pinned):
    """A part-segmentation baseline's training batch."""

    image: torch.Tensor  # (N,3,S,S)
    parts: torch.Tensor  # (N,S,S) int64: the template parts looked up at the true UV
    valid: torch.Tensor  # (N,S,S) bool


def dense_batch(samples, k: int) -> DenseBatch:
    """Samples stacked into network input and DenseReg's loss targets."""
    return DenseBatch(
        image=torch.from_numpy(to_network_input(np.stack([s.image for s in samples]))),
        classes=torch.from_numpy(np.stack([encode(s.uv, k)[0] for s in samples])),
        uv=torch.from_numpy(np.stack([np.nan_to_num(s.uv) for s in samples]).astype(np.float32)),
        depth=torch.from_numpy(np.stack([np.nan_to_num(s.depth) for s in samples]).astype(np.float32)),
        valid=torch.from_numpy(np.stack([s.valid for s in samples])),
    )


def segment_batch(samples, part_map: np.ndarray) -> SegmentBatch:
    """Samples stacked into network input and part labels (the template parts looked up at the
    true UV, exactly how the ground truth defines them)."""
    return SegmentBatch(torch.from_numpy(to_network_input(np.stack([s.image for s in samples]))),
                        part_labels(samples, part_map), torch.from_numpy(np.stack([s.valid for s in samples])))


def part_labels(samples, part_map: np.ndarray) -> torch.Tensor:
    """(N,S,S) int64: the template parts looked up at the true UV (how the ground truth defines them)."""
    return torch.from_numpy(np.stack([lookup_parts(s.uv, part_map) for s in samples]).astype(np.int64))


def dense_metrics(uv_pred, fg_pred, depth_pred, uv_true, depth_true, valid) -> dict[str, np.ndarray]:
    """Per-image metrics: UV MAE and depth MAE on true-face pixels, foreground IoU (ignore excluded)."""
    face = np.isfinite(uv_true).all(axis=1) & valid  # (N,S,S)
    pred_face = (fg_pred[:, 0] > 0.5) & valid
    n = np.maximum(face.sum(axis=(1, 2)), 1)
    err = np.abs(np.nan_to_num(uv_pred) - np.nan_to_num(uv_true)).mean(axis=1)
    return {
        "uv_mae": (err * face).sum(axis=(1, 2)) / n,
        "uv_err_map": np.where(face, err, np.nan),
        "fg_iou": (face & pred_face).sum(axis=(1, 2)) / np.maximum((face | pred_face).sum(axis=(1, 2)), 1),
        "depth_mae": (np.abs(depth_pred[:, 0] - np.nan_to_num(depth_true)) * face).sum(axis=(1, 2)) / n,
    }


class DenseRegTask:
    """DenseReg (quantized or plain) or, with variant "segment", the part-segmentation baseline
    on the same backbone, data, augmentation and budget."""

    def __init__(self, data: Path, gt: Path, config: str, variant: str, batch_size: int, augment: Augment = Augment(),
                 extra_gt: tuple[Path, ...] = (), cache_dir: Path = REPO / "data" / "cache", options: DenseOptions = PAPER):
        """extra_gt: more training folders that are their own data root (images, .pts,
        splits/train.txt) and ground truth, e.g. the profiled views of ``training.profile``."""
        self.cfg = configured(config, variant, options.decoder_blocks, options.fg_stride, options.bins, options.aux_parts > 0)
        self.net = DenseReg(self.cfg)
        self.batch_size = batch_size
        self.augment = augment
        for views in extra_gt:
            check_views_not_val(data, views)
        roots = [(data, gt)] + [(d, d) for d in extra_gt]  # a profiled-views folder is its own ground truth
        self.train = concat_caches([build_cache(r, g, "train", cache_path(cache_dir, r, g, "train")) for r, g in roots])
        self.val = build_cache(data, gt, "val", cache_path(cache_dir, data, gt, "val"))
        rng = np.random.default_rng(0)
        self.val_samples = [sample_crop(self.val, i, self.cfg.input_size, NO_AUGMENT, rng) for i in range(len(self.val.names))]
        self.segment = variant == "segment"
        self.val_key = "1-miou" if self.segment or options.for_parts else "uv_mae"
        with np.load(ASSETS / "template.npz") as z:
            self.part_map = z["part_map"]
        self.options = options
        self.soft_parts = soft_part_map(self.part_map) if options.part_loss else None

    def batch(self, rng: np.random.Generator):
        idx = rng.integers(0, len(self.train.names), self.batch_size)
        samples = [sample_crop(self.train, int(i), self.cfg.input_size, self.augment, rng) for i in idx]
        if self.segment:
            return segment_batch(samples, self.part_map)
        extra = {}
        o = self.options
        parts = part_labels(samples, self.part_map) if o.part_loss or o.part_weight or o.aux_parts else None
        if o.hole_weight or o.part_weight:
            faces = np.stack([np.isfinite(s.uv).all(axis=0) for s in samples])
            extra["ce_weight"] = torch.from_numpy(ce_weights(faces, parts.numpy() if parts is not None else None, o.hole_weight, o.part_weight))
        if o.part_loss or o.aux_parts:
            extra["parts"] = parts
        return replace(dense_batch(samples, self.cfg.k), extra=extra)

    def loss(self, batch: DenseBatch | SegmentBatch) -> dict[str, torch.Tensor]:
        if isinstance(batch, SegmentBatch):
            return segment_loss(self.net(batch.image), batch.parts, batch.valid)
        b, extra = batch, batch.extra
        raw = self.net(b.image)
        terms = densereg_loss(raw, b.classes, b.uv, b.depth, b.valid, extra.get("ce_weight"), self.options.fg_loss,
                              self.options.depth_weight)
        if self.options.part_loss:
            terms["parts"] = self.options.part_loss * part_transfer_loss(raw, b.classes, b.uv, extra["parts"], b.valid, self.soft_parts)
            terms["total"] = terms["total"] + terms["parts"]
        if self.options.aux_parts:
            terms["aux_parts"] = self.options.aux_parts * segment_loss(raw, extra["parts"], b.valid)["ce"]
            terms["total"] = terms["total"] + terms["aux_parts"]
        return terms

    def predict(self, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.net.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(samples), 16):
                image = torch.from_numpy(to_network_input(np.stack([s.image for s in samples[i : i + 16]])))
                outs.append([t.numpy() for t in deployed_maps(self.net, image)])
        self.net.train()
        return tuple(np.concatenate(x) for x in zip(*outs))

    def evaluate(self) -> dict[str, float]:
        """Val metrics; every variant reports the part mIoU (the segmenter's labels, or the
        template's parts looked up at the regressed UV where the foreground is > 0.5, as
        ``training.evaluate parts`` scores them)."""
        truth = np.stack([lookup_parts(s.uv, self.part_map) for s in self.val_samples])
        valid = np.stack([s.valid for s in self.val_samples])
        if self.segment:
            self.net.eval()
            with torch.no_grad():
                pred = np.stack([self.net(torch.from_numpy(to_network_input(s.image))).seg_logits.argmax(1)[0].numpy()
                                 for s in self.val_samples])
            self.net.train()
            miou = mean_iou(pred, truth, valid)
            return {"miou": miou, "1-miou": 1.0 - miou}
        uv, fg, depth = self.predict(self.val_samples)
        m = dense_metrics(uv, fg, depth, np.stack([s.uv for s in self.val_samples]), np.stack([s.depth for s in self.val_samples]), valid)
        miou = mean_iou(np.stack([lookup_parts(u, self.part_map, f[0] > 0.5) for u, f in zip(uv, fg)]), truth, valid)
        return {"uv_mae": float(m["uv_mae"].mean()), "fg_iou": float(m["fg_iou"].mean()), "depth_mae": float(m["depth_mae"].mean()),
                "miou": miou, "1-miou": 1.0 - miou}
