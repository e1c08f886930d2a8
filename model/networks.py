"""INSTA-BNN networks: the digits network, ResNet-20 (CIFAR-10), ReActNet-style ResNet-18 and ReActNet-A (ImageNet).

Every binary convolution sits in its own block (Bi-Real's extra skip connections, ReActNet's order):

    x -> threshold (RSign | INSTA-Th | INSTA-Th+) -> sign -> pad with -1 -> binary conv -> BN
      -> + shortcut(x) -> activation (RPReLU | INSTA-PReLU | INSTA-PReLU+) -> residual quantizer -> next block

Binary activations are padded with -1 (bit 0 in the bipolar packing that FINN and the RTL use), so the
convolution never sees a third value. Shortcut option B: identity, or AvgPool (stride) + real 8-bit 1x1 conv + BN
where the channel count changes; option A (ResNet-20 only): subsample and zero-pad channels.
The first convolution and the classifier have 8-bit weights; the image enters through an 8-bit quantizer.

A block belongs to the stage of the feature map it writes; ``first_insta_stage`` and the latency-optimized
variant (supplementary Sec. D) choose which stages use INSTA modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from torch import nn

from instabnn.model import modules as M
from instabnn.model import onnx_ops
from instabnn.model.config import INSTA_ACTIVATIONS, INSTA_BINARIZERS, ConfigError, NetConfig
from instabnn.model.quant import (BinaryWeightPerChannelXnor, Int8ActInputPow2, Int8WeightPerChannelPow2,
                                  ResidualActPow2, binary_act_quant)

DATASET_SHAPES = {  # arch -> (in_channels, image_size, num_classes)
    "digits": (1, 8, 10),
    "resnet20": (3, 32, 10),
    "reactnet18": (3, 224, 1000),
    "reactnet_a": (3, 224, 1000),
}


def residual_quant(cfg: NetConfig) -> nn.Module:
    if cfg.residual_bits is None:
        return nn.Identity()
    return QuantIdentity(act_quant=ResidualActPow2, bit_width=cfg.residual_bits, return_quant_tensor=False)


def binarizer(cfg: NetConfig) -> nn.Module:
    if not cfg.binary_acts:
        return nn.Identity()
    return QuantIdentity(act_quant=binary_act_quant(cfg.act_gradient), return_quant_tensor=False)


def binary_conv(cfg: NetConfig, cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
    quant = BinaryWeightPerChannelXnor if cfg.binary_weights else None
    return QuantConv2d(cin, cout, kernel, stride=stride, padding=0, bias=False, weight_quant=quant)


def int8_conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, real: bool = False) -> nn.Module:
    """An 8-bit power-of-two-weight convolution, or (``real``, NetConfig.real_valued_layers) a real-valued one."""
    if real:
        return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
    return QuantConv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False,
                       weight_quant=Int8WeightPerChannelPow2)


def threshold_module(cfg: NetConfig, channels: int, insta_stage: bool) -> nn.Module:
    binarizer = cfg.modules_at(insta_stage)[0]
    if cfg.block_order == "bn_sign_conv":
        return M.InstaTh(channels) if binarizer == "insta_th" else M.BatchNormSign(channels, affine=cfg.bn_affine)
    if binarizer == "sign":
        return M.Sign()
    if binarizer == "rsign":
        return M.RSign(channels)
    if binarizer == "insta_th_plus":
        return M.InstaThPlus(channels, cfg.se_reduction, cfg.g_se or cfg.g, cfg.se_weight_bits)
    return M.InstaTh(channels)


def activation_module(cfg: NetConfig, channels: int, insta_stage: bool, reuse_channels: int | None) -> nn.Module:
    activation = cfg.modules_at(insta_stage)[1]
    if cfg.block_order == "bn_sign_conv" or activation == "prelu":
        return M.PReLU(channels)
    if activation == "rprelu":
        return M.RPReLU(channels)
    if activation == "insta_prelu_plus":
        return M.InstaPReLUPlus(channels, cfg.se_reduction, cfg.g, cfg.se_weight_bits, reuse_channels)
    return M.InstaPReLU(channels, cfg.g, reuse_channels)


def has_insta_module(cfg: NetConfig, insta_stage: bool) -> bool:
    binarizer, activation = cfg.modules_at(insta_stage)
    return binarizer in INSTA_BINARIZERS or activation in INSTA_ACTIVATIONS


def reuse_channels_for(cfg: NetConfig, name: str, insta_stage: bool, cin: int, cout: int) -> int | None:
    """The INSTA-Th channel count an INSTA-PReLU reuses statistics from, or None for no reuse."""
    mode = cfg.effective_stats_reuse
    binarizer, activation = cfg.modules_at(insta_stage)
    if (mode == "none" or cfg.block_order != "bireal" or binarizer not in INSTA_BINARIZERS
            or activation not in INSTA_ACTIVATIONS):
        return None
    if cin != cout:
        if mode == "all":
            raise ConfigError(f"config: stats_reuse='all' but block {name} changes channels {cin} -> {cout}; "
                              f"statistics reuse needs equal counts (use stats_reuse='auto')")
        return None
    return cin


class Shortcut(nn.Module):
    """Option B: identity | AvgPool(stride) [+ 8-bit 1x1 conv + BN if channels change]. Option A: subsample, pad."""

    def __init__(self, cin: int, cout: int, stride: int, option: str, real: bool = False):
        super().__init__()
        self.option, self.stride, self.extra = option, stride, cout - cin
        self.pool = nn.AvgPool2d(stride) if (option == "B" and stride > 1) else None
        self.proj = None
        if option == "B" and cin != cout:
            self.proj = nn.Sequential(int8_conv(cin, cout, 1, real=real), nn.BatchNorm2d(cout))

    def forward(self, x):
        if self.option == "A":
            if self.stride > 1:
                x = x[:, :, ::self.stride, ::self.stride]
            if self.extra:
                x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
            return x
        if self.pool is not None:
            x = self.pool(x)
        return self.proj(x) if self.proj is not None else x


class BinaryConvBlock(nn.Module):
    """One binary convolution with its threshold, BN, shortcut and activation (see the module docstring).

    ``block_order="bn_sign_conv"`` (supplementary Sec. G): x -> BN | INSTA-Th -> sign -> conv -> PReLU -> + x.
    """

    def __init__(self, cfg: NetConfig, name: str, cin: int, cout: int, kernel: int, stride: int, insta: bool):
        super().__init__()
        self.name, self.insta, self.order = name, has_insta_module(cfg, insta), cfg.block_order
        self.pad = kernel // 2
        self.threshold = threshold_module(cfg, cin, insta)
        self.binarize = binarizer(cfg)
        self.conv = binary_conv(cfg, cin, cout, kernel, stride)
        self.bn = nn.BatchNorm2d(cout) if cfg.block_order == "bireal" else None
        self.shortcut = Shortcut(cin, cout, stride, cfg.shortcut, cfg.real_valued_layers)
        self.act = activation_module(cfg, cout, insta, reuse_channels_for(cfg, name, insta, cin, cout))
        self.out_quant = residual_quant(cfg)

    def conv_path(self, x):
        centred, s = self.threshold(x)
        b = self.binarize(centred)
        if self.pad:
            b = onnx_ops.pad_spatial(b, self.pad, -1.0)
        return self.conv(b), s

    def forward(self, x):
        y, s = self.conv_path(x)
        if self.order == "bn_sign_conv":
            return self.out_quant(self.act(y) + self.shortcut(x))
        return self.out_quant(self.act(self.bn(y) + self.shortcut(x), s))


class DuplicatedPointwiseBlock(nn.Module):
    """ReActNet-A's channel-doubling 1x1 block: two binary 1x1 convs C -> C on one binarized input, each + x,
    concatenated to 2C channels. One threshold module serves both halves (they read the same input)."""

    def __init__(self, cfg: NetConfig, name: str, cin: int, insta: bool):
        super().__init__()
        self.name, self.insta = name, has_insta_module(cfg, insta)
        self.threshold = threshold_module(cfg, cin, insta)
        self.binarize = binarizer(cfg)
        self.conv_a = binary_conv(cfg, cin, cin, 1, 1)
        self.conv_b = binary_conv(cfg, cin, cin, 1, 1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(cin), nn.BatchNorm2d(cin)
        self.act = activation_module(cfg, 2 * cin, insta, reuse_channels_for(cfg, name, insta, cin, 2 * cin))
        self.out_quant = residual_quant(cfg)

    def forward(self, x):
        centred, s = self.threshold(x)
        b = self.binarize(centred)
        y = torch.cat([self.bn_a(self.conv_a(b)) + x, self.bn_b(self.conv_b(b)) + x], dim=1)
        return self.out_quant(self.act(y, None))


@dataclass(frozen=True)
class BlockSpec:
    name: str
    stage: int
    cin: int
    cout: int
    kernel: int
    stride: int


def _resnet_blocks(widths, blocks_per_stage, convs_per_block=2):
    specs, cin = [], widths[0]
    for stage, width in enumerate(widths):
        for b in range(blocks_per_stage):
            for c in range(convs_per_block):
                stride = 2 if (stage > 0 and b == 0 and c == 0) else 1
                specs.append(BlockSpec(f"stage{stage}.block{b}.conv{c}", stage, cin, width, 3, stride))
                cin = width
    return specs


REACTNET_A_LAYOUT = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
                     (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 512, 1), (512, 1024, 2),
                     (1024, 1024, 1)]


class InstaBnn(nn.Module):
    """A network of the project's families, built from a :class:`NetConfig`."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        in_ch, size, classes = DATASET_SHAPES[cfg.arch]
        in_ch = cfg.in_channels or in_ch
        size = cfg.image_size or size
        classes = cfg.num_classes or classes
        self.cfg = cfg
        real = cfg.real_valued_layers
        self.input_quant = nn.Identity() if real else QuantIdentity(act_quant=Int8ActInputPow2,
                                                                    return_quant_tensor=False)
        first = cfg.effective_first_insta_stage
        blocks = []

        if cfg.arch in ("digits", "resnet20", "reactnet18"):
            if cfg.arch == "digits":
                widths, per_stage, stem = (32, 64), 1, [int8_conv(in_ch, 32, 3, 1, 1, real), nn.BatchNorm2d(32)]
            elif cfg.arch == "resnet20":
                widths, per_stage, stem = (16, 32, 64), 3, [int8_conv(in_ch, 16, 3, 1, 1, real), nn.BatchNorm2d(16)]
            else:
                widths, per_stage = (64, 128, 256, 512), 2
                stem = [int8_conv(in_ch, 64, 7, 2, 3, real), nn.BatchNorm2d(64), nn.MaxPool2d(3, 2, 1)]
            self.specs = _resnet_blocks(widths, per_stage)
            for spec in self.specs:
                blocks.append(BinaryConvBlock(cfg, spec.name, spec.cin, spec.cout, spec.kernel, spec.stride,
                                              spec.stage >= first))
            head_ch = widths[-1]
        else:  # reactnet_a
            stem = [int8_conv(in_ch, 32, 3, 2, 1, real), nn.BatchNorm2d(32)]
            self.specs, stage = [], 0
            for i, (cin, cout, stride) in enumerate(REACTNET_A_LAYOUT):
                stage += stride == 2
                insta = stage >= first
                self.specs.append(BlockSpec(f"block{i}.dw3x3", stage, cin, cin, 3, stride))
                self.specs.append(BlockSpec(f"block{i}.pw1x1", stage, cin, cout, 1, 1))
                blocks.append(BinaryConvBlock(cfg, f"block{i}.dw3x3", cin, cin, 3, stride, insta))
                if cout == 2 * cin:
                    blocks.append(DuplicatedPointwiseBlock(cfg, f"block{i}.pw1x1", cin, insta))
                else:
                    blocks.append(BinaryConvBlock(cfg, f"block{i}.pw1x1", cin, cout, 1, 1, insta))
            head_ch = REACTNET_A_LAYOUT[-1][1]

        self.stem = nn.Sequential(*stem, residual_quant(cfg))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_ch, classes) if real else QuantLinear(
            head_ch, classes, bias=True, weight_quant=Int8WeightPerChannelPow2)
        self.input_shape = (in_ch, size, size)

    def features(self, x):
        """The pooled features before the classifier (supplementary Sec. I)."""
        return torch.flatten(self.pool(self.blocks(self.stem(self.input_quant(x)))), 1)

    def forward(self, x):
        return self.classifier(self.features(x))


def build_network(cfg: NetConfig | dict) -> InstaBnn:
    if isinstance(cfg, dict):
        cfg = NetConfig.from_dict(cfg)
    return InstaBnn(cfg)


def random_weights_network(cfg: NetConfig | dict, seed: int = 0) -> InstaBnn:
    """An untrained network (in eval mode) with the statistics a trained one has: random BatchNorm running means
    and variances and random INSTA / RPReLU parameters (an untrained network's are zero, so its INSTA thresholds
    would be static). For hardware tests and benches, where the shapes and widths matter and the accuracy does not."""
    torch.manual_seed(seed)
    model = build_network(cfg).eval()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "beta", "gamma", "zeta", "threshold")):
                p.uniform_(-0.3, 0.3)
    return model
