"""DenseReg losses (paper §3-4.1), on maps already upsampled to the input resolution.

Targets: classes (N,2,S,S) from ``tracker.uvcodec.encode`` (0 = background) and the true
uv (N,2,S,S) (0 off the face).  ``valid`` (N,S,S) is False on ``ignore`` pixels, which contribute to
no loss.  Regression losses are normalised by the number of contributing pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.model import RawOutput

RESIDUAL_WEIGHT = 40.0  # paper, quantized regression (d = 0.1)
PLAIN_WEIGHT = 70.0  # paper, plain regression
DEPTH_WEIGHT = 10.0
# Smooth-L1 transition: residuals live in [0, d) = [0, 0.1), so Fast R-CNN's beta = 1 would be
# pure L2 with vanishing gradients; beta = 0.01 keeps it L1 above a tenth of a bin.
BETA = 0.01


def _masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum().clamp_min(1.0)
    return (F.smooth_l1_loss(pred, target, reduction="none", beta=BETA) * mask).sum() / n


def densereg_loss(raw: RawOutput, classes: torch.Tensor, uv: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted sum ('total')."""
    face = (classes[:, 0] > 0) & valid  # (N,S,S)
    facef = face.float()
    terms: dict[str, torch.Tensor] = {}
    if raw.logits is not None:
        ignore = torch.where(valid[:, None].expand_as(classes), classes, torch.full_like(classes, -100))
        terms["ce"] = F.cross_entropy(raw.logits.flatten(0, 1), ignore.flatten(0, 1), ignore_index=-100)
        bin_idx = (classes - 1).clamp_min(0)[:, :, None]  # responsible bin (N,2,1,S,S)
        pred_r = torch.gather(raw.residual, 2, bin_idx)[:, :, 0]
        residual = uv - bin_idx[:, :, 0].to(uv.dtype) / raw.residual.shape[2]
        terms["residual"] = RESIDUAL_WEIGHT * _masked_smooth_l1(pred_r, residual, facef[:, None].expand_as(pred_r))
    else:
        target_fg = torch.where(valid, (classes[:, 0] > 0).long(), torch.full_like(classes[:, 0], -100))
        terms["ce"] = F.cross_entropy(raw.fg_logits, target_fg, ignore_index=-100)
        terms["residual"] = PLAIN_WEIGHT * _masked_smooth_l1(raw.u, uv, facef[:, None].expand_as(raw.u))
    terms["depth"] = DEPTH_WEIGHT * _masked_smooth_l1(raw.depth[:, 0], depth, facef)
    terms["total"] = terms["ce"] + terms["residual"] + terms["depth"]
    return terms


def segment_loss(raw: RawOutput, parts: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """The directly trained segmenter (paper Table 1 baseline): cross-entropy over background
    + 8 parts, ignore pixels excluded."""
    target = torch.where(valid, parts, torch.full_like(parts, -100))
    ce = F.cross_entropy(raw.seg_logits, target, ignore_index=-100)
    return {"ce": ce, "total": ce}
