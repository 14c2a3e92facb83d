"""Quantized UV regression codec (paper §3, eqs. 2-3), pure numpy, shared by training and run time.

Per coordinate u in [0,1]: class c = floor(u/d) + 1 in 1..K (0 = background, d = 1/K) and the
residual r = u - (c-1) d in [0, d).  Decoding takes the most probable *face* bin and adds that
bin's regressed residual: u = (c-1) d + r_c.  The exported ONNX graph does the same thing
(``training/model.py``, checked against ``decode`` in the tests).
"""
from __future__ import annotations

import numpy as np

K_DEFAULT = 10


def encode(uv: np.ndarray, k: int = K_DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """(2,H,W) uv with NaN off the face -> classes (2,H,W) int64 (0 = background) and
    residuals (2,H,W) float32 (0 off the face)."""
    face = np.isfinite(uv).all(axis=0)
    u = np.where(face, np.clip(uv, 0.0, 1.0), 0.0)
    q = np.minimum(np.floor(u * k), k - 1)
    classes = np.where(face, q + 1, 0).astype(np.int64)
    residual = np.where(face, u - q / k, 0.0).astype(np.float32)
    return classes, residual


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def decode(logits: np.ndarray, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """logits (2,K+1,H,W), residual (2,K,H,W) -> uv (2,H,W) everywhere, fg (H,W) in [0,1].

    fg = 1 - P(background) averaged over the two coordinate classifiers; the UV is decoded at
    every pixel (from the best face bin) so that consumers choose their own fg threshold.
    """
    k = residual.shape[1]
    c = logits[:, 1:].argmax(axis=1)  # (2,H,W) face bin 0..K-1
    r = np.take_along_axis(residual, c[:, None], axis=1)[:, 0]
    # float32 arithmetic in the graph's order, so that ONNX and numpy decodes agree to the bit
    uv = c.astype(np.float32) / np.float32(k) + r.astype(np.float32)
    fg = 1.0 - softmax(logits, axis=1)[:, 0].mean(axis=0)
    return uv, fg.astype(np.float32)
