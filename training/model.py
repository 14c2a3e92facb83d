"""DenseReg networks (paper §3, §4.1): quantized UV regression + depth, and the plain baseline.

Raw outputs (stride 4 for ``realtime``, 8 for ``paper``) are upsampled bilinearly to the input
resolution before the losses (``training/losses.py``), as in the paper.  ``Decoded`` puts the
decoding inside the exported graph (``deployed_maps``: decoded at the backbone's stride, then
upsampled) so that every engine returns the same maps: ``uv`` (N,2,S,S), ``fg`` (N,1,S,S),
``depth`` (N,1,S,S).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from tracker.crop import NETWORK_INPUT
from tracker.parts import PART_NAMES
from tracker.uvcodec import K_DEFAULT


@dataclass(frozen=True)
class NetConfig:
    name: str
    input_size: int
    k: int = K_DEFAULT
    variant: str = "quantized"  # or "plain", or "segment" (the directly trained part segmenter)
    width: float = 1.0  # channel multiplier of the compact backbone (RealtimeNet)
    # RealtimeNet's blocks at stride 4 (``fuse4``): a third of its time in ONNX Runtime (each block
    # ~0.21 ms of 1.19 a crop, ``benchmarks.bench_widths --decoder-blocks``); 2 in densereg_realtime,
    # 0 in densereg_fast (video's network)
    decoder_blocks: int = 2
    # The foreground's resolution: 4, the bins' background classes alone; 2, plus a correction of
    # its logit from the stride-2 features (RealtimeNet's ``fg2`` branch).  A perfect face mask
    # kept at stride 4 costs the transferred lips 5-9 IoU points at an open mouth, at stride 2
    # 1-4 (``training.evaluate parts --true-mask``); with this small network the branch gained
    # the transfer nothing on the mean (docs/RESULTS.md, session 11), so no shipped network has it.
    fg_stride: int = 4
    # A training-only head (RealtimeNet's ``aux``): the parts' logits read from the decoder's
    # features, trained by the segmenter's loss so that those features learn the parts' edges the
    # transfer reads through the UV and the foreground.  The export drops it (``Decoded``): the
    # tracker's parts still come from the UV alone.
    aux_parts: bool = False


def configured(config: str, variant: str, decoder_blocks: int | None = None, fg_stride: int | None = None,
               bins: int | None = None, aux_parts: bool = False) -> NetConfig:
    """A named configuration with a run's variant and, optionally, another ``decoder_blocks``,
    ``fg_stride``, number of bins ``k`` or the training-only ``aux_parts`` head."""
    given = {"decoder_blocks": decoder_blocks, "fg_stride": fg_stride, "k": bins, "aux_parts": aux_parts or None}
    return replace(CONFIGS[config], variant=variant, **{k: v for k, v in given.items() if v is not None})


N_PART_LABELS = len(PART_NAMES)  # background + the 8 parts

CONFIGS = {
    "realtime": NetConfig("realtime", NETWORK_INPUT),
    # The same network 1.25x wider (1.6x the weights), a drop-in for the tracker: the widest
    # candidate under ~4 ms a crop in ONNX Runtime on 2 threads (benchmarks/bench_widths.py).
    "large": NetConfig("large", NETWORK_INPUT, width=1.25),
    "paper": NetConfig("paper", 321),
}


def out_channels(cfg: NetConfig) -> int:
    """quantized: 2(K+1) class logits + 2K residuals + depth; plain: 2 fg logits + 2 u + depth;
    segment: background + 8 part logits."""
    return {"quantized": 2 * (cfg.k + 1) + 2 * cfg.k + 1, "plain": 2 + 2 + 1, "segment": N_PART_LABELS}[cfg.variant]


def head_bins(channels: int) -> int:
    """K of a quantized head with `channels` outputs (the inverse of ``out_channels``)."""
    return (channels - 3) // 4


def split_bins(head: torch.Tensor, k_to: int) -> torch.Tensor:
    """A quantized head's weight or bias (first axis: 2(K+1) logits, 2K residuals, depth) for
    `k_to` bins, a multiple of its K, that decodes the same maps: each bin splits into k_to/K
    bins that keep its probability (log of the factor off their logits; ties go to the first,
    which decodes exactly as before) and its residual, less each new bin's offset in it."""
    k = head_bins(head.shape[0])
    if head.shape[0] != 4 * k + 3 or k_to % k:
        raise ValueError(f"cannot split a head of {head.shape[0]} channels (K={k}) into {k_to} bins")
    f = k_to // k
    classes = head[: 2 * k + 2].reshape(2, k + 1, *head.shape[1:])  # per coordinate: background, K bins
    logits = classes[:, 1:].repeat_interleave(f, dim=1)
    residual = head[2 * k + 2 : 4 * k + 2].reshape(2, k, *head.shape[1:]).repeat_interleave(f, dim=1)
    if head.dim() == 1:  # the bias carries the constant shifts
        logits = logits - math.log(f)
        residual = residual - torch.arange(k_to, dtype=head.dtype).remainder(f) / k_to
    classes = torch.cat([classes[:, :1], logits], dim=1)  # (2, k_to+1, ...)
    return torch.cat([classes.flatten(0, 1), residual.flatten(0, 1), head[-1:]])


def upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of `x` to the height and width of `like`.

    The sizes are read as Python ints, and an exact integer factor (the realtime network's 2x
    and 4x at its 128 px input) is passed as `scale_factor`: the same values, and the exported
    graph gets a Resize with constant scales instead of the Shape/Gather/Unsqueeze/Concat chain
    that rebuilt each size at every call (40 of the graph's 130 nodes after ONNX Runtime's
    optimisations: 1.30 -> 1.17 ms a crop on one thread).
    """
    (h, w), (th, tw) = (int(d) for d in x.shape[-2:]), (int(d) for d in like.shape[-2:])
    if (h, w) == (th, tw):  # already there (a map decoded at full size): no copy
        return x
    if th % h == 0 and tw % w == 0 and th // h == tw // w:
        return F.interpolate(x, scale_factor=th // h, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1, act: bool = True) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    layers = [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (optionally dilated), 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4, dilation: int = 1):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, dilation=dilation), conv_bn(hidden, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class RealtimeNet(nn.Module):
    """Compact encoder-decoder for 2 CPU cores: MobileNetV2-style encoder to stride 16 with a
    dilated context stage, a two-level decoder with skips, outputs at stride 4.  `cfg.width`
    scales every channel count (rounded to multiples of 8; 1.0 is the shipped network)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c16, c24, c32, c48, c64, c96 = (max(8, round(c * cfg.width / 8) * 8) for c in (16, 24, 32, 48, 64, 96))
        self.stem = nn.Sequential(conv_bn(3, c16, 3, 2), InvertedResidual(c16, c16, 1, 1))  # /2
        self.s4 = nn.Sequential(InvertedResidual(c16, c24, 2), InvertedResidual(c24, c24))  # /4
        self.s8 = nn.Sequential(InvertedResidual(c24, c32, 2), InvertedResidual(c32, c32), InvertedResidual(c32, c32))  # /8
        self.s16 = nn.Sequential(
            InvertedResidual(c32, c64, 2), InvertedResidual(c64, c64), InvertedResidual(c64, c64, dilation=2),
            InvertedResidual(c64, c96, dilation=4), InvertedResidual(c96, c96, dilation=2),
        )  # /16, receptive field covers the whole 128 px crop
        self.lat8 = conv_bn(c32, c64, 1)
        self.top16 = conv_bn(c96, c64, 1)
        self.fuse8 = InvertedResidual(c64, c64)
        self.lat4 = conv_bn(c24, c48, 1)
        self.up8 = conv_bn(c64, c48, 1)
        self.fuse4 = nn.Sequential(*(InvertedResidual(c48, c48) for _ in range(cfg.decoder_blocks)))  # none: identity
        self.head = nn.Conv2d(c48, out_channels(cfg), 1)
        self.fg2 = FgBranch(c16, c48) if cfg.fg_stride == 2 else None
        self.aux = nn.Conv2d(c48, N_PART_LABELS, 1) if cfg.aux_parts else None

    def forward(self, x):
        """The heads at stride 4 (with ``aux_parts``, the parts' logits as N_PART_LABELS more
        channels at the end); with ``fg_stride`` 2, also the foreground logit's correction at
        stride 2 (a pair)."""
        x2 = self.stem(x)
        x4 = self.s4(x2)
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        y8 = self.fuse8(self.lat8(x8) + upsample_like(self.top16(x16), x8))
        y4 = self.fuse4(self.lat4(x4) + upsample_like(self.up8(y8), x4))
        y = self.head(y4) if self.aux is None else torch.cat([self.head(y4), self.aux(y4)], 1)
        return y if self.fg2 is None else (y, self.fg2(x2, y4))


class FgBranch(nn.Module):
    """The foreground logit's correction at stride 2: the stem's features (where the lips' edge
    against an open mouth is still sharp) plus the decoder's, one cheap block, one channel.
    Zero at the start (last layer zero-initialised), so a trained network keeps its maps."""

    def __init__(self, c2: int, c4: int, width: int = 16):
        super().__init__()
        self.lat = conv_bn(c2, width, 1)
        self.up = conv_bn(c4, width, 1)
        self.fuse = InvertedResidual(width, width, expand=2)
        self.out = nn.Conv2d(width, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x2, y4):
        return self.out(self.fuse(self.lat(x2) + upsample_like(self.up(y4), x2)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, dilation, dilation=dilation, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x):
        return F.relu(self.body(x) + self.short(x))


class PaperNet(nn.Module):
    """ResNet-101 with dilated convolutions in stages 4-5 (output stride 8), 1x1 heads."""

    def __init__(self, cfg: NetConfig, blocks: tuple[int, int, int, int] = (3, 4, 23, 3)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        layers, cin = [], 64
        for n, width, stride, dil in zip(blocks, (64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4)):
            for j in range(n):
                layers.append(Bottleneck(cin, width, stride if j == 0 else 1, dil))
                cin = width * Bottleneck.expansion
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, out_channels(cfg), 1)

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


@dataclass
class RawOutput:
    """Network outputs upsampled to the input size S.

    quantized: logits (N,2,K+1,S,S), residual (N,2,K,S,S); plain: fg_logits (N,2,S,S),
    u (N,2,S,S); both: depth (N,1,S,S).
    """

    depth: torch.Tensor
    logits: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    fg_logits: torch.Tensor | None = None
    u: torch.Tensor | None = None
    seg_logits: torch.Tensor | None = None  # segment, or a quantized net's aux_parts head: (N,9,S,S)
    fg_delta: torch.Tensor | None = None  # fg_stride 2: the foreground logit's correction (N,1,S,S; at stride 2 unupsampled)


class DenseReg(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.name == "paper" and cfg.fg_stride != 4:
            raise ValueError("fg_stride 2 is RealtimeNet's branch; the paper's network has no stride-2 features to read")
        if cfg.aux_parts and (cfg.name == "paper" or cfg.variant != "quantized"):
            raise ValueError("aux_parts is a head of the quantized RealtimeNet (realtime, large)")
        self.backbone = PaperNet(cfg) if cfg.name == "paper" else RealtimeNet(cfg)

    def forward(self, x: torch.Tensor, upsample: bool = True) -> RawOutput:
        """`upsample`: to the input size (for the losses, as the paper); else at the backbone's stride."""
        y = self.backbone(x)
        y, fg_delta = y if isinstance(y, tuple) else (y, None)
        if upsample:
            y = upsample_like(y, x)
            fg_delta = None if fg_delta is None else upsample_like(fg_delta, x)
        n, _, h, w = y.shape
        k = self.cfg.k
        if self.cfg.variant == "segment":
            if fg_delta is not None:  # the same branch corrects the segmenter's background logit
                y = upsample_like(y, fg_delta)
                y = torch.cat([y[:, :1] + fg_delta, y[:, 1:]], 1)
            return RawOutput(depth=y[:, :0], seg_logits=y)
        if self.cfg.variant == "quantized":
            logits = y[:, : 2 * (k + 1)].reshape(n, 2, k + 1, h, w)
            residual = y[:, 2 * (k + 1) : 2 * (k + 1) + 2 * k].reshape(n, 2, k, h, w)
            depth = y[:, 4 * k + 2 : 4 * k + 3]
            aux = y[:, 4 * k + 3 :] if self.cfg.aux_parts else None
            return RawOutput(depth=depth, logits=logits, residual=residual, fg_delta=fg_delta, seg_logits=aux)
        return RawOutput(depth=y[:, -1:], fg_logits=y[:, :2], u=y[:, 2:4], fg_delta=fg_delta)


def bins_fg(logits: torch.Tensor) -> torch.Tensor:
    """(N,1,·,·) foreground probability from the quantized regression's class logits: one minus
    the mean of the two coordinates' background probabilities."""
    # Only P(background) is needed: a softmax over the class axis (not the last one) costs
    # ONNX Runtime a transpose and was half the network's time; this is the same value.
    e = torch.exp(logits - logits.amax(dim=2, keepdim=True))
    return 1.0 - (e[:, :, 0] / e.sum(dim=2)).mean(dim=1, keepdim=True)


def uncorrected_fg(raw: RawOutput) -> torch.Tensor:
    """The foreground probability of the stride-4 heads, before any ``fg_stride`` 2 correction."""
    return bins_fg(raw.logits) if raw.logits is not None else torch.softmax(raw.fg_logits, dim=1)[:, 1:2]


def logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-4, 1.0 - 1e-4)
    return torch.log(p) - torch.log1p(-p)


def fg_logit(fg: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``fg_stride`` 2: the logit of foreground probability `fg`, at `delta`'s resolution
    (upsampled as ``upsample_probability``), plus the correction `delta`."""
    return upsample_like(logit(fg), delta) + delta


def decode_torch(raw: RawOutput, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uv (N,2,S,S), fg (N,1,S,S), depth (N,1,S,S): the same rule as ``tracker.uvcodec.decode``."""
    if raw.logits is not None:
        c = raw.logits[:, :, 1:].argmax(dim=2, keepdim=True)  # (N,2,1,S,S)
        r = torch.gather(raw.residual, 2, c)[:, :, 0]
        uv = c[:, :, 0].to(r.dtype) / k + r
    else:
        uv = raw.u
    fg = uncorrected_fg(raw)
    if raw.fg_delta is not None:
        fg = torch.sigmoid(fg_logit(fg, raw.fg_delta))
    return uv, fg, raw.depth.clamp(0.0, 1.0)


def upsample_probability(p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A probability map upsampled bilinearly *as a logit*: interpolated probabilities blur an
    edge over a whole stride-4 cell (an open mouth is one or two cells tall), interpolated logits
    keep it as sharp as a segmenter's upsampled class scores (parts +0.5 mIoU on val,
    docs/RESULTS.md, session 16)."""
    return torch.sigmoid(upsample_like(logit(p), like))


def deployed_maps(net: DenseReg, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uv (N,2,S,S), fg (N,1,S,S), depth (N,1,S,S) as the exported graph computes them (training
    validation reads the same maps).  Decoding at the backbone's stride and upsampling the 4
    decoded channels costs a fraction of upsampling the 2(K+1)+2K+1 raw ones and decoding every
    pixel (a third of the network's time in ONNX Runtime), for the same landmarks on val; and the
    transferred parts lose 0.5 mIoU decoded at full resolution (session 16)."""
    uv, fg, depth = decode_torch(net(image, upsample=False), net.cfg.k)
    maps = upsample_like(torch.cat([uv, depth], 1), image)
    return maps[:, :2], upsample_probability(fg, image), maps[:, 2:3]


AUX_HEAD = "backbone.aux."  # NetConfig.aux_parts: trained, never exported


class Decoded(nn.Module):
    """What gets exported: image -> (uv, fg, depth)."""

    def __init__(self, config: str = "realtime", variant: str = "quantized", decoder_blocks: int | None = None,
                 fg_stride: int | None = None, bins: int | None = None):
        super().__init__()
        self.cfg = configured(config, variant, decoder_blocks, fg_stride, bins)
        self.net = DenseReg(self.cfg)

    def forward(self, image):
        return deployed_maps(self.net, image)

    def load_state_dict(self, state, strict=True):
        """Checkpoints hold the bare DenseReg's weights, with a training-only head's if it had one."""
        return self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith(AUX_HEAD)}, strict)

    def example_inputs(self):
        return (torch.zeros(1, 3, self.cfg.input_size, self.cfg.input_size),)
