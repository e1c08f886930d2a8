"""Computational cost and parameter size of the project's networks (supplementary Sec. C, docs/insta-bnn.md Sec. 5).

``python -m instabnn.model.cost --out reports/cost.json`` (``make cost``) prints a Markdown table of every comparison
model (BOPs, FLOPs, OPs, parameter Mbit) and writes ``reports/cost.json`` and ``reports/cost.md``.

How it counts
=============

Nothing here is a hand-kept table. :func:`count_costs` walks the modules of a network, runs **one** forward pass
(eval mode, no gradient) on a single random image of the network's input shape (``net.input_shape``: 224 for the
ImageNet archs, 32 for CIFAR-10, 8 for digits, or ``NetConfig.image_size``) with hooks that record each layer's
input / output shapes and which layer's output feeds which layer (tensor identity), then applies the rules below
per module type. A module type without a rule that holds parameters or buffers is an error (``CostError``), so a
new building block cannot silently count as free.

Totals: **OPs = FLOPs + BOPs / 64**. One multiply-accumulate counts once (as one FLOP or one BOP); only
multiplications are counted, additions / subtractions / comparisons are free. **Parameter bits**: binary weights
1 bit, weights of the SE-like FC layers 8 bits (their quantizer's bit width), every other parameter 32 bits.

Rules per module (C channels, H x W the module's input map unless said otherwise; per image):

=========================  ===========================================  ============================================
module                     operations                                   parameters
=========================  ===========================================  ============================================
conv / linear, binary      BOPs = MACs = Cout*Hout*Wout*Cin/g*kh*kw     weights, 1 bit
  (binary weights AND
  binary (+-1) input)
conv / linear, otherwise   FLOPs = MACs (in*out for a linear)           weights (+ bias), 32 bit
XNOR weight scale          Hout*Wout*Cout multiplies; **0** when the    Cout, 32 bit; 0 when merged
  (binary conv whose         conv's output feeds a BN directly (the
  quantizer has a scale)     scale merges into the BN's scale)
BatchNorm                  H*W*C multiplies                             2C
BatchNorm -> Sign          0 (the BN folds into a per-channel           C
  (its output feeds a        threshold, Kim et al. 2019)
  binarizer directly)
AvgPool / MaxPool / GAP    free                                         -
binarizer (sign)           free                                         -
RSign                      free (a subtraction)                         C
PReLU                      free (supplementary: "we ignored PReLU")     C
RPReLU                     free                                         3C (gamma, kappa, zeta)
INSTA-Th                   H*W*C (normalize) + 2*H*W*C (cube) + 2C      4C (mu, sigma, alpha, beta)
INSTA-PReLU                H*W*C + 2*H*W*C + 3C                         5C (mu, sigma, alpha, beta, kappa)
INSTA-PReLU, stats reuse   H*W*C + 2C (cube and spatial mean dropped)   5C + 2C (u, v of the reuse map)
INSTA-Th+ / INSTA-PReLU+   as INSTA-Th / INSTA-PReLU (incl. reuse)      base - C (alpha replaced), plus:
  SE FC layers             FC MACs 2C^2/r as FLOPs                      2C^2/r, at the FC weights' bit width (8)
  SE LSQ step sizes        C + C/r multiplies (only when quantized)     C + C/r, 32 bit
=========================  ===========================================  ============================================

The downsampling shortcut (option B) is AvgPool + 1x1 conv + BN: it is counted by the same rules (AvgPool free, the
1x1 conv real-valued, its BN H*W*C and 2C). Option A (ResNet-20 only) has no modules and costs nothing.
Quantizers of the residual stream and of the image, and their learned scales, are not counted (the paper's model
is real-valued outside the binary convolutions).

Decisions where the supplementary is silent or ambiguous
--------------------------------------------------------

1. **8-bit layers count as 32-bit real layers.** The first convolution, the classifier and the 1x1 shortcut
   convolutions have 8-bit weights in this project (hardware), but the paper's accounting treats them as real-valued:
   FLOPs = MACs and 32-bit parameters (classifier bias included). Only the SE weights use their own bit width.
2. **Binary = binary weights and binary inputs.** A conv counts BOPs only when its weight quantizer is 1 bit *and*
   the input the walk saw is all +-1 (the -1 padding keeps it so). Stage-1 networks (real weights) and real-valued
   teacher networks (no binarizer) therefore count FLOPs; a 1-bit-weight conv on real inputs counts FLOPs with
   1-bit parameters.
3. **The weight scale's Cout values are parameters** (32 bit) where the scale cannot merge into a BN; the
   supplementary names only its multiplies. Merged, it is part of the BN's 2C. In the project's bireal block
   (conv -> BN) it always merges; in the BN-sign-conv order (conv -> PReLU) it does not.
4. **SE FC layers: their MACs count as FLOPs** (the statistic s they read is real-valued; 8-bit weights times a real
   input is no binary operation). The supplementary's "C + C/r real-valued parameters and multiplications" for the
   channel-wise LSQ step sizes are added on top, only when the SE weights are quantized (``se_weight_bits=8``,
   the final model); with real SE weights there are no step sizes and the FC weights count 32 bits.
5. **The "+" modules keep their base module's channel-wise operations** (2C for INSTA-Th+, 3C for INSTA-PReLU+):
   the alpha multiply is replaced by the SE (counted above) and, for INSTA-Th+, the SE's g takes its place.
6. **Statistics reuse keeps the normalization's H*W*C.** The supplementary says reuse "eliminates a cubic
   operation" and the spatial averaging (3C -> 2C); it does not say the normalization goes, so it stays (a
   conservative reading: an implementation that skips x~ entirely would save another H*W*C; the accounting option
   ``reuse_drops_normalization``).

Decisions 6, the BN multiplies, the SE ratio and where the INSTA modules sit are named options of an accounting
profile (:class:`Accounting`, :data:`ACCOUNTINGS`, ``--accounting``); ``project`` is the reading above. docs/cost.md
shows each profile's ReActNet-A figures and which one matches which published figure.
7. **INSTA-PReLU's 3C does not depend on g** (sigmoid, tanh or 3*tanh(z/3) all count 3C).
8. **Pooling is free**, the global average pool before the classifier included ("average pooling" is free in the
   supplementary's downsampling path; the same holds for the max-pool of the ResNet-18 stem).
9. **XNOR-Net's activation scaling (K)** is not modelled: the comparison models follow the supplementary, which
   names only the weight scaling factor.
10. **Parameters are counted once per module, operations once per call** (every module is called once in the
    project's networks).

Comparison models and accounting profiles
=========================================

The project's networks are counted as built (profile ``as_built``): ReActNet-18 = arch reactnet18 baseline (RSign,
RPReLU, XNOR weight scale merged into the BN), ReActNet-A = reactnet_a baseline, INSTA-BNN / INSTA-BNN+ (8-bit
SE weights, r = ``se_reduction``) / latency-optimized on both, and ResNet-20 (CIFAR-10) in all four variants.

The earlier BNNs of the paper's comparison are the walked reactnet18 network (ResNet-18 shapes, option-B
downsampling with a real 1x1 conv) under a small set of accounting profiles (:data:`PROFILES`), not typed-in numbers:

- ``bi_real`` (Bi-Real-18): sign -> conv -> BN -> + x, plain sign (RSign's C thresholds not counted), no learned
  activation (RPReLU's 3C not counted); the scale merges into the BN.
- ``xnor`` (XNOR-Net-18): the reactnet18 network built in the BN -> sign -> conv order (``block_order=
  "bn_sign_conv"``): the BN folds into the sign (C, no multiplies), the weight scale does **not** merge
  (Hout*Wout*Cout multiplies and Cout parameters per binary conv), no PReLU parameters.
- ``bnn`` (BNN-18): as ``bi_real``, no weight scaling factor, and the 1x1 downsampling convolutions binary (BOPs and
  1-bit weights instead of FLOPs and 32-bit weights).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from brevitas.nn import QuantIdentity
from torch import nn

from instabnn.model import modules as M
from instabnn.outputs import atomic_write_text
from instabnn.model.config import INSTA_ACTIVATIONS, INSTA_BINARIZERS, NetConfig
from instabnn.model.networks import Shortcut, build_network

BOPS_PER_OP = 64
FP_BITS = 32

__all__ = ["ACCOUNTINGS", "AS_BUILT", "Accounting", "BOPS_PER_OP", "CostError", "CostReport", "LayerCost", "MODELS",
           "ModelSpec", "PROFILES", "PROJECT", "Profile", "count_costs", "main", "markdown", "model_cost",
           "report_json"]


class CostError(RuntimeError):
    """A network the cost model cannot count (a parametrised module without a rule, no input shape, ...)."""


# ------------------------------------------------------------------------------------------------------ profiles


@dataclass(frozen=True)
class Profile:
    """How to account a walked network for a method it approximates (see the module docstring).

    threshold_params   False: a plain sign, RSign's C thresholds are not counted
    activation_params  False: no learned activation, PReLU / RPReLU parameters are not counted (still free ops)
    weight_scale       None: as the quantizer has it; False: binary convs have no scale; True: always a scale
    binary_shortcut    True: the 1x1 downsampling convolutions are binary (BNN)
    """

    name: str
    description: str
    threshold_params: bool = True
    activation_params: bool = True
    weight_scale: bool | None = None
    binary_shortcut: bool = False


AS_BUILT = Profile("as_built", "the network as built")
PROFILES = {p.name: p for p in (
    AS_BUILT,
    Profile("bi_real", "Bi-Real: plain sign, no learned activation, BN after conv (scale merged), option-B "
                       "downsampling", threshold_params=False, activation_params=False),
    Profile("xnor", "XNOR-Net: BN -> sign -> conv (BN folded into the sign, weight scale not merged), no PReLU",
            activation_params=False, weight_scale=True),
    Profile("bnn", "BNN: plain sign, no activation, no weight scale, binary 1x1 downsampling convolutions",
            threshold_params=False, activation_params=False, weight_scale=False, binary_shortcut=True),
)}


# ------------------------------------------------------------------------------------------------------ accounting

INSTA_PLACEMENTS = ("as_built", "all", "sec_d")


@dataclass(frozen=True)
class Accounting:
    """The accounting choices supplementary Sec. C / D leave open, each a named option (docs/cost.md).

    bn_multiplies      True: a BatchNorm costs H*W*C multiplies ("FP multiplication cost of BN layer is H x W x C",
                       Sec. C); False: BN multiplies are not counted (folded into the neighbouring scale or
                       threshold; the BN parameters still count 2C)
    reuse_drops_normalization  False: statistics reuse removes the INSTA-PReLU's cube and spatial mean only ("the
                       feature statistics reuse ... eliminates a cubic operation for the corresponding INSTA-PReLU
                       module. It also removes spatial averaging", Sec. C), the H*W*C normalization stays;
                       True: it removes the normalization as well (2C remain)
    se_reduction       r of the SE-like modules ("2C^2/r 8-bit parameters ... (r: reduction ratio)", Sec. C, no
                       value given); None: the network's own (NetConfig.se_reduction, 4)
    insta_placement    as_built: INSTA modules where the network config puts them; all: in every stage; sec_d:
                       from the stage where the map has been halved for the third time ("we used the INSTA modules
                       from the point where the feature size is halved for the third time", Sec. D)
    stats_reuse        None: as built; "auto": every INSTA network counted with statistics reuse wherever the
                       channel counts allow (Sec. D, Fig. 1b: "E[x^3] value is reused for the INSTA-PReLU")
    """

    name: str
    description: str
    bn_multiplies: bool = True
    reuse_drops_normalization: bool = False
    se_reduction: int | None = None
    insta_placement: str = "as_built"
    stats_reuse: str | None = None

    def __post_init__(self):
        if self.insta_placement not in INSTA_PLACEMENTS:
            raise CostError(f"accounting {self.name}: insta_placement={self.insta_placement!r}; choose from "
                            f"{', '.join(INSTA_PLACEMENTS)}")

    def apply(self, cfg: NetConfig) -> NetConfig:
        """The network to count: ``cfg`` with this accounting's SE ratio and INSTA placement."""
        from instabnn.model.config import LATENCY_FIRST_INSTA_STAGE

        changes = {}
        if self.se_reduction is not None:
            changes["se_reduction"] = self.se_reduction
        if self.insta_placement == "all":
            changes["first_insta_stage"] = 0
        elif self.insta_placement == "sec_d":
            changes["first_insta_stage"] = LATENCY_FIRST_INSTA_STAGE[cfg.arch]
        if self.stats_reuse and cfg.effective_binarizer in INSTA_BINARIZERS \
                and cfg.effective_activation in INSTA_ACTIVATIONS and cfg.block_order == "bireal":
            changes["stats_reuse"] = self.stats_reuse
        return cfg.replace(**changes)

    def summary(self) -> str:
        return (f"BN multiplies {'counted' if self.bn_multiplies else 'not counted'}; statistics reuse "
                f"{self.stats_reuse or 'as built'}, removing "
                f"{'cube, mean and normalization' if self.reuse_drops_normalization else 'cube and mean'}; "
                f"SE r = {self.se_reduction or 'as built'}; INSTA modules {self.insta_placement}")


PROJECT = Accounting("project", "the project's reading of Sec. C: every BN multiply counted, reuse keeps the "
                                "normalization, r = 4, INSTA modules where the variant puts them")
ACCOUNTINGS = {a.name: a for a in (
    PROJECT,
    Accounting("no_bn", "as project, BN multiplies not counted", bn_multiplies=False),
    Accounting("sec_d", "as no_bn, and every INSTA network in the Sec. D form: INSTA modules from the stage of the "
                        "third halving (H = 28 at 224), statistics reuse", bn_multiplies=False,
               insta_placement="sec_d", stats_reuse="auto"),
    Accounting("sec_d_r16", "as sec_d, SE reduction r = 16", bn_multiplies=False, insta_placement="sec_d",
               stats_reuse="auto", se_reduction=16),
    Accounting("lean", "as sec_d_r16, and statistics reuse also removes the normalization", bn_multiplies=False,
               insta_placement="sec_d", stats_reuse="auto", se_reduction=16, reuse_drops_normalization=True),
)}


# ------------------------------------------------------------------------------------------------------ results


@dataclass
class LayerCost:
    """One counted item: a module, or one part of it (a conv's weight scale, an SE's FC layers, ...)."""

    name: str
    category: str
    bops: int = 0
    flops: int = 0
    params: int = 0
    bits: int = FP_BITS
    note: str = ""

    @property
    def params_bits(self) -> int:
        return self.params * self.bits

    def to_dict(self) -> dict:
        return {"name": self.name, "category": self.category, "bops": self.bops, "flops": self.flops,
                "params": self.params, "bits": self.bits, "params_bits": self.params_bits, "note": self.note}


@dataclass
class CostReport:
    name: str
    input_shape: tuple
    layers: list[LayerCost]
    profile: str = AS_BUILT.name
    config: dict | None = None
    accounting: str = PROJECT.name

    @property
    def bops(self) -> int:
        return sum(item.bops for item in self.layers)

    @property
    def flops(self) -> int:
        return sum(item.flops for item in self.layers)

    @property
    def ops(self) -> float:
        return self.flops + self.bops / BOPS_PER_OP

    @property
    def params(self) -> int:
        return sum(item.params for item in self.layers)

    @property
    def params_bits(self) -> int:
        return sum(item.params_bits for item in self.layers)

    def category(self, name: str) -> list[LayerCost]:
        return [item for item in self.layers if item.category == name]

    def breakdown(self) -> dict:
        """Totals per category (module type), in order of first appearance."""
        out: dict[str, dict] = {}
        for item in self.layers:
            row = out.setdefault(item.category, {"count": 0, "bops": 0, "flops": 0, "params": 0, "params_bits": 0})
            row["count"] += 1
            row["bops"] += item.bops
            row["flops"] += item.flops
            row["params"] += item.params
            row["params_bits"] += item.params_bits
        return out

    def to_dict(self, layers: bool = False) -> dict:
        d = {"name": self.name, "profile": self.profile, "accounting": self.accounting, "config": self.config,
             "input_shape": list(self.input_shape),
             "bops": self.bops, "flops": self.flops, "ops": self.ops, "params": self.params,
             "params_bits": self.params_bits, "params_mbit": self.params_bits / 1e6, "breakdown": self.breakdown()}
        if layers:
            d["layers"] = [item.to_dict() for item in self.layers]
        return d


# ------------------------------------------------------------------------------------------------------ the walk

_POOLS = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

# Order matters where one class would also match a later entry.
_UNIT_KINDS = (
    (M.InstaThPlus, "insta_th_plus"),
    (M.InstaTh, "insta_th"),
    (M.InstaPReLUPlus, "insta_prelu_plus"),
    (M.InstaPReLU, "insta_prelu"),
    (M.RSign, "rsign"),
    (M.Sign, "plain_sign"),
    (M.RPReLU, "rprelu"),
    (nn.PReLU, "prelu"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"),
    (nn.Conv2d, "conv"),   # QuantConv2d included
    (nn.Linear, "linear"),  # QuantLinear included
    (QuantIdentity, "quantizer"),
    (_POOLS, "pool"),
)


@dataclass
class _Unit:
    name: str
    module: nn.Module
    kind: str
    in_shortcut: bool
    calls: list = field(default_factory=list)  # (input shape, output shape, input binary, output binary)
    feeds_bn: bool = False     # conv: its output is a BN's input
    feeds_sign: bool = False   # BN: its output is a binarizer's input


def _kind(module: nn.Module) -> str | None:
    for cls, kind in _UNIT_KINDS:
        if isinstance(module, cls):
            return kind
    return None


def _cost_units(root: nn.Module) -> list[_Unit]:
    units: list[_Unit] = []

    def visit(prefix: str, module: nn.Module, in_shortcut: bool):
        kind = _kind(module)
        if kind is not None:
            units.append(_Unit(prefix or type(module).__name__, module, kind, in_shortcut))
            return
        own = [n for n, _ in module.named_parameters(recurse=False)] + [n for n, _ in module.named_buffers(
            recurse=False)]
        if own:
            raise CostError(f"cost: no rule for {type(module).__name__} at {prefix or '<root>'} "
                            f"(it holds {', '.join(own)}); add one to instabnn.model.cost")
        in_shortcut = in_shortcut or isinstance(module, Shortcut)
        for child_name, child in module.named_children():
            visit(f"{prefix}.{child_name}" if prefix else child_name, child, in_shortcut)

    visit("", root, False)
    return units


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if hasattr(value, "value") and isinstance(value.value, torch.Tensor):  # a Brevitas QuantTensor
        return value.value
    if isinstance(value, (tuple, list)):
        for item in value:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def _is_binary(t: torch.Tensor | None) -> bool:
    """All values +-1 (a binarizer's output, or a binary conv's -1-padded input)."""
    if t is None or t.numel() == 0:
        return False
    flat = t.detach().reshape(-1)
    head = flat[:256]  # real-valued tensors fail here; only binary ones pay for the full check
    return bool((head.abs() == 1).all()) and bool((flat.abs() == 1).all())


def _walk(net: nn.Module, input_shape: tuple) -> tuple[list[_Unit], dict]:
    units = _cost_units(net)
    producers: dict[int, _Unit] = {}  # id(output tensor) -> the conv / BN unit that wrote it
    alive: list[torch.Tensor] = []    # keeps those tensors alive, so that their ids stay unique
    pending: dict[int, torch.Tensor | None] = {}
    weights: dict[int, tuple[int, bool]] = {}  # id(layer) -> (weight bit width, has a non-trivial scale)
    handles = []

    def pre_hook(unit):
        def hook(module, args):
            pending[id(unit)] = _first_tensor(args)
        return hook

    def post_hook(unit):
        def hook(module, args, output):
            x, y = pending.pop(id(unit)), _first_tensor(output)
            checks = unit.kind in ("conv", "linear"), unit.kind == "quantizer"  # binary input / binary output
            unit.calls.append((tuple(x.shape) if x is not None else None, tuple(y.shape) if y is not None else None,
                               checks[0] and _is_binary(x), checks[1] and _is_binary(y)))
            source = producers.get(id(x)) if x is not None else None
            if source is not None:
                if unit.kind == "batchnorm" and source.kind == "conv":
                    source.feeds_bn = True
                if source.kind == "batchnorm" and unit.kind == "quantizer" and unit.calls[-1][3]:
                    source.feeds_sign = True
            if unit.kind in ("conv", "batchnorm") and y is not None:
                producers[id(y)] = unit
                alive.append(y)
        return hook

    def weight_hook(owner):
        def hook(proxy, args, output):
            bits = getattr(output, "bit_width", None)
            scale = getattr(output, "scale", None)
            weights[id(owner)] = (FP_BITS if bits is None else int(round(float(bits))),
                                  scale is not None and not bool(torch.all(scale == 1)))
        return hook

    for unit in units:
        handles.append(unit.module.register_forward_pre_hook(pre_hook(unit)))
        handles.append(unit.module.register_forward_hook(post_hook(unit)))
    for module in net.modules():  # the weight quantizers run once in the forward pass: record bits and scale there
        proxy = getattr(module, "weight_quant", None)
        if isinstance(proxy, nn.Module) and getattr(proxy, "is_quant_enabled", False):
            handles.append(proxy.register_forward_hook(weight_hook(module)))
    was_training = net.training
    net.eval()
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((1, *input_shape), generator=generator)
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return units, weights


# ------------------------------------------------------------------------------------------------------ the rules


def _weight_info(module: nn.Module, seen: dict) -> tuple[int, bool]:
    """(bit width of a layer's weight quantizer, whether its weights carry a non-trivial scale (XNOR-Net)):
    as recorded in the forward pass, else computed; (32, False) for a real-valued or plain PyTorch layer."""
    if id(module) in seen:
        return seen[id(module)]
    proxy = getattr(module, "weight_quant", None)
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        return FP_BITS, False
    qw = module.quant_weight()
    return int(round(float(qw.bit_width))), qw.scale is not None and not bool(torch.all(qw.scale == 1))


def _hwc(shape) -> int:
    n = 1
    for d in shape[1:]:
        n *= d
    return n


def _macs(module: nn.Module, out_shape) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return _hwc(out_shape) * (module.in_channels // module.groups) * kh * kw
    return _hwc(out_shape) * module.in_features  # a linear layer on (N, in) -> (N, out)


def _layer_costs(u: _Unit, p: Profile, seen: dict) -> list[LayerCost]:
    m = u.module
    weights = m.weight.numel()
    bias = m.bias.numel() if m.bias is not None else 0
    wbits, has_scale = _weight_info(m, seen)
    macs = sum(_macs(m, out) for _, out, _, _ in u.calls)
    binary_in = bool(u.calls) and all(call[2] for call in u.calls)
    forced = p.binary_shortcut and u.in_shortcut and u.kind == "conv"
    if (wbits == 1 and binary_in) or forced:
        items = [LayerCost(u.name, "binary_conv" if u.kind == "conv" else "binary_linear", bops=macs,
                           params=weights, bits=1, note="binary shortcut (profile)" if forced else "")]
        if bias:
            items.append(LayerCost(u.name + ".bias", items[0].category, params=bias))
        scaled = p.weight_scale if p.weight_scale is not None else (wbits == 1 and has_scale)
        if scaled:
            if u.feeds_bn:
                items.append(LayerCost(u.name + ".scale", "weight_scale", note="merged into the following BN"))
            else:
                cout_maps = sum(_hwc(out) for _, out, _, _ in u.calls)
                items.append(LayerCost(u.name + ".scale", "weight_scale", flops=cout_maps,
                                       params=m.weight.shape[0], note="not merged (no BN follows the conv)"))
        return items
    category = "real_conv" if u.kind == "conv" else "real_linear"
    note = "shortcut" if u.in_shortcut else ""
    if wbits == 1:  # 1-bit weights on real-valued inputs: FP multiplies, 1-bit storage
        return [LayerCost(u.name, category, flops=macs, params=weights, bits=1, note="binary weights, real input"),
                *([LayerCost(u.name + ".bias", category, params=bias)] if bias else [])]
    return [LayerCost(u.name, category, flops=macs, params=weights + bias, note=note)]


def _se_costs(name: str, se: M.SeMlp, seen: dict) -> list[LayerCost]:
    fcs = (se.fc1, se.fc2)
    bits = _weight_info(se.fc1, seen)[0]
    weights = sum(fc.weight.numel() for fc in fcs) + sum(fc.bias.numel() for fc in fcs if fc.bias is not None)
    items = [LayerCost(name + ".se", "se_fc", flops=weights, params=weights, bits=bits,
                       note=f"2C^2/r FC weights, {bits}-bit")]
    if bits < FP_BITS:
        steps = sum(fc.out_features for fc in fcs)
        items.append(LayerCost(name + ".se.lsq", "se_lsq", flops=steps, params=steps,
                               note="C + C/r channel-wise LSQ step sizes"))
    return items


def _unit_costs(u: _Unit, p: Profile, seen: dict, a: Accounting = PROJECT) -> list[LayerCost]:
    m, kind = u.module, u.kind
    if kind in ("conv", "linear"):
        return _layer_costs(u, p, seen)
    if kind == "batchnorm":
        c = m.num_features
        if u.feeds_sign:
            return [LayerCost(u.name, "batchnorm_sign", params=c, note="folded into the sign's threshold")]
        flops = sum(_hwc(x) for x, _, _, _ in u.calls) if a.bn_multiplies else 0
        return [LayerCost(u.name, "batchnorm", flops=flops, params=2 * c,
                          note="" if a.bn_multiplies else "multiplies not counted (accounting)")]
    if kind == "quantizer":
        binary = bool(u.calls) and all(call[3] for call in u.calls)
        return [LayerCost(u.name, "sign")] if binary else []
    if kind == "pool":
        return [LayerCost(u.name, "pool")]
    if kind == "plain_sign":
        return []  # the binarizing quantizer that follows counts as the sign
    if kind == "rsign":
        return [LayerCost(u.name, "rsign", params=m.threshold.numel() if p.threshold_params else 0,
                          note="" if p.threshold_params else "plain sign (profile)")]
    if kind == "prelu":
        return [LayerCost(u.name, "prelu", params=m.weight.numel() if p.activation_params else 0)]
    if kind == "rprelu":
        c = m.gamma.numel()
        return [LayerCost(u.name, "rprelu", params=3 * c if p.activation_params else 0)]
    c = m.stats.channels
    hwc = sum(_hwc(x) for x, _, _, _ in u.calls)
    calls = len(u.calls)
    if kind in ("insta_th", "insta_th_plus"):
        plus = kind == "insta_th_plus"
        items = [LayerCost(u.name, kind, flops=3 * hwc + 2 * c * calls, params=(3 if plus else 4) * c)]
        return items + (_se_costs(u.name, m.se, seen) if plus else [])
    # insta_prelu, insta_prelu_plus
    plus = kind == "insta_prelu_plus"
    reuse = m.reuse is not None
    flops = ((0 if a.reuse_drops_normalization else hwc) + 2 * c * calls) if reuse else 3 * hwc + 3 * c * calls
    items = [LayerCost(u.name, kind, flops=flops, params=(4 if plus else 5) * c,
                       note="statistics reused from the INSTA-Th" if reuse else "")]
    if reuse:
        items.append(LayerCost(u.name + ".reuse", "stats_reuse", params=2 * c, note="u, v of s' = u s + v"))
    return items + (_se_costs(u.name, m.se, seen) if plus else [])


def count_costs(net: nn.Module, input_shape: tuple | None = None, profile: Profile = AS_BUILT,
                name: str = "", accounting: Accounting = PROJECT) -> CostReport:
    """Walk ``net`` (one forward pass on one image of ``input_shape`` = (C, H, W), default ``net.input_shape``)
    and count BOPs, FLOPs and parameters per the supplementary Sec. C rules (module docstring) and ``accounting``
    (its operation choices; its network choices are applied by :func:`model_cost`)."""
    shape = tuple(input_shape or getattr(net, "input_shape", ()) or ())
    if len(shape) != 3:
        raise CostError(f"cost: need the input shape (C, H, W) of {type(net).__name__}; got {shape or None}")
    units, seen = _walk(net, shape)
    layers = [item for unit in units for item in _unit_costs(unit, profile, seen, accounting)]
    cfg = getattr(net, "cfg", None)
    return CostReport(name or type(net).__name__, shape, layers, profile.name,
                      cfg.to_dict() if isinstance(cfg, NetConfig) else None, accounting.name)


def model_cost(cfg: NetConfig | dict, profile: Profile | str = AS_BUILT, name: str = "",
               accounting: Accounting | str = PROJECT) -> CostReport:
    """Build the network of ``cfg`` (with ``accounting``'s network choices) and count it under ``profile``."""
    if isinstance(profile, str):
        profile = PROFILES[profile]
    if isinstance(accounting, str):
        if accounting not in ACCOUNTINGS:
            raise CostError(f"cost: unknown accounting {accounting!r}; choose from {', '.join(ACCOUNTINGS)}")
        accounting = ACCOUNTINGS[accounting]
    if isinstance(cfg, dict):
        cfg = NetConfig.from_dict(cfg)
    torch.manual_seed(0)
    net = build_network(accounting.apply(cfg))
    return count_costs(net, profile=profile, name=name or f"{net.cfg.arch}/{net.cfg.variant}",
                       accounting=accounting)


# ------------------------------------------------------------------------------------------------------ models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config: NetConfig
    profile: Profile = AS_BUILT
    dataset: str = "ImageNet"


def _r18(**kw) -> NetConfig:
    return NetConfig(arch="reactnet18", **kw)


def _ra(**kw) -> NetConfig:
    return NetConfig(arch="reactnet_a", **kw)


def _r20(**kw) -> NetConfig:
    return NetConfig(arch="resnet20", **kw)


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("BNN-18", _r18(variant="baseline"), PROFILES["bnn"]),
    ModelSpec("XNOR-Net-18", _r18(variant="baseline", block_order="bn_sign_conv"), PROFILES["xnor"]),
    ModelSpec("Bi-Real-18", _r18(variant="baseline"), PROFILES["bi_real"]),
    ModelSpec("ReActNet-18", _r18(variant="baseline")),
    ModelSpec("INSTA-BNN-ResNet18", _r18(variant="insta")),
    ModelSpec("INSTA-BNN+-ResNet18", _r18(variant="insta_plus", se_weight_bits=8)),
    ModelSpec("INSTA-BNN-ResNet18-latency", _r18(variant="latency_optimized")),
    ModelSpec("ReActNet-A", _ra(variant="baseline")),
    ModelSpec("INSTA-BNN-ReActNet-A", _ra(variant="insta")),
    ModelSpec("INSTA-BNN+-ReActNet-A", _ra(variant="insta_plus", se_weight_bits=8)),
    ModelSpec("INSTA-BNN-ReActNet-A-latency", _ra(variant="latency_optimized")),
    ModelSpec("ResNet-20", _r20(variant="baseline"), dataset="CIFAR-10"),
    ModelSpec("INSTA-BNN-ResNet20", _r20(variant="insta"), dataset="CIFAR-10"),
    ModelSpec("INSTA-BNN+-ResNet20", _r20(variant="insta_plus", se_weight_bits=8), dataset="CIFAR-10"),
    ModelSpec("INSTA-BNN-ResNet20-latency", _r20(variant="latency_optimized"), dataset="CIFAR-10"),
)
"""The comparison models of the CLI, in table order."""


def report_json(reports: list[CostReport], specs: dict[str, ModelSpec] | None = None, layers: bool = False,
                keyed_by_accounting: bool = False) -> dict:
    """{model name: report}, or {"<model> [<accounting>]": report} when several accountings are counted."""
    out = {}
    for r in reports:
        d = r.to_dict(layers)
        d["accounting_description"] = ACCOUNTINGS[r.accounting].summary() if r.accounting in ACCOUNTINGS else None
        if specs and r.name in specs:
            d["dataset"] = specs[r.name].dataset
            d["profile_description"] = specs[r.name].profile.description
        out[f"{r.name} [{r.accounting}]" if keyed_by_accounting else r.name] = d
    return out


def _sci(x: float) -> str:
    return f"{x:.3e}"


def markdown(reports: list[CostReport], specs: dict[str, ModelSpec] | None = None) -> str:
    lines = ["# Computational cost (supplementary Sec. C rules, `instabnn.model.cost`)", "",
             "| model | dataset | input | method profile | accounting | BOPs | FLOPs | OPs | params (Mbit) |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in reports:
        dataset = specs[r.name].dataset if specs and r.name in specs else ""
        shape = "x".join(str(d) for d in r.input_shape)
        lines.append(f"| {r.name} | {dataset} | {shape} | {r.profile} | {r.accounting} | {_sci(r.bops)} | "
                     f"{_sci(r.flops)} | {_sci(r.ops)} | {r.params_bits / 1e6:.2f} |")
    lines += ["", "OPs = FLOPs + BOPs/64. Parameter bits: binary weights 1, SE-like FC weights 8, all else 32. "
              "BNN-18, XNOR-Net-18 and Bi-Real-18 are the walked reactnet18 network under the method profiles "
              "`bnn`, `xnor`, `bi_real` (see the module docstring of `instabnn.model.cost`). Accounting profiles "
              "(docs/cost.md):", ""]
    for name in dict.fromkeys(r.accounting for r in reports):
        lines.append(f"- `{name}`: {ACCOUNTINGS[name].summary()}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/cost.json", help="JSON report; the Markdown table goes beside it (.md)")
    p.add_argument("--models", default="", help="comma-separated model names (default: all); see MODELS")
    p.add_argument("--layers", action="store_true", help="include the per-layer items in the JSON")
    p.add_argument("--accounting", default=PROJECT.name,
                   help=f"comma-separated accounting profiles, each model counted under each: "
                        f"{', '.join(ACCOUNTINGS)} (docs/cost.md)")
    args = p.parse_args(argv)
    specs = {s.name: s for s in MODELS}
    names = [n for n in args.models.split(",") if n] or list(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(specs)}")
    accountings = [a for a in args.accounting.split(",") if a]
    unknown = [a for a in accountings if a not in ACCOUNTINGS]
    if unknown or not accountings:
        p.error(f"--accounting: unknown {', '.join(unknown) or 'none given'}; choose from {', '.join(ACCOUNTINGS)}")
    reports = [model_cost(specs[n].config, specs[n].profile, name=n, accounting=a)
               for a in accountings for n in names]
    out = Path(args.out)
    data = report_json(reports, specs, args.layers, keyed_by_accounting=len(accountings) > 1)
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    md = markdown(reports, specs)
    atomic_write_text(out.with_suffix(".md"), md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
