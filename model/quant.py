"""Brevitas quantizers of the INSTA-BNN toolkit, each defined once and named for what it is.

=============================  ==========================================================  =================
quantizer                      what it is                                                   exported as
=============================  ==========================================================  =================
BinaryWeightPerChannelXnor     w_b = sign(w) * a_o,  a_o = mean_{i,kh,kw} |w_o|  (XNOR-Net)  BipolarQuant
BinaryActSte                   b = sign(x) in {-1,+1}, straight-through gradient 1_{|x|<=1}  BipolarQuant
BinaryActApproxSign            same forward, ReActNet's ApproxSign gradient 2 - 2|x|         BipolarQuant
ResidualActPow2                signed int, configurable bits, learned power-of-two scale      Quant
Int8WeightPerChannelPow2       8-bit weights of the first conv / classifier / 1x1 shortcut   Quant
Int8ActInputPow2               8-bit image input with a power-of-two scale                   Quant
Int8WeightPerChannelLsq        8-bit channel-wise LSQ weights of the SE-like FC layers      Quant
=============================  ==========================================================  =================

sign(z) = +1 for z >= 0, else -1, everywhere (Brevitas' ``binary_sign`` and QONNX's BipolarQuant agree on this).
LSQ (Esser et al., supplementary Sec. B): symmetric, Q_N = 2^(b-1), Q_P = 2^(b-1) - 1 (``narrow_range=False``),
one learned step size per output channel initialised from the weights' statistics.
"""

from __future__ import annotations

import torch
from brevitas.core.bit_width import BitWidthConst
from brevitas.core.function_wrapper import TensorClamp
from brevitas.core.quant import BinaryQuant
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.core.stats import StatsOp
from brevitas.core.utils import StatelessBuffer
from brevitas.inject.enum import ScalingPerOutputType
from brevitas.quant.base import SignedBinaryClampedConst
from brevitas.quant.binary import SignedBinaryActPerTensorConst
from brevitas.quant.scaled_int import Int8ActPerTensorFloat
from brevitas.quant.scaled_int import Int8WeightPerTensorFloat
from brevitas.quant.solver import WeightQuantSolver
from torch import nn

__all__ = [
    "ApproxSignSte",
    "BinaryActApproxSign",
    "BinaryActSte",
    "BinaryWeightPerChannelXnor",
    "Int8ActInputPow2",
    "Int8WeightPerChannelLsq",
    "Int8WeightPerChannelPow2",
    "ResidualActPow2",
    "binary_act_quant",
]


class ApproxSignSte(torch.autograd.Function):
    """sign(x) forward; ReActNet's ApproxSign derivative backward: d/dx = 2 - 2|x| for |x| < 1, else 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.clamp(2.0 - 2.0 * x.abs(), min=0.0)


class ApproxSignBinaryQuant(nn.Module):
    """Brevitas tensor quantizer (the ``tensor_quant`` slot) for the ApproxSign binarizer, scale 1.

    It returns the (value, scale, zero_point, bit_width) tuple Brevitas expects, so that the proxy exports it as
    a QONNX ``BipolarQuant`` exactly like the plain STE binarizer.
    """

    def __init__(self, scaling_impl: nn.Module, signed: bool = True):
        super().__init__()
        assert signed, "the ApproxSign binarizer is signed"
        self.scaling_impl = scaling_impl
        self.bit_width = BitWidthConst(1)
        self.zero_point = StatelessBuffer(torch.tensor(0.0))

    def forward(self, x):
        scale = self.scaling_impl(x)
        return ApproxSignSte.apply(x) * scale, scale, self.zero_point(), self.bit_width()


class BinaryActSte(SignedBinaryActPerTensorConst):
    """Binary activation, values in {-1, +1} (scale 1); straight-through gradient clipped to |x| <= 1."""

    min_val = -1.0
    max_val = 1.0
    tensor_clamp_impl = TensorClamp


class BinaryActApproxSign(BinaryActSte):
    """Binary activation with ReActNet's piecewise-polynomial (ApproxSign) gradient."""

    tensor_quant = ApproxSignBinaryQuant


def binary_act_quant(gradient: str):
    """The binary activation quantizer for a gradient name: ``"ste"`` or ``"approxsign"``."""
    quantizers = {"ste": BinaryActSte, "approxsign": BinaryActApproxSign}
    if gradient not in quantizers:
        raise ValueError(f"unknown binary activation gradient {gradient!r}; choose from {sorted(quantizers)}")
    return quantizers[gradient]


class BinaryWeightPerChannelXnor(SignedBinaryClampedConst, WeightQuantSolver):
    """Binary weights with the XNOR-Net per-output-channel scale a_o = mean |w_o| (Rastegari et al. 2016)."""

    tensor_quant = BinaryQuant
    scaling_impl_type = ScalingImplType.STATS
    scaling_stats_op = StatsOp.AVE
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    restrict_scaling_type = RestrictValueType.FP


class ResidualActPow2(Int8ActPerTensorFloat):
    """Signed residual-stream quantizer: ``bit_width`` bits (set per layer), learned power-of-two scale.

    In hardware the block input is an integer q with x = 2^e * q; the exponent is fixed at export.
    """

    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    scaling_impl_type = ScalingImplType.PARAMETER  # no statistics phase: the whole state is in the state dict
    scaling_init = 4.0
    narrow_range = False


class Int8ActInputPow2(ResidualActPow2):
    """8-bit quantizer of the image entering the first convolution (power-of-two scale, range about +-2)."""

    bit_width = 8
    scaling_init = 2.0


class Int8WeightPerChannelPow2(Int8WeightPerTensorFloat):
    """8-bit per-output-channel weights (first conv, classifier, real 1x1 shortcut), power-of-two scales."""

    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    narrow_range = True


class Int8WeightPerChannelLsq(Int8WeightPerTensorFloat):
    """8-bit channel-wise LSQ weights of the SE-like FC layers (supplementary Sec. B).

    Symmetric with Q_N = 2^(b-1) = 128, Q_P = 2^(b-1) - 1 = 127 (``narrow_range=False``); the per-channel step
    size is a learned parameter initialised from the weight statistics and trained through the rounding's STE.
    """

    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    scaling_impl_type = ScalingImplType.PARAMETER_FROM_STATS
    narrow_range = False
