"""The integer network: the layers of :mod:`instabnn.contract.layers` in dataflow order.

    image q0 (input_bits, 2^input_exp) -> stem: int conv -> AffineRequant -> q
    block: q -> threshold unit -> bits -> binary conv (pad -1) -> acc
             q -> shortcut (identity | pool sum | pool sum -> int 1x1 conv | option A) -> sc
             ResidualActivation(acc, sc, stat input) -> q'
    head:  q -> Classifier (global sum, 8-bit weights) -> integer logits

Both routes to these constants build this object: the lowering of an exported QONNX graph
(:mod:`instabnn.hw.lower`) and the hardware-exact PyTorch mode (:mod:`instabnn.model.hardware_exact`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from instabnn.contract import layers as L
from instabnn.contract.insta import InstaThConstants


@dataclass
class Shortcut:
    kind: str  # "identity" | "pool" | "proj" | "option_a"
    pool: int = 1
    weight: np.ndarray | None = field(default=None, repr=False)  # proj: (Cout, Cin, 1, 1) int
    channel_pad: tuple[int, int] = (0, 0)  # option A: zero channels before / after

    def __call__(self, q: np.ndarray) -> np.ndarray:
        if self.kind == "option_a":
            v = q[:, :, ::self.pool, ::self.pool]
            return np.pad(v, ((0, 0), self.channel_pad, (0, 0), (0, 0)))
        v = L.pool_sum(q, self.pool) if self.pool > 1 else np.asarray(q, np.int64)
        if self.kind == "proj":
            return L.int_conv(v, self.weight, 1, 1, 0)
        return v


@dataclass
class Block:
    name: str
    threshold: InstaThConstants | L.ThresholdPlus
    weight_bits: np.ndarray = field(repr=False)  # (Cout, Cin, K, K) in {0, 1}
    stride: int
    pad: int
    shortcut: Shortcut
    tail: L.ResidualActivation

    @property
    def kernel(self) -> int:
        return self.weight_bits.shape[-1]

    def __call__(self, q: np.ndarray, trace: dict | None = None) -> np.ndarray:
        bits = L.binarize(q, self.threshold)
        acc = L.binary_conv(bits, self.weight_bits, self.kernel, self.stride, self.pad)
        out = self.tail(acc, self.shortcut(q), q if self.tail.stat_source == "reuse" else None)
        if trace is not None:
            trace[f"{self.name}.bits"], trace[f"{self.name}.acc"], trace[f"{self.name}.out"] = bits, acc, out
        return out


@dataclass
class IntegerNetwork:
    input_exp: int
    input_bits: int
    stem_weight: np.ndarray = field(repr=False)  # (C, Cin, K, K) int
    stem_stride: int
    stem_pad: int
    stem_requant: L.AffineRequant
    blocks: list[Block]
    classifier: L.Classifier
    origin: dict = field(default_factory=dict, repr=False)  # block name -> source tensors (set by the lowering)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """The image quantizer (host side): clamp(round_half_even(x / 2^e))."""
        return L.quantize_int(x, np.float32(2.0 ** self.input_exp), self.input_bits, narrow=False)

    def stem(self, q0: np.ndarray) -> np.ndarray:
        acc = L.int_conv(q0, self.stem_weight, self.stem_weight.shape[-1], self.stem_stride, self.stem_pad)
        return self.stem_requant(acc)

    def run(self, q0: np.ndarray, trace: dict | None = None) -> np.ndarray:
        """Integer logits (frames x classes) of integer images q0."""
        q = self.stem(np.asarray(q0, np.int64))
        if trace is not None:
            trace["stem.out"] = q
        for block in self.blocks:
            q = block(q, trace)
        return self.classifier(q)


@dataclass
class ChainStage:
    """One layer of a plain W1A1 network: binary-weight conv (dense = 1x1 on a 1x1 frame) of bits or, first,
    of integers; then BN + sign as thresholds (weight rows of negative BN gain are stored negated) and an optional
    max-pool of the bits (an OR), or, last, the integer accumulator itself."""

    name: str
    weight_bits: np.ndarray = field(repr=False)  # (Cout, Cin, K, K) in {0, 1}
    stride: int
    thresholds: np.ndarray | None = field(repr=False)  # (Cout,) or None for the last layer
    pool: int = 1

    def __call__(self, x: np.ndarray, integer_input: bool) -> np.ndarray:
        k = self.weight_bits.shape[-1]
        if integer_input:
            acc = L.int_conv(x, 2 * self.weight_bits.astype(np.int64) - 1, k, self.stride, 0)
        else:
            acc = L.binary_conv(x, self.weight_bits, k, self.stride, 0)
        if self.thresholds is None:
            return acc
        bits = (acc >= self.thresholds[None, :, None, None]).astype(np.uint8)
        if self.pool > 1:
            f, c, h, w = bits.shape
            p = self.pool
            bits = bits[:, :, :h // p * p, :w // p * p].reshape(f, c, h // p, p, w // p, p).max(axis=(3, 5))
        return bits


@dataclass
class BinaryChainNetwork:
    """A plain W1A1 network (Brevitas bnn_pynq TFC/SFC/LFC/CNV style): host preprocessing + input quantizer, then
    ChainStages, then AffineLogits. ``input_bits`` 1 means the input is binarized (bits)."""

    preprocess: list[tuple[str, float]]  # ("reshape", 0) | ("mul"|"add"|"sub"|"div", constant), in order
    input_exp: int
    input_bits: int
    stages: list[ChainStage]
    logits: L.AffineLogits
    input_shape: tuple[int, ...] = ()
    origin: dict = field(default_factory=dict, repr=False)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        for op, c in self.preprocess:
            c = np.float32(c)
            x = {"mul": lambda v: v * c, "add": lambda v: v + c, "sub": lambda v: v - c, "div": lambda v: v / c,
                 "reshape": lambda v: v.reshape(len(v), -1, 1, 1)}[op](x)
        if x.ndim == 2:
            x = x.reshape(len(x), -1, 1, 1)
        if self.input_bits == 1:
            return (x >= 0).astype(np.uint8)
        return L.quantize_int(x, np.float32(2.0 ** self.input_exp), self.input_bits, narrow=False)

    def run(self, q0: np.ndarray, trace: dict | None = None) -> np.ndarray:
        x = q0
        for i, stage in enumerate(self.stages):
            if x.shape[2:] != (1, 1) and stage.weight_bits.shape[-1] == 1 and stage.weight_bits.shape[1] != x.shape[1]:
                x = x.reshape(len(x), -1, 1, 1)  # flatten before a dense layer (NCHW order, as Reshape does)
            x = stage(x, integer_input=(i == 0 and self.input_bits > 1))
            if trace is not None:
                trace[f"{stage.name}.out"] = x
        return self.logits(x)
