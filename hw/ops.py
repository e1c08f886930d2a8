"""FINN hardware custom ops of the lowered graph, in the project's ONNX domain ``instabnn.hw.ops``.

Each node is one hardware layer of the arithmetic contract (:mod:`instabnn.contract.layers`); its
``execute_node`` rebuilds the layer's fixed constants from the node and calls the contract's function, so executing
the lowered graph with qonnx (``execute_onnx``) *is* the golden reference. The classes subclass FINN's
``HWCustomOp`` (shapes, stream widths, expected cycles at the folding in the node's ``PE`` / ``SIMD``).

Each op owns its blocks: :meth:`InstaHwOp.blocks` builds the specs of the RTL blocks the node lowers to (from its
attributes, its constants and its neighbours, so the op must be bound to its graph: :func:`hw_op`), the compiler
instantiates exactly those, and ``get_exp_cycles`` is the slowest of their cycles per frame: folding, the compiler
and the reports use one model. The folding knobs beyond PE / SIMD (``LIMBS``, ``SE_SIMD``, and ``ram_style`` of a
binary MVU's weight memory) are node attributes that ``hw/compile/folding.py`` chooses
(:meth:`InstaHwOp.knob_options` lists the legal values).

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
import math
from dataclasses import dataclass

import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from qonnx.core.datatype import DataType

from instabnn.contract import layers as L
from instabnn.contract import network as N
from instabnn.contract.fixed_point import signed_bits
from instabnn.contract.insta import InstaThConstants, power_sum_bits
from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape
from instabnn.hw.blocks.channel_affine.spec import ChannelAffineSpec
from instabnn.hw.blocks.common.mvu_folding import MvuFolding
from instabnn.hw.blocks.common.resources import RAM_STYLES
from instabnn.hw.blocks.insta_tail.spec import InstaTailSpec
from instabnn.hw.blocks.insta_threshold.spec import InstaThresholdSpec, limbs_by_cost
from instabnn.hw.blocks.insta_threshold.spec_plus import InstaThresholdPlusSpec
from instabnn.hw.blocks.int_mvu.spec import IntMvuShape
from instabnn.hw.blocks.maxpool_bits.spec import MaxPoolBitsSpec
from instabnn.hw.blocks.pool.spec import GlobalSumSpec, PoolSumSpec
from instabnn.hw.blocks.residual_tail.spec import ResidualTailSpec
from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape

DOMAIN = "instabnn.hw.ops"

__all__ = ["hw_op", "Block", "StemConv", "ThresholdUnit", "BinaryConv", "ShortcutPath", "ResidualActivation", "Classifier",
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


# ------------------------------------------------------------------------------------------ block specs


@dataclass(frozen=True)
class Block:
    """One RTL block an op lowers to: its library module, its spec (the block's one source of widths, cycles and
    latency) and, for blocks whose spec counts per vector or per pixel, the vectors (pixels) of a frame."""

    module: str
    spec: object
    vectors: int = 1

    @property
    def cycles_per_frame(self) -> int:
        """Clocks per frame in steady state: an MVU's ``SF * NF`` per vector, a channel affine's ``C / PE`` per
        pixel, the others' own ``cycles_per_frame`` (rounded up where a unit alternates between two periods)."""
        if isinstance(self.spec, MvuFolding):
            return self.vectors * self.spec.cycles_per_vector
        if isinstance(self.spec, ChannelAffineSpec):
            return self.spec.cycles_per_frame(self.vectors)
        return math.ceil(self.spec.cycles_per_frame)

    @property
    def latency(self) -> int:
        """The spec's latency (edges; see each block's spec for where it is measured from)."""
        return int(self.spec.latency)

    @property
    def beat_latency(self) -> int:
        """Edges from a beat's input to its output at full rate: a frame-buffered unit's ``beat_latency`` (one
        frame more than its latency), the latency of the others."""
        return int(getattr(self.spec, "beat_latency", self.spec.latency))


def weight_bits(w: np.ndarray) -> int:
    """Signed width of an integer weight matrix (at least 2)."""
    return max(2, signed_bits(int(w.min()), int(w.max())))


def limbs_options(poly) -> list[int]:
    """Legal LIMBS of a unit whose power sums are those of ``poly`` (its ``input_bits`` over ``pixels``)."""
    return list(range(1, max(power_sum_bits(poly.input_bits, poly.pixels)) + 1))


def se_simd_options(se) -> list[int]:
    """Legal SE_SIMD of an SE-like MLP ``se``: the divisors of gcd(channels, hidden units), fewest first."""
    hidden, channels = np.asarray(se.w1).shape
    common = math.gcd(channels, hidden)
    return [d for d in range(1, common + 1) if common % d == 0]


def hw_op(model, node):
    """The op of ``node`` bound to ``model`` (a qonnx ModelWrapper): building its block specs reads the node's
    constants and its neighbours from the graph."""
    from qonnx.custom_op.registry import getCustomOp

    op = getCustomOp(node)
    op.model = model
    return op


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
            # folding knobs of the units that have them (knob_options), chosen by hw/compile/folding.py; 0: not chosen
            "LIMBS": ("i", False, 0),
            "SE_SIMD": ("i", False, 0),
            # the weight memory of a binary MVU (FINN's ram_style, RAM_STYLES); "": not chosen, "auto"
            "ram_style": ("s", False, ""),
        })
        return attrs

    # -- the graph around the node (hw_op binds it)
    model = None
    _stream_bits = None  # data input -> its stream's lane width (input_stream_bits), found once per op

    def graph(self):
        if self.model is None:
            raise ValueError(f"node {self.onnx_node.name}: building its block specs needs the graph (constants and "
                             f"neighbours): get the op with instabnn.hw.ops.hw_op(model, node)")
        return self.model

    def constants(self) -> dict[str, np.ndarray]:
        """The node's constant inputs (initializers of the graph) by field name."""
        names = self.get_nodeattr("const_names")
        return {f: np.asarray(self.graph().get_initializer(t), np.int64)
                for f, t in zip(names, self.onnx_node.input[self.data_inputs:])}

    def contract_layer(self):
        """The node's contract object (its scalars and constants, :func:`unpack`; read once per op)."""
        if self._layer is None:
            self._layer = unpack(json.loads(self.get_nodeattr("scalars")), self.constants())
        return self._layer

    _layer = None

    def neighbour(self, node) -> InstaHwOp:
        return hw_op(self.graph(), node)

    def input_stream_bits(self, index: int = 0) -> int:
        """Lane width of the stream that carries data input ``index`` in the compiled design: the producer's
        output stream, or, where a threshold unit also reads the tensor, the unit's buffered ``q`` output (the
        compiler gives it to every other reader but a tail reusing the statistics); the image's width for the
        graph input."""
        if self._stream_bits is None:
            self._stream_bits = {}
        if index not in self._stream_bits:  # widths do not depend on the folding: found once per op
            self._stream_bits[index] = self.find_input_stream_bits(index)
        return self._stream_bits[index]

    def find_input_stream_bits(self, index: int) -> int:
        model, tensor = self.graph(), self.onnx_node.input[index]
        producer = model.find_producer(tensor)
        if producer is None:
            return self.neighbour(model.graph.node[0]).get_nodeattr("in_bits")[0]
        statistics = self.onnx_node.op_type == "ResidualActivation" and index == 2
        units = [r for r in model.find_consumers(tensor) if r.op_type == "ThresholdUnit"]
        if units and self.onnx_node.op_type != "ThresholdUnit" and not statistics:
            return int(self.neighbour(units[0]).contract_layer().input_bits)
        return self.neighbour(producer).out_stream_bits()

    # -- the blocks the node lowers to (the compiler instantiates them; folding and reports count their cycles)
    def blocks(self) -> list[Block]:
        """The RTL blocks of this node at its folding, in dataflow order, each with its spec."""
        raise NotImplementedError(f"node {self.onnx_node.name}: op {self.onnx_node.op_type} has no RTL blocks")

    def out_stream_bits(self) -> int:
        """Lane width of the stream the node's last block emits."""
        raise NotImplementedError(f"node {self.onnx_node.name}: op {self.onnx_node.op_type} has no RTL blocks")

    def knob_options(self) -> dict[str, list[int]]:
        """The folding knobs beyond PE / SIMD this node has (``LIMBS``, ``SE_SIMD``) and their legal values."""
        return {}

    def knob_candidates(self) -> dict[str, list[int]]:
        """Per knob, the values folding chooses from, cheapest first (hw/compile/folding.py ``choose_knobs``)."""
        return {}

    def folded_spec(self, build, **folding):
        """``build()``'s spec with ``folding`` (pe, knobs) replaced in: ``build`` (which derives the widths from the
        constants, the slow part, and none of them from the folding) runs once per op."""
        if self._base_spec is None:
            self._base_spec = build()
        return dataclasses.replace(self._base_spec, **folding)

    _base_spec = None

    def knob(self, name: str) -> int:
        """A knob's value as folded (ValueError naming the node where it was not chosen or is not legal)."""
        value = self.get_nodeattr(name)
        legal = self.knob_options()[name]
        if value in (0, ""):
            raise ValueError(f"node {self.onnx_node.name}: no {name} chosen (fold the graph: python -m "
                             f"instabnn.hw.compile.folding)")
        if value not in legal:
            raise ValueError(f"node {self.onnx_node.name}: {name} = {value} is not one of {legal}")
        return value

    def weight_ram_style(self) -> str:
        """The MVU weight memory's style (knob ``ram_style``): ``auto`` where none was chosen (the style changes no
        cycle count, so folding reads the cycles before choosing it), else the chosen one, checked."""
        return self.knob("ram_style") if self.get_nodeattr("ram_style") else "auto"

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
        """Clocks per frame: the slowest of the node's blocks (:meth:`blocks`), the compiler's figure too."""
        return max((b.cycles_per_frame for b in self.blocks()), default=0)

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

    def window_and_mvu(self, make_mvu) -> list[Block]:
        """The sliding window over the input and the MVU ``make_mvu(mw, elem_bits)`` it feeds."""
        _, cin, h, w = self.get_normal_input_shape()
        conv, k = self.conv_params(), self.constants()["weight"].shape[-1]
        bits = self.input_stream_bits()
        swg = SlidingWindowShape(cin, h, w, k, conv["stride"], conv["pad"], self.get_nodeattr("SIMD"), bits, 0)
        return [Block("sliding_window", swg), Block(self.mvu_module, make_mvu(swg.mw, bits),
                                                    swg.out_height * swg.out_width)]


class StemConv(ConvolutionOp):
    """8-bit convolution (zero padding) then AffineRequant; attributes kernel/stride/pad in ``scalars["conv"]``."""

    mvu_module = "int_mvu"

    def layer(self, context):
        s = json.loads(self.get_nodeattr("scalars"))
        names = self.get_nodeattr("const_names")
        arrays = {f: context[t] for f, t in zip(names, self.onnx_node.input[1:])}
        return s["conv"], arrays["weight"], unpack(s, arrays)

    def compute(self, layer, q0):
        conv, weight, requant = layer
        return requant(L.int_conv(q0, weight, weight.shape[-1], conv["stride"], conv["pad"]))

    def blocks(self) -> list[Block]:
        """sliding_window -> int_mvu -> channel_affine (the requantization)."""
        cout, simd, pe = self.get_normal_output_shape()[1], self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        wbits = weight_bits(self.constants()["weight"])
        window, mvu = self.window_and_mvu(lambda mw, bits: IntMvuShape(mw, cout, simd, pe, wbits, bits, 1, 0))
        affine = ChannelAffineSpec.from_requant(self.contract_layer(), mvu.spec.acc_bits, pe)
        return [window, mvu, Block("channel_affine", affine, mvu.vectors)]

    def out_stream_bits(self) -> int:
        return self.blocks()[-1].spec.out_bits


class ThresholdUnit(InstaHwOp):
    """RSign (a static insta_threshold), INSTA-Th (knob LIMBS) or INSTA-Th+ (knob SE_SIMD)."""

    def compute(self, unit, q):
        return L.binarize(q, unit)

    @staticmethod
    def static(consts) -> bool:
        return isinstance(consts, InstaThConstants) and not any(any(c) for c in consts.coeffs[1:])

    def knob_options(self) -> dict[str, list[int]]:
        consts = self.contract_layer()
        if self.static(consts):
            return {}
        if isinstance(consts, InstaThConstants):  # limbs of the power sums in the sequencer's multiplier
            return {"LIMBS": limbs_options(consts)}
        return {"SE_SIMD": se_simd_options(consts.se)}  # multipliers of the SE-like MLP

    def knob_candidates(self) -> dict[str, list[int]]:
        options, consts = self.knob_options(), self.contract_layer()
        if "LIMBS" in options:
            return {"LIMBS": limbs_by_cost(power_sum_bits(consts.input_bits, consts.pixels))}
        return options  # SE_SIMD: fewest multipliers first

    def shortcut(self) -> int:
        """1 where another reader (not a tail reusing the statistics) takes the unit's buffered q output."""
        q = self.onnx_node.input[0]
        return int(any(r.name != self.onnx_node.name and t == q and not (r.op_type == "ResidualActivation" and i == 2)
                       for r in self.graph().find_consumers(q) for i, t in enumerate(r.input)))

    def blocks(self) -> list[Block]:
        consts, pe = self.contract_layer(), self.get_nodeattr("PE")
        if isinstance(consts, InstaThConstants):
            static = self.static(consts)
            spec = self.folded_spec(lambda: InstaThresholdSpec.from_constants(consts, pe, static=int(static),
                                                                              shortcut=self.shortcut()),
                                    pe=pe, limbs=1 if static else self.knob("LIMBS"))
        else:
            spec = self.folded_spec(lambda: InstaThresholdPlusSpec.from_constants(consts, pe, shortcut=self.shortcut()),
                                    pe=pe, se_simd=self.knob("SE_SIMD"))
        return [Block("insta_threshold", spec)]

    def out_stream_bits(self) -> int:
        return 1


class BinaryConv(ConvolutionOp):
    """XNOR-popcount convolution of bits, padding with -1; kernel/stride/pad in ``scalars``."""

    mvu_module = "binary_mvu"

    def layer(self, context):
        s = json.loads(self.get_nodeattr("scalars"))
        return s, np.asarray(context[self.onnx_node.input[1]], np.int64)

    def compute(self, layer, bits):
        s, weight = layer
        return L.binary_conv(bits, weight, weight.shape[-1], s["stride"], s["pad"])

    def input_stream_bits(self, index: int = 0) -> int:
        return 1

    def knob_options(self) -> dict[str, list]:
        return {"ram_style": list(RAM_STYLES)}

    def blocks(self) -> list[Block]:
        """sliding_window (pad code 0 = -1) -> binary_mvu (accumulators)."""
        cout, simd, pe = self.get_normal_output_shape()[1], self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        style = self.weight_ram_style()
        return self.window_and_mvu(lambda mw, bits: BinaryMvuShape(mw, cout, simd, pe, 0, style))

    def out_stream_bits(self) -> int:
        return self.blocks()[-1].spec.acc_bits


class ShortcutPath(InstaHwOp):
    """Pool sums (element-wise rate, PE channels per beat) or a 1x1 projection (SIMD x PE MVU) of the input."""

    def compute(self, shortcut, q):
        return shortcut(q)

    @property
    def matrix(self) -> bool:
        return json.loads(self.get_nodeattr("scalars")).get("kind") == "proj"

    def blocks(self) -> list[Block]:
        """pool_sum (pool > 1) and / or int_mvu (1x1 projection); option A has no RTL block yet."""
        shortcut = self.contract_layer()
        if shortcut.kind not in ("pool", "proj"):
            raise ValueError(f"shortcut kind {shortcut.kind!r} has no RTL block yet (pool and 1x1 projection do)")
        _, cin, h, w = self.get_normal_input_shape()
        _, cout, oh, ow = self.get_normal_output_shape()
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        lanes, bits, blocks = simd if self.matrix else pe, self.input_stream_bits(), []
        if shortcut.pool > 1:
            blocks.append(Block("pool_sum", PoolSumSpec(cin, lanes, h, w, bits, shortcut.pool)))
            bits = blocks[-1].spec.out_bits
        if self.matrix:
            mvu = IntMvuShape(cin, cout, simd, pe, weight_bits(self.constants()["weight"]), bits, 1, 0)
            blocks.append(Block("int_mvu", mvu, oh * ow))
        return blocks

    def out_stream_bits(self) -> int:
        blocks = self.blocks()
        if not blocks:
            return self.input_stream_bits()
        spec = blocks[-1].spec
        return spec.acc_bits if isinstance(spec, IntMvuShape) else spec.out_bits


class ResidualActivation(InstaHwOp):
    """Inputs acc, sc and (statistics reuse) the block input q: residual_tail (RPReLU) or insta_tail
    (INSTA-PReLU: knob LIMBS; INSTA-PReLU+: knob SE_SIMD)."""

    data_inputs = 3

    def compute(self, tail, acc, sc, q=None):
        return tail(acc, sc, q)

    def knob_options(self) -> dict[str, list[int]]:
        act = self.contract_layer()
        if act.act != "insta":
            return {}
        if act.poly is None:
            raise ValueError(f"node {self.onnx_node.name}: an INSTA-PReLU tail without its statistic polynomial")
        return {"LIMBS": limbs_options(act.poly)} if act.se is None else {"SE_SIMD": se_simd_options(act.se)}

    def knob_candidates(self) -> dict[str, list[int]]:
        options, poly = self.knob_options(), self.contract_layer().poly
        if "LIMBS" in options:
            return {"LIMBS": limbs_by_cost(power_sum_bits(poly.input_bits, poly.pixels))}
        return options

    def accumulator_bound(self) -> int:
        """|acc| bound: the vector length of the binary convolution that produces input 0."""
        if self._acc_bound is None:
            producer = self.graph().find_producer(self.onnx_node.input[0])
            if producer is None or producer.op_type != "BinaryConv":
                raise ValueError(f"its accumulator input {self.onnx_node.input[0]} is not a BinaryConv output")
            self._acc_bound = self.neighbour(producer).blocks()[0].spec.mw
        return self._acc_bound

    _acc_bound = None

    def blocks(self) -> list[Block]:
        act, pe = self.contract_layer(), self.get_nodeattr("PE")
        _, c, h, w = self.get_normal_output_shape()
        bound, sc_bits = self.accumulator_bound(), self.input_stream_bits(1)
        if act.act == "rprelu":
            return [Block("residual_tail", self.folded_spec(
                lambda: ResidualTailSpec.from_activation(act, bound, sc_bits, pe, h * w), pe=pe))]
        stat_channels = self.get_normal_input_shape(2)[1] if act.stat_source == "reuse" else None
        knob = {"se_simd": self.knob("SE_SIMD")} if act.se is not None else {"limbs": self.knob("LIMBS")}
        return [Block("insta_tail", self.folded_spec(
            lambda: InstaTailSpec.from_activation(act, bound, sc_bits, pe, h * w, stat_channels), pe=pe, **knob))]

    def out_stream_bits(self) -> int:
        return int(self.contract_layer().out_bits)


class Classifier(InstaHwOp):
    """Global sum (SIMD channels per beat) then the int8 MVU (SIMD x PE): the slower of the two sets the rate."""

    matrix = True

    def compute(self, head, q):
        return head(q)

    def blocks(self) -> list[Block]:
        """global_sum -> int_mvu -> channel_affine (logit shift and bias)."""
        _, c, h, w = self.get_normal_input_shape()
        simd, pe, head = self.get_nodeattr("SIMD"), self.get_nodeattr("PE"), self.contract_layer()
        gs = GlobalSumSpec(c, simd, h, w, self.input_stream_bits())
        weight = np.asarray(head.weight, np.int64)
        mvu = IntMvuShape(c, weight.shape[0], simd, pe, weight_bits(weight), gs.out_bits, 1, 0)
        return [Block("global_sum", gs), Block("int_mvu", mvu),
                Block("channel_affine", ChannelAffineSpec.from_classifier(head, mvu.acc_bits, pe))]

    def out_stream_bits(self) -> int:
        return self.blocks()[-1].spec.out_bits

    def get_folded_output_shape(self, ind=0):
        n, k = self.get_normal_output_shape()
        return (n, k // self.get_nodeattr("PE"), self.get_nodeattr("PE"))


class ChainLayer(InstaHwOp):
    """A plain W1A1 layer (:class:`~instabnn.contract.network.ChainStage`); scalar ``integer_input`` marks the
    first layer of an integer-input network. A matrix unit: SIMD input elements (dividing the input channels) x PE
    output channels per beat."""

    matrix = True

    def compute(self, stage, x):
        integer_input = bool(json.loads(self.get_nodeattr("scalars")).get("integer_input", 0))
        if x.shape[2:] != (1, 1) and stage.weight_bits.shape[-1] == 1 and stage.weight_bits.shape[1] != x.shape[1]:
            x = x.reshape(len(x), -1, 1, 1)
        return stage(x, integer_input)

    @property
    def integer_input(self) -> bool:
        return bool(json.loads(self.get_nodeattr("scalars")).get("integer_input", 0))

    def input_stream_bits(self, index: int = 0) -> int:
        return self.get_nodeattr("in_bits")[0] if self.integer_input else 1

    def geometry(self, stage) -> tuple[int, int, SlidingWindowShape | None]:
        """(MVU vector length, vectors per frame, the sliding window or None): a dense layer after a frame (one
        vector of the flattened frame), a pointwise layer (a vector per pixel), or a convolution's window."""
        _, cin, h, w = self.get_normal_input_shape()
        wcin, k = stage.weight_bits.shape[1], stage.weight_bits.shape[-1]
        if k == 1 and wcin != cin:
            if wcin != cin * h * w:
                raise ValueError(f"dense weights of {wcin} inputs after a {cin}x{h}x{w} frame")
            return wcin, 1, None
        if k == 1 and stage.stride == 1:
            return wcin, h * w, None
        swg = SlidingWindowShape(cin, h, w, k, stage.stride, 0, self.get_nodeattr("SIMD"), self.input_stream_bits(),
                                 0)
        return swg.mw, swg.out_height * swg.out_width, swg

    def knob_options(self) -> dict[str, list]:
        return {} if self.integer_input else {"ram_style": list(RAM_STYLES)}

    def blocks(self) -> list[Block]:
        """[sliding_window ->] binary_mvu (thresholds as bits) or int_mvu [-> channel_affine threshold]
        [-> maxpool_bits]; see hw/compile/chain.py."""
        stage = self.contract_layer()
        simd, pe = self.get_nodeattr("SIMD"), self.get_nodeattr("PE")
        cout = stage.weight_bits.shape[0]
        mw, vectors, swg = self.geometry(stage)
        blocks = [] if swg is None else [Block("sliding_window", swg)]
        thresholds = stage.thresholds is not None
        if self.integer_input:
            mvu = IntMvuShape(mw, cout, simd, pe, 2, self.input_stream_bits(), 1, 0)
            blocks.append(Block("int_mvu", mvu, vectors))
            if thresholds:
                t = np.asarray(stage.thresholds, np.int64)
                blocks.append(Block("channel_affine", ChannelAffineSpec(cout, pe, mvu.acc_bits, 2, 0, (1,) * cout,
                                                                        tuple(-int(v) for v in t)), vectors))
        else:
            blocks.append(Block("binary_mvu", BinaryMvuShape(mw, cout, simd, pe, int(thresholds),
                                                             self.weight_ram_style()), vectors))
        if stage.pool > 1:
            oh, ow = (swg.out_height, swg.out_width) if swg is not None else \
                ((1, 1) if vectors == 1 else self.get_normal_input_shape()[2:])
            blocks.append(Block("maxpool_bits", MaxPoolBitsSpec(cout, pe, oh, ow, stage.pool)))
        return blocks

    def mvu(self) -> BinaryMvuShape | IntMvuShape:
        return next(b.spec for b in self.blocks() if isinstance(b.spec, MvuFolding))

    def accumulator_bound(self) -> int:
        """|acc| bound of the layer's accumulators: MW (binary input) or MW * 2^(bits-1) (integer input)."""
        mvu = self.mvu()
        return mvu.mw * ((1 << (self.input_stream_bits() - 1)) if self.integer_input else 1)

    def out_stream_bits(self) -> int:
        stage = self.contract_layer()
        if stage.thresholds is not None:
            return 1
        return self.mvu().acc_bits


class AffineLogits(InstaHwOp):
    """The logits' per-class scale and bias (``channel_affine``), PE classes per beat."""

    def compute(self, logits, acc):
        return logits(acc)

    def blocks(self) -> list[Block]:
        """channel_affine: MULT = mult, BIAS = bias, SHIFT 0, OUT_BITS from the worst case of the accumulators."""
        logits = self.contract_layer()
        producer = self.graph().find_producer(self.onnx_node.input[0])
        acc_bits = self.input_stream_bits()
        bound = self.neighbour(producer).accumulator_bound() if producer is not None and \
            producer.op_type == "ChainLayer" else 1 << (acc_bits - 1)
        mult, bias = np.asarray(logits.mult, np.int64), np.asarray(logits.bias, np.int64)
        ends = np.stack([mult * bound + bias, -mult * bound + bias])
        out_bits = max(2, signed_bits(int(ends.min()), int(ends.max())))
        return [Block("channel_affine", ChannelAffineSpec(len(mult), self.get_nodeattr("PE"), max(2, acc_bits),
                                                          out_bits, 0, tuple(int(v) for v in mult),
                                                          tuple(int(v) for v in bias)))]

    def out_stream_bits(self) -> int:
        return self.blocks()[-1].spec.out_bits

    def fold_options(self) -> dict[str, int]:
        return {"PE": self.get_normal_output_shape()[1]}

    def get_folded_output_shape(self, ind=0):
        n, k = self.get_normal_output_shape()
        return (n, k // self.get_nodeattr("PE"), self.get_nodeattr("PE"))
