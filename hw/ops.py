"""FINN hardware custom ops of the lowered graph, in the project's ONNX domain ``instabnn.hw.ops``.

Each node is one hardware layer of the arithmetic contract (:mod:`instabnn.contract.layers`); its
``execute_node`` rebuilds the layer's fixed constants from the node and calls the contract's function, so executing
the lowered graph with qonnx (``execute_onnx``) *is* the golden reference. The classes subclass FINN's
``HWCustomOp`` (shapes, stream widths, expected cycles at the folding in the node's ``PE`` / ``SIMD``).

    ChainLayer          bits|q -> bits|acc plain W1A1 layer: binary-weight conv/dense, BN-sign thresholds, max-pool
    AffineLogits        acc -> logits      the last W1A1 layer's affine map, integer logits
    StemConv            q0 -> q            8-bit conv + BN requant (AffineRequant)
    ThresholdUnit       q -> bits          RSign / INSTA-Th (InstaThConstants) or INSTA-Th+ (ThresholdPlus)
    BinaryConv          bits -> acc        XNOR-popcount convolution, padding with -1
    ShortcutPath        q -> sc            average-pool sum, 1x1 int8 projection, or option A
    ResidualActivation  acc, sc[, q] -> q' BN + shortcut add + RPReLU / INSTA-PReLU(+) + requant
    Classifier          q -> logits        global sum + int8 linear, integer logits

Tensors are NCHW integers (int64 in execution); bits are 0/1 with 1 <-> +1. A layer's constants are stored as
int64 initializers (one per array field, named ``<node>.<field>``) and its scalar formats as the JSON attribute
``scalars``; :func:`pack` and :func:`unpack` are the one serialization of every contract dataclass.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from qonnx.core.datatype import DataType

from instabnn.contract import layers as L
from instabnn.contract import network as N
from instabnn.contract.insta import InstaThConstants

DOMAIN = "instabnn.hw.ops"

__all__ = ["StemConv", "ThresholdUnit", "BinaryConv", "ShortcutPath", "ResidualActivation", "Classifier",
           "ChainLayer", "AffineLogits"]

CLASSES = {c.__name__: c for c in (L.AffineRequant, InstaThConstants, L.ThresholdPlus, L.MomentPolynomial,
                                   L.SeMlpFixed, L.ResidualActivation, L.Classifier, N.Shortcut, N.ChainStage,
                                   L.AffineLogits)}


# ------------------------------------------------------------------------------------------ serialization


def pack(obj, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """(scalars, arrays) of a contract dataclass, nested ones flattened as ``field.subfield``."""
    scalars = {f"{prefix}__class__": type(obj).__name__}
    arrays = {}
    for f in dataclasses.fields(obj):
        v, key = getattr(obj, f.name), prefix + f.name
        if v is None:
            continue
        if dataclasses.is_dataclass(v):
            s, a = pack(v, key + ".")
            scalars.update(s)
            arrays.update(a)
        elif isinstance(v, np.ndarray):
            arrays[key] = np.asarray(v, np.int64)
        elif isinstance(v, tuple) and v and isinstance(v[0], tuple):
            arrays[key] = np.asarray(v, np.int64)
            scalars[key + ".__tuple__"] = 2
        elif isinstance(v, tuple):
            scalars[key] = [int(x) for x in v]
            scalars[key + ".__tuple__"] = 1
        elif isinstance(v, (bool, int, np.integer)):
            scalars[key] = int(v)
        elif isinstance(v, (float, str)):
            scalars[key] = v
        else:
            raise TypeError(f"cannot serialize field {key} of type {type(v).__name__}")
    return scalars, arrays


def unpack(scalars: dict, arrays: dict[str, np.ndarray], prefix: str = ""):
    cls = CLASSES[scalars[f"{prefix}__class__"]]
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f"{key}.__class__" in scalars:
            kwargs[f.name] = unpack(scalars, arrays, key + ".")
        elif key in arrays:
            v = np.asarray(arrays[key], np.int64)
            kwargs[f.name] = tuple(tuple(int(x) for x in row) for row in v) if scalars.get(key + ".__tuple__") == 2 \
                else v
        elif key in scalars:
            v = scalars[key]
            kwargs[f.name] = tuple(v) if scalars.get(key + ".__tuple__") == 1 else v
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = None
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------ op base


class InstaHwOp(HWCustomOp):
    """Common body: attributes, shapes and widths from the node; constants from its initializer inputs."""

    data_inputs = 1

    def get_nodeattr_types(self):
        attrs = super().get_nodeattr_types()
        attrs.update({
            "scalars": ("s", True, "{}"),  # the layer's formats (JSON), see pack()
            "const_names": ("strings", False, []),  # field of each constant input, in order
            "in_shapes": ("ints", True, []),  # concatenated NCHW shapes of the data inputs (4 ints each)
            "out_shape": ("ints", True, []),
            "in_bits": ("ints", True, []),
            "out_bits": ("i", True, 1),
            "PE": ("i", False, 1),
            "SIMD": ("i", False, 1),
        })
        return attrs

    # -- layer constants
    def layer(self, context):
        node = self.onnx_node
        names = self.get_nodeattr("const_names")
        arrays = {f: context[t] for f, t in zip(names, node.input[self.data_inputs:])}
        return unpack(json.loads(self.get_nodeattr("scalars")), arrays)

    def inputs(self, context) -> list[np.ndarray]:
        return [np.rint(np.asarray(context[t], np.float64)).astype(np.int64) if context[t].dtype.kind == "f"
                else np.asarray(context[t], np.int64) for t in self.onnx_node.input[:self.data_inputs] if t]

    def execute_node(self, context, graph):
        out = np.asarray(self.compute(self.layer(context), *self.inputs(context)), np.int64)
        bits = self.get_nodeattr("out_bits")
        lo, hi = (0, 1) if bits == 1 else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        if out.size and (out.min() < lo or out.max() > hi):
            raise L.ContractError(f"node {self.onnx_node.name} ({self.onnx_node.op_type}): output values "
                                  f"[{out.min()}, {out.max()}] exceed its declared {bits}-bit width")
        context[self.onnx_node.output[0]] = out

    def compute(self, layer, *inputs):
        raise NotImplementedError

    # -- FINN interface
    def get_normal_input_shape(self, ind=0):
        s = self.get_nodeattr("in_shapes")
        return tuple(s[4 * ind:4 * ind + 4])

    def get_normal_output_shape(self, ind=0):
        return tuple(self.get_nodeattr("out_shape"))

    matrix = False  # a matrix unit folds input channels by SIMD and output channels by PE; element-wise units by PE

    @property
    def in_fold(self) -> str:
        return "SIMD" if self.matrix else "PE"

    def get_folded_input_shape(self, ind=0):
        n, c, h, w = self.get_normal_input_shape(ind)
        fold = self.get_nodeattr(self.in_fold)
        return (n, h, w, c // fold, fold)

    def get_folded_output_shape(self, ind=0):
        n, c, h, w = self.get_normal_output_shape()
        fold = self.get_nodeattr("PE")
        return (n, h, w, c // fold, fold)

    def get_input_datatype(self, ind=0):
        bits = self.get_nodeattr("in_bits")[ind]
        return DataType["BINARY"] if bits == 1 else DataType[f"INT{bits}"]

    def get_output_datatype(self, ind=0):
        bits = self.get_nodeattr("out_bits")
        return DataType["BINARY"] if bits == 1 else DataType[f"INT{bits}"]

    def get_instream_width(self, ind=0):
        return self.get_nodeattr("in_bits")[ind] * self.get_nodeattr(self.in_fold)

    def get_outstream_width(self, ind=0):
        return self.get_nodeattr("out_bits") * self.get_nodeattr("PE")

    def get_exp_cycles(self):
        n, c, h, w = self.get_normal_input_shape()
        return h * w * (c // self.get_nodeattr(self.in_fold))

    def fold_options(self) -> dict[str, int]:
        """The dimension each folding attribute must divide."""
        if self.matrix:
            return {"SIMD": self.get_normal_input_shape()[1], "PE": self.get_normal_output_shape()[1]}
        return {"PE": self.get_normal_input_shape()[1]}

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], self.get_output_datatype())

    def make_shape_compatible_op(self, model):
        return self.make_const_shape_op(self.get_normal_output_shape())

    def verify_node(self):
        if len(self.onnx_node.input) != self.data_inputs + len(self.get_nodeattr("const_names")):
            raise ValueError(f"{self.onnx_node.name}: inputs do not match const_names")


class ConvolutionOp(InstaHwOp):
    """A sliding window feeding an MVU: K*K*Cin/SIMD x Cout/PE cycles per output pixel."""

    matrix = True

    def conv_params(self) -> dict:
        s = json.loads(self.get_nodeattr("scalars"))
        return s.get("conv", s)

    def get_exp_cycles(self):
        n, c, h, w = self.get_normal_output_shape()
        cin = self.get_normal_input_shape()[1]
        k = self.conv_params()["kernel"]
        return h * w * (k * k * cin // self.get_nodeattr("SIMD")) * (c // self.get_nodeattr("PE"))


class StemConv(ConvolutionOp):
    """8-bit convolution (zero padding) then AffineRequant; attributes kernel/stride/pad in ``scalars["conv"]``."""

    def layer(self, context):
        s = json.loads(self.get_nodeattr("scalars"))
        names = self.get_nodeattr("const_names")
        arrays = {f: context[t] for f, t in zip(names, self.onnx_node.input[1:])}
        return s["conv"], arrays["weight"], unpack(s, arrays)

    def compute(self, layer, q0):
        conv, weight, requant = layer
        return requant(L.int_conv(q0, weight, weight.shape[-1], conv["stride"], conv["pad"]))


class ThresholdUnit(InstaHwOp):
    def compute(self, unit, q):
        return L.binarize(q, unit)


class BinaryConv(ConvolutionOp):
    """XNOR-popcount convolution of bits, padding with -1; kernel/stride/pad in ``scalars``."""

    def layer(self, context):
        s = json.loads(self.get_nodeattr("scalars"))
        return s, np.asarray(context[self.onnx_node.input[1]], np.int64)

    def compute(self, layer, bits):
        s, weight = layer
        return L.binary_conv(bits, weight, weight.shape[-1], s["stride"], s["pad"])


class ShortcutPath(InstaHwOp):
    """Pool sums (element-wise rate, PE channels per beat) or a 1x1 projection (SIMD x PE MVU) of the input."""

    def compute(self, shortcut, q):
        return shortcut(q)

    @property
    def matrix(self) -> bool:
        return json.loads(self.get_nodeattr("scalars")).get("kind") == "proj"

    def get_exp_cycles(self):
        if not self.matrix:
            return super().get_exp_cycles()
        _, cin, hin, win = self.get_normal_input_shape()
        _, c, h, w = self.get_normal_output_shape()
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        return max(hin * win * (cin // simd), h * w * (cin // simd) * (c // pe))  # pool sums, then the MVU


class ResidualActivation(InstaHwOp):
    """Inputs acc, sc and (statistics reuse) the block input q."""

    data_inputs = 3

    def compute(self, tail, acc, sc, q=None):
        return tail(acc, sc, q)

    def get_exp_cycles(self):
        n, c, h, w = self.get_normal_output_shape()
        return h * w * (c // self.get_nodeattr("PE"))


class Classifier(InstaHwOp):
    """Global sum (SIMD channels per beat) then the int8 MVU (SIMD x PE): the slower of the two sets the rate."""

    matrix = True

    def compute(self, head, q):
        return head(q)

    def get_exp_cycles(self):
        n, c, h, w = self.get_normal_input_shape()
        classes = self.get_normal_output_shape()[1]
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        return max(h * w * (c // simd), (c // simd) * (classes // pe))

    def get_folded_output_shape(self, ind=0):
        n, k = self.get_normal_output_shape()
        return (n, k // self.get_nodeattr("PE"), self.get_nodeattr("PE"))


class ChainLayer(InstaHwOp):
    """A plain W1A1 layer (:class:`~instabnn.contract.network.ChainStage`); scalar ``integer_input`` marks the
    first layer of an integer-input network. A matrix unit: SIMD input elements (dividing the input channels) x PE
    output channels per beat."""

    matrix = True

    def get_exp_cycles(self):
        """Clocks per frame of the layer's blocks as the compiler builds them (``hw/compile_chain.py``): the MVU
        (vectors x SF x NF), the sliding window (the larger of its input and output beats) and the bit max-pool
        (its input beats), whichever is slowest."""
        s = json.loads(self.get_nodeattr("scalars"))
        if "kernel" not in s:
            raise ValueError(f"node {self.onnx_node.name}: no kernel size in its scalars (lowered by an older "
                             f"version); lower the model again")
        _, cin, h, w = self.get_normal_input_shape()
        _, cout, oh, ow = self.get_normal_output_shape()
        k, stride, pool = s["kernel"], s.get("stride", 1), s.get("pool", 1)
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        if k == 1 and (h, w) != (1, 1) and (oh, ow) == (1, 1) and pool == 1:  # dense layer after a frame
            return (cin * h * w // simd) * (cout // pe)
        if k == 1 and stride == 1:  # pointwise: one vector per pixel
            vectors, width = h * w, cin
            cycles = [vectors * (width // simd) * (cout // pe)]
        else:
            vectors = ((h - k) // stride + 1) * ((w - k) // stride + 1)
            cycles = [vectors * (k * k * cin // simd) * (cout // pe),
                      max(h * w * cin // simd, vectors * k * k * cin // simd)]
        if pool > 1:
            cycles.append(vectors * cout // pe)
        return max(cycles)

    def compute(self, stage, x):
        integer_input = bool(json.loads(self.get_nodeattr("scalars")).get("integer_input", 0))
        if x.shape[2:] != (1, 1) and stage.weight_bits.shape[-1] == 1 and stage.weight_bits.shape[1] != x.shape[1]:
            x = x.reshape(len(x), -1, 1, 1)
        return stage(x, integer_input)


class AffineLogits(InstaHwOp):
    """The logits' per-class scale and bias (``channel_affine``), PE classes per beat."""

    def compute(self, logits, acc):
        return logits(acc)

    def get_exp_cycles(self):
        return self.get_normal_output_shape()[1] // self.get_nodeattr("PE")

    def fold_options(self) -> dict[str, int]:
        return {"PE": self.get_normal_output_shape()[1]}

    def get_folded_output_shape(self, ind=0):
        n, k = self.get_normal_output_shape()
        return (n, k // self.get_nodeattr("PE"), self.get_nodeattr("PE"))
