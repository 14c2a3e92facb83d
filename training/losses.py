"""DenseReg losses (paper §3-4.1), on maps already upsampled to the input resolution.

Targets: classes (N,2,S,S) from ``tracker.uvcodec.encode`` (0 = background) and the true
uv (N,2,S,S) (0 off the face).  ``valid`` (N,S,S) is False on ``ignore`` pixels, which contribute to
no loss.  Regression losses are normalised by the number of contributing pixels.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tracker.parts import LEFT_EYEBROW, LOWER_LIP, PART_NAMES
from tracker.templatemaps import face_holes
from training.model import RawOutput, bins_fg, fg_logit, uncorrected_fg

RESIDUAL_WEIGHT = 40.0  # paper, quantized regression (d = 0.1)
PLAIN_WEIGHT = 70.0  # paper, plain regression
DEPTH_WEIGHT = 10.0
# Smooth-L1 transition: residuals live in [0, d) = [0, 0.1), so Fast R-CNN's beta = 1 would be
# pure L2 with vanishing gradients; beta = 0.01 keeps it L1 above a tenth of a bin.
BETA = 0.01


def _masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    n = mask.sum().clamp_min(1.0)
    return (F.smooth_l1_loss(pred, target, reduction="none", beta=BETA) * mask).sum() / n


def densereg_loss(raw: RawOutput, classes: torch.Tensor, uv: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor,
                  ce_weight: torch.Tensor | None = None, fg_loss: float = 0.0, depth_weight: float = DEPTH_WEIGHT) -> dict[str, torch.Tensor]:
    """Loss terms and their weighted sum ('total').  ce_weight: optional (N,S,S) weight of each
    pixel's classification loss (``hole_weights``, ``part_weights``); the term stays normalised by the count of
    contributing pixels, so weights of 1 give the paper's loss.  fg_loss: weight of a binary
    cross-entropy on the foreground probability the tracker reads (``bins_fg``; quantized only;
    0: the paper's losses).  depth_weight: the depth term's weight."""
    face = (classes[:, 0] > 0) & valid  # (N,S,S)
    facef = face.float()
    terms: dict[str, torch.Tensor] = {}
    if raw.logits is not None:
        ignore = torch.where(valid[:, None].expand_as(classes), classes, torch.full_like(classes, -100))
        if ce_weight is None:
            terms["ce"] = F.cross_entropy(raw.logits.flatten(0, 1), ignore.flatten(0, 1), ignore_index=-100)
        else:
            ce = F.cross_entropy(raw.logits.flatten(0, 1), ignore.flatten(0, 1), ignore_index=-100, reduction="none")
            w = ce_weight[:, None].expand_as(classes).flatten(0, 1)
            terms["ce"] = (ce * w).sum() / (ignore.flatten(0, 1) != -100).sum().clamp_min(1)
        bin_start, pred_r = _true_bin(raw, classes, uv.dtype)
        residual = uv - bin_start
        terms["residual"] = RESIDUAL_WEIGHT * _masked_smooth_l1(pred_r, residual, facef[:, None].expand_as(pred_r))
    else:
        target_fg = torch.where(valid, (classes[:, 0] > 0).long(), torch.full_like(classes[:, 0], -100))
        terms["ce"] = F.cross_entropy(raw.fg_logits, target_fg, ignore_index=-100)
        terms["residual"] = PLAIN_WEIGHT * _masked_smooth_l1(raw.u, uv, facef[:, None].expand_as(raw.u))
    terms["depth"] = depth_weight * _masked_smooth_l1(raw.depth[:, 0], depth, facef)
    terms["total"] = terms["ce"] + terms["residual"] + terms["depth"]
    if fg_loss and raw.logits is not None:
        # The paper trains the foreground only through each coordinate's (K+1)-way classifier;
        # the mask the transfer reads is the mean of their two background probabilities, and
        # nothing trains that mean's edge directly (an open mouth is a few pixels of it).
        prob = bins_fg(raw.logits)[:, 0].clamp(1e-6, 1.0 - 1e-6)
        terms["fg_bins"] = fg_loss * _valid_mean(F.binary_cross_entropy(prob, facef, reduction="none"), valid, ce_weight)
        terms["total"] = terms["total"] + terms["fg_bins"]
    if raw.fg_delta is not None:  # fg_stride 2: the correction alone learns from this (the bins' fg detached)
        logit = fg_logit(uncorrected_fg(raw).detach(), raw.fg_delta)[:, 0]
        bce = F.binary_cross_entropy_with_logits(logit, (classes[:, 0] > 0).to(logit.dtype), reduction="none")
        terms["fg"] = _valid_mean(bce, valid, ce_weight)
        terms["total"] = terms["total"] + terms["fg"]
    return terms


def _valid_mean(loss: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """A (N,S,S) per-pixel loss summed over valid pixels, optionally weighted per pixel,
    normalised by the count of valid pixels (as the classification loss is)."""
    w = valid.to(loss.dtype) * (weight if weight is not None else 1.0)
    return (loss * w).sum() / valid.sum().clamp_min(1)


def hole_weights(faces: np.ndarray, weight: float) -> np.ndarray:
    """(N,S,S) float32 classification-loss weights: `weight` on the face mask's holes and the
    pixels next to them (both sides of an open mouth's edge), 1 elsewhere.  The holes are tiny
    (~0.4% of a crop; 75 of the 80 val faces have one: ``training.evaluate parts --true-mask``), so the plain loss barely sees them, yet
    a face pixel wrongly put there becomes lip in the part transfer: with the ground-truth
    mask instead of the predicted one the transferred lips' IoU goes 55 -> 66."""
    ring = np.ones((3, 3), np.uint8)
    out = np.ones(faces.shape, np.float32)
    for w, face in zip(out, faces):
        w[cv2.dilate(face_holes(face).astype(np.uint8), ring) > 0] = weight
    return out


def part_weights(parts: np.ndarray, weight: float) -> np.ndarray:
    """(N,S,S) float32 classification-loss weights: `weight` on the pixels whose true part
    (``tracker.parts`` labels) is an eyebrow, an eye or a lip, 1 elsewhere.  Each of these six
    is ~2% of a face's pixels yet counts as much as the rest of the face together in the
    parts' mean IoU; their foreground edge (the lips' against an open mouth) is where the
    transfer loses to a directly trained segmenter."""
    small = (parts >= LEFT_EYEBROW) & (parts <= LOWER_LIP)
    return np.where(small, np.float32(weight), np.float32(1.0))


def ce_weights(faces: np.ndarray, parts: np.ndarray | None, hole_weight: float, part_weight: float) -> np.ndarray | None:
    """(N,S,S) classification-loss weights for a batch's true face masks and part labels, the
    larger where both options apply; None when neither is set (the paper's unweighted loss)."""
    if not (hole_weight or part_weight):
        return None
    w = hole_weights(faces, hole_weight) if hole_weight else np.ones(faces.shape, np.float32)
    return np.maximum(w, part_weights(parts, part_weight)) if part_weight else w


def _true_bin(raw: RawOutput, classes: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,2,S,S) each: where each pixel's true (responsible) bin starts in UV (in `dtype`, the
    targets'), and the residual the network regresses in that bin."""
    bin_idx = (classes - 1).clamp_min(0)[:, :, None]  # (N,2,1,S,S)
    return bin_idx[:, :, 0].to(dtype) / raw.residual.shape[2], torch.gather(raw.residual, 2, bin_idx)[:, :, 0]


def soft_part_map(part_map: np.ndarray, sigma: float = 1.0) -> torch.Tensor:
    """(1,C,R,R) float: the template's part raster as one-hot planes blurred by `sigma` cells, so
    that sampling it at a UV gives a part probability that changes smoothly across boundaries."""
    planes = np.stack([cv2.GaussianBlur((part_map == c).astype(np.float32), (0, 0), sigma) for c in range(len(PART_NAMES))])
    return torch.from_numpy(planes / np.maximum(planes.sum(0, keepdims=True), 1e-6))[None]


def part_transfer_loss(raw: RawOutput, classes: torch.Tensor, uv: torch.Tensor, parts: torch.Tensor, valid: torch.Tensor,
                       soft_parts: torch.Tensor) -> torch.Tensor:
    """Negative log-probability of each face pixel's true part at the UV it is regressed to
    (true bin + predicted residual, as the residual loss reads it), looked up in `soft_parts`
    (``soft_part_map``).  Zero where the UV is deep inside the right part; it weighs the
    residual errors that move a pixel across a part boundary, which the part transfer
    (``tracker.parts.lookup_parts``) turns into wrong labels."""
    bin_start, pred_r = _true_bin(raw, classes, uv.dtype)
    pred = bin_start + pred_r  # (N,2,S,S)
    grid = torch.stack([2 * pred[:, 0] - 1, 1 - 2 * pred[:, 1]], dim=-1)  # x from u_h; y down from u_v = 1
    prob = F.grid_sample(soft_parts.expand(len(pred), -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)
    face = ((classes[:, 0] > 0) & valid & (parts > 0)).float()
    p_true = torch.gather(prob, 1, parts[:, None])[:, 0]
    return (-torch.log(p_true + 1e-3) * face).sum() / face.sum().clamp_min(1.0)


def segment_loss(raw: RawOutput, parts: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """The directly trained segmenter (paper Table 1 baseline): cross-entropy over background
    + 8 parts, ignore pixels excluded."""
    target = torch.where(valid, parts, torch.full_like(parts, -100))
    ce = F.cross_entropy(raw.seg_logits, target, ignore_index=-100)
    return {"ce": ce, "total": ce}
