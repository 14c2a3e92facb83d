"""Network output for one face crop: raw (logits, residuals) and decoded (the object every
engine's result becomes).  Exported graphs already decode (``DenseMaps.from_outputs``);
``RawDenseOutput`` is the same thing before decoding, for tools that read raw heads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracker import uvcodec


@dataclass(frozen=True)
class DenseMaps:
    """Dense maps in crop pixels (S,S).

    uv: (2,S,S) float32 template coordinates (u_h, u_v), decoded at every pixel: in [0,1] on the
    face, off it anything near that range (about -0.25 to 1.15: mask with fg);
    fg: (S,S) float32 foreground probability; depth: (S,S) float32 normalised depth in [0,1]
    (1 = nearest the camera; meaningful where fg > 0.5).
    """

    uv: np.ndarray
    fg: np.ndarray
    depth: np.ndarray

    def face_uv(self, threshold: float = 0.5) -> np.ndarray:
        """uv with NaN outside the face."""
        return np.where(self.fg[None] > threshold, self.uv, np.nan).astype(np.float32)

    @classmethod
    def from_outputs(cls, outputs: dict[str, np.ndarray], index: int = 0) -> DenseMaps:
        """From an engine's named outputs uv (N,2,S,S), fg (N,1,S,S), depth (N,1,S,S)."""
        return cls(outputs["uv"][index], outputs["fg"][index, 0], outputs["depth"][index, 0])


def unflip_outputs(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An engine's outputs (uv (N,2,S,S), fg and depth (N,1,S,S)) for mirrored crops -> the maps of
    the crops themselves: columns reversed and u_h -> 1 - u_h (the template is left-right
    symmetric in u_h: the mirror of the point at u_h lies at 1 - u_h)."""
    out = {k: v[..., ::-1].copy() for k, v in outputs.items()}
    out["uv"][:, 0] = 1 - out["uv"][:, 0]
    return out


def flip_averaged(outputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Test-time flipping: outputs for 2n crops, the n crops then the same n mirrored, -> each
    crop's maps averaged with its mirror's (``unflip_outputs``)."""
    back = unflip_outputs({k: v[n:] for k, v in outputs.items()})
    return {k: (v[:n] + back[k]) / 2 for k, v in outputs.items()}


def infer_flip_averaged(infer, x: np.ndarray) -> dict[str, np.ndarray]:
    """An engine's `infer` on the (N,3,S,S) network input `x` and on its mirror image, in one
    call, each crop's maps averaged with its mirror's (``flip_averaged``)."""
    return flip_averaged(infer({"image": np.concatenate([x, x[..., ::-1]])}), len(x))


@dataclass(frozen=True)
class RawDenseOutput:
    """Quantized-regression heads for one crop, upsampled to the crop size S.

    logits: (2,K+1,S,S) per coordinate (u_h, u_v), class 0 = background, 1..K = bins of width 1/K;
    residual: (2,K,S,S) offset inside each bin; depth: (S,S) normalised depth (unclipped).
    """

    logits: np.ndarray
    residual: np.ndarray
    depth: np.ndarray

    def decode(self) -> DenseMaps:
        uv, fg = uvcodec.decode(self.logits, self.residual)
        return DenseMaps(uv, fg, np.clip(self.depth, 0.0, 1.0).astype(np.float32))
