"""The decoded network output for one face crop: the one object every engine's result becomes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DenseMaps:
    """Dense maps in crop pixels (S,S).

    uv: (2,S,S) float32 template coordinates (u_h, u_v) in [0,1], decoded at every pixel;
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
    def from_outputs(cls, outputs: dict[str, np.ndarray], index: int = 0) -> "DenseMaps":
        """From an engine's named outputs uv (N,2,S,S), fg (N,1,S,S), depth (N,1,S,S)."""
        return cls(outputs["uv"][index], outputs["fg"][index, 0], outputs["depth"][index, 0])
