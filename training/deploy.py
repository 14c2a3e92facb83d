"""Deployable networks by name: what the PyTorch engine builds and what gets exported to ONNX.

Each architecture maps to a constructor returning ``(module, input_names, output_names)``;
the module's forward takes the inputs positionally and returns a tuple of outputs with exactly
the names and shapes of the exported ONNX graph, so every engine answers alike.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from training.mdm import MDM, MDMConfig


class _MDMDeploy(nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.net = MDM(MDMConfig(**options))

    def forward(self, image, init):
        return (self.net(image, init),)

    def load_state_dict(self, state, strict=True):  # checkpoints hold the bare MDM's weights
        return self.net.load_state_dict(state, strict)

    def example_inputs(self):
        c = self.net.config
        return torch.zeros(1, 1, c.crop, c.crop), torch.full((1, c.n_points, 2), c.crop / 2.0)


def _densereg(config: str = "realtime", variant: str = "quantized", decoder_blocks: int | None = None,
              fg_stride: int | None = None, bins: int | None = None) -> nn.Module:
    from training.model import Decoded

    return Decoded(config, variant, decoder_blocks, fg_stride, bins)


ARCHS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...], tuple[str, ...]]] = {
    "mdm": (_MDMDeploy, ("image", "init"), ("points",)),
    "densereg": (_densereg, ("image",), ("uv", "fg", "depth")),
}


def build_deployable(arch: str, options: dict) -> tuple[nn.Module, tuple[str, ...], tuple[str, ...]]:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(sorted(ARCHS))})")
    ctor, inputs, outputs = ARCHS[arch]
    return ctor(**options), inputs, outputs


def export(arch: str, options: dict, state_dict: dict, onnx_path: Path, opset: int = 17) -> str:
    """Write `<onnx_path>` and the deployable checkpoint `<onnx_path>.pt`; returns the ONNX SHA-256."""
    module, inputs, outputs = build_deployable(arch, options)
    module.load_state_dict(state_dict)
    module.eval()
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".tmp.onnx")
    dynamic = {name: {0: "batch"} for name in inputs + outputs}
    torch.onnx.export(module, module.example_inputs(), str(tmp), input_names=list(inputs), output_names=list(outputs),
                      dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    tmp.replace(onnx_path)
    pt_tmp = onnx_path.with_suffix(".tmp.pt")
    # the weights the graph holds: a training-only head (NetConfig.aux_parts) stays behind
    torch.save({"arch": arch, "options": options, "state_dict": module.net.state_dict()}, str(pt_tmp))
    pt_tmp.replace(onnx_path.with_suffix(".pt"))
    return hashlib.sha256(onnx_path.read_bytes()).hexdigest()
