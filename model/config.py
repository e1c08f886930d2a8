"""Network configuration: one frozen, JSON-serialisable record from which a network is rebuilt.

The same record travels in checkpoints and in the exported QONNX file's metadata, so that either rebuilds the model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

ARCHS = ("digits", "resnet20", "reactnet18", "reactnet_a")
VARIANTS = ("baseline", "insta", "insta_plus", "latency_optimized")
STATS_REUSE = ("none", "auto", "all")
BLOCK_ORDERS = ("bireal", "bn_sign_conv")
G_NAMES = ("sigmoid", "tanh", "tanh3")
BINARIZERS = ("sign", "rsign", "insta_th", "insta_th_plus")
ACTIVATIONS = ("prelu", "rprelu", "insta_prelu", "insta_prelu_plus")
INSTA_BINARIZERS = ("insta_th", "insta_th_plus")
INSTA_ACTIVATIONS = ("insta_prelu", "insta_prelu_plus")

# The variants are presets of the two module choices (binarizer, activation); "baseline" takes its binarizer from
# baseline_threshold (rsign, or sign for supplementary Sec. I's plain-sign model).
VARIANT_MODULES = {"baseline": (None, "rprelu"), "insta": ("insta_th", "insta_prelu"),
                   "insta_plus": ("insta_th_plus", "insta_prelu_plus"),
                   "latency_optimized": ("insta_th", "insta_prelu")}

# Latency-optimized networks (supplementary Sec. D) use INSTA modules from the stage whose feature map has been
# halved for the third time (ImageNet: H = 28); the stage index of that point, per architecture.
LATENCY_FIRST_INSTA_STAGE = {"digits": 1, "resnet20": 1, "reactnet18": 1, "reactnet_a": 2}


class ConfigError(ValueError):
    """An inconsistent or unknown configuration value; the message names the field."""


@dataclass(frozen=True)
class NetConfig:
    """What to build.

    arch             digits | resnet20 | reactnet18 | reactnet_a
    variant          baseline (RSign / RPReLU) | insta (INSTA-Th / INSTA-PReLU) | insta_plus (the SE-like "+" forms)
                     | latency_optimized (insta from ``first_insta_stage`` on, statistics reuse where possible):
                     presets of ``binarizer`` and ``activation`` (VARIANT_MODULES)
    binarizer        sign | rsign | insta_th | insta_th_plus; None: the variant's (baseline: baseline_threshold)
    activation       prelu | rprelu | insta_prelu | insta_prelu_plus; None: the variant's.
                     INSTA-Th alone = binarizer insta_th, activation rprelu; the plain-PReLU ResNet-20 baseline of
                     Sec. A.1 = binarizer rsign (or sign), activation prelu
    first_insta_stage  stages before it keep RSign / RPReLU (None: 0, or the Sec. D default for latency_optimized)
    stats_reuse      none | auto (where the INSTA-Th and INSTA-PReLU channel counts match) | all (error otherwise)
    g                the bounded nonlinearity of INSTA-PReLU and of the SE (sigmoid | tanh | tanh3)
    g_se             the SE's nonlinearity in INSTA-Th+ where it should differ from g (None: g; Sec. F, Table 1)
    baseline_threshold  the binarizer of non-INSTA stages: rsign (learned per-channel tau, ReActNet) | sign (tau = 0)
    se_reduction     r of the SE-like MLP (C -> C/r -> C)
    se_weight_bits   None (real SE weights) or 8 (LSQ, the fine-tuning stage and the final model)
    residual_bits    bit-width of the residual stream (power-of-two scale); None keeps it real-valued
    binary_weights   False for stage 1 of two-stage training (real weights, binary activations)
    binary_acts      False for a real-valued (teacher) network of the same shape
    act_gradient     ste | approxsign (ReActNet's ApproxSign)
    shortcut         B (AvgPool + real 1x1 conv + BN) | A (subsample + zero channels; ResNet-20 only)
    block_order      bireal (sign-conv-BN-add-act) | bn_sign_conv (supplementary Sec. G)
    bn_affine        bn_sign_conv baseline only: False is Table 2's "BN (w/o gamma, beta)"
    real_valued_layers  True: the first convolution, the classifier and the 1x1 shortcut convolutions keep 32-bit
                     real weights and the image enters unquantized (supplementary Sec. A.2: "Precision other than
                     1-bit and 32-bit was not used"; needs residual_bits=None and real SE weights). The hardware
                     flow refuses such networks (it needs 8-bit layers)
    """

    arch: str = "digits"
    variant: str = "insta"
    binarizer: str | None = None
    activation: str | None = None
    first_insta_stage: int | None = None
    stats_reuse: str = "none"
    g: str = "tanh3"
    g_se: str | None = None
    baseline_threshold: str = "rsign"
    se_reduction: int = 4
    se_weight_bits: int | None = None
    residual_bits: int | None = 8
    binary_weights: bool = True
    binary_acts: bool = True
    act_gradient: str = "ste"
    shortcut: str = "B"
    block_order: str = "bireal"
    bn_affine: bool = True
    real_valued_layers: bool = False
    num_classes: int | None = None
    in_channels: int | None = None
    image_size: int | None = None

    def __post_init__(self):
        def need(field, value, allowed):
            if value not in allowed:
                raise ConfigError(f"config: unknown {field}={value!r}; choose from {', '.join(map(str, allowed))}")

        need("arch", self.arch, ARCHS)
        need("variant", self.variant, VARIANTS)
        need("binarizer", self.binarizer, (None, *BINARIZERS))
        need("activation", self.activation, (None, *ACTIVATIONS))
        need("stats_reuse", self.stats_reuse, STATS_REUSE)
        need("g", self.g, G_NAMES)
        need("g_se", self.g_se, (None, *G_NAMES))
        need("baseline_threshold", self.baseline_threshold, ("rsign", "sign"))
        need("block_order", self.block_order, BLOCK_ORDERS)
        need("act_gradient", self.act_gradient, ("ste", "approxsign"))
        need("shortcut", self.shortcut, ("A", "B"))
        need("se_weight_bits", self.se_weight_bits, (None, 8))
        if self.residual_bits is not None and not 2 <= self.residual_bits <= 16:
            raise ConfigError(f"config: residual_bits={self.residual_bits} must lie in 2..16 (or be None)")
        if self.se_reduction < 1:
            raise ConfigError(f"config: se_reduction={self.se_reduction} must be >= 1")
        if self.shortcut == "A" and self.arch != "resnet20":
            raise ConfigError(f"config: shortcut='A' exists for resnet20 only, not arch={self.arch!r}")
        if self.first_insta_stage is not None and self.first_insta_stage < 0:
            raise ConfigError(f"config: first_insta_stage={self.first_insta_stage} must be >= 0")
        if self.stats_reuse != "none" and (self.effective_binarizer not in INSTA_BINARIZERS
                                           or self.effective_activation not in INSTA_ACTIVATIONS):
            raise ConfigError(f"config: stats_reuse={self.stats_reuse!r} needs an INSTA binarizer and an INSTA "
                              f"activation, but binarizer={self.effective_binarizer!r}, "
                              f"activation={self.effective_activation!r} (variant={self.variant!r})")
        if self.real_valued_layers and (self.residual_bits is not None or self.se_weight_bits is not None):
            raise ConfigError(f"config: real_valued_layers (only 1- and 32-bit precision, Sec. A.2) needs "
                              f"residual_bits=None and se_weight_bits=None, not {self.residual_bits} / "
                              f"{self.se_weight_bits}")
        if self.block_order == "bn_sign_conv":
            if self.binarizer is not None or self.activation is not None:
                raise ConfigError("config: block_order='bn_sign_conv' sets its own modules (BN or INSTA-Th, PReLU); "
                                  "leave binarizer and activation unset")
            if self.variant not in ("baseline", "insta"):
                raise ConfigError(f"config: block_order='bn_sign_conv' takes variant baseline or insta, "
                                  f"not {self.variant!r}")
            if self.stats_reuse != "none":
                raise ConfigError("config: block_order='bn_sign_conv' has no INSTA-PReLU, so stats_reuse must be none")

    # -- derived -----------------------------------------------------------------------------------------------
    @property
    def effective_binarizer(self) -> str:
        """The binarizer of INSTA stages (stages before ``effective_first_insta_stage`` use baseline_threshold)."""
        return self.binarizer or VARIANT_MODULES[self.variant][0] or self.baseline_threshold

    @property
    def effective_activation(self) -> str:
        """The activation of INSTA stages (stages before ``effective_first_insta_stage`` use RPReLU)."""
        return self.activation or VARIANT_MODULES[self.variant][1]

    def modules_at(self, insta_stage: bool) -> tuple[str, str]:
        """(binarizer, activation) of a block; an INSTA module outside the INSTA stages falls back to
        baseline_threshold / rprelu, a non-INSTA choice holds everywhere."""
        binarizer, activation = self.effective_binarizer, self.effective_activation
        if not insta_stage:
            binarizer = self.baseline_threshold if binarizer in INSTA_BINARIZERS else binarizer
            activation = "rprelu" if activation in INSTA_ACTIVATIONS else activation
        return binarizer, activation

    @property
    def effective_first_insta_stage(self) -> int:
        if self.first_insta_stage is not None:
            return self.first_insta_stage
        return LATENCY_FIRST_INSTA_STAGE[self.arch] if self.variant == "latency_optimized" else 0

    @property
    def effective_stats_reuse(self) -> str:
        if self.variant == "latency_optimized" and self.stats_reuse == "none":
            return "auto"
        return self.stats_reuse

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "NetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "NetConfig":
        return dataclasses.replace(self, **changes)
