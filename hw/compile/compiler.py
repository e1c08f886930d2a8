"""Network compiler: a lowered graph (``lowered.onnx``) and its folding -> one RTL directory.

``python -m instabnn.hw.compile runs/demo/lowered.onnx --folding folding.json --out runs/demo/rtl`` (``make hw``)
turns every hardware layer of the lowered graph (:mod:`instabnn.hw.ops`) into instances of the RTL library
(``hw/blocks``), in dataflow order, and writes:

* ``<top>.sv``: the generated top level, AXI-Stream image in (one pixel per beat, ``C`` lanes of the input width,
  ``tdata`` padded to bytes) and logits out (one class per beat, sign-extended to bytes, ``tlast`` on the last
  class of an image);
* the library sources it uses (copied, so the directory is self-contained) and one ``$readmemh`` file per
  constant memory (referenced by bare file name: tools run in this directory);
* ``accelerator.json``: the manifest (sources in compile order, memory files, stream widths, input shape, the
  folding, the model hash, per-layer cycles) and ``compile.md``, a readable report.

Layer -> RTL (every block's parameters come from its spec, which the op builds, the one source of each width):

    StemConv            sliding_window -> int_mvu -> channel_affine (AffineRequant)
    ThresholdUnit       insta_threshold (static, INSTA-Th, or INSTA-Th+ with SE = 1: the SE-like MLP);
                        the unit's frame-buffered q output feeds the shortcut
    BinaryConv          sliding_window (pad code 0 = -1) -> binary_mvu (accumulators)
    ShortcutPath        stream_fifo -> pool_sum and / or int_mvu (1x1 projection)
    ResidualActivation  stream_fifo on the shortcut -> residual_tail (RPReLU) or insta_tail (INSTA-PReLU(+), own
                        statistics or reused from the block input, which it gets before the INSTA-Th frame buffer)
    Classifier          global_sum -> int_mvu -> channel_affine (logit shift and bias)
    ChainLayer          (plain W1A1) sliding_window -> binary_mvu with thresholds -> maxpool_bits; an 8-bit first
                        layer: int_mvu -> channel_affine (threshold as a sign); the last layer: accumulators
    AffineLogits        channel_affine (per-class scale and bias of the last accumulators)

Between blocks the compiler inserts width converters where one layer's lanes differ from the next one's folding,
stream duplicates where a tensor has several readers, and a FIFO at the start of every residual shortcut, deep
enough for the rows the block's convolution buffers before it emits (so neither branch stalls the other; see
docs/hardware.md), and a FIFO of one input vector in front of every matrix-vector unit with several output folds
that no sliding window feeds (:meth:`Netlist.mvu`: the unit stops its input while it re-reads its buffered vector,
and without the FIFO its producer would stop with it). The manifest's ``fifo_bits`` (and each layer's) is the
memory these FIFOs spend. A layer the RTL library does not have yet (option-A shortcuts) stops the compiler
with an error naming the node, before anything is written. ``compile.md`` and the manifest carry per-layer cycles
and resource estimates (each block spec's ``resources()``, :mod:`instabnn.hw.blocks.common.resources`), and a
per-block latency table (each instance's cycles per frame and latency from its spec).

Every block's spec comes from the lowered op (``op.blocks()`` in :mod:`instabnn.hw.ops`): the emitters place the
op's specs and build none of their own, so the cycles folding folds by (``get_exp_cycles``) are the report's.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.channel_affine.spec import write_const_file as write_affine_file
from instabnn.hw.compile.chain import ChainEmitters
from instabnn.hw.blocks.insta_tail import spec as insta_tail_block
from instabnn.hw.blocks.insta_threshold import spec_plus as insta_plus_block
from instabnn.hw.blocks.insta_threshold.spec import write_coeff_file
from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape, write_weight_file
from instabnn.hw.blocks.int_mvu.spec import IntMvuShape, write_int_weight_file
from instabnn.contract.insta import InstaThConstants
from instabnn.contract.window import conv_weight_matrix
from instabnn.hw.blocks.residual_tail.spec import write_const_file as write_tail_file
from instabnn.hw.ops import hw_op
from instabnn.hw.blocks.rtl_library import LIBRARY_DIR, library_file, rtl_sources
from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape
from instabnn.hw.blocks.common.resources import total as total_resources
from instabnn.hw.blocks.stream.spec import StreamDuplicateShape, StreamFifoShape, WidthConverterShape
from instabnn.outputs import OutputDir, OutputError

MANIFEST = "accelerator.json"
TOOL = "instabnn-compile"
DEFAULT_CLOCK_MHZ = 100.0
XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}


class CompileError(ValueError):
    """A graph, node or folding the compiler cannot build; the message names the node."""


@dataclass(frozen=True)
class Stream:
    """An AXI-Stream in the generated top: signals ``<name>_tdata/_tvalid/_tready``, ``lanes`` lanes of ``bits``
    bits (two's complement, 1-bit lanes are bits), FINN order, ``beats`` beats per frame."""

    name: str
    lanes: int
    bits: int
    beats: int

    @property
    def width(self) -> int:
        return self.lanes * self.bits

    @property
    def elements(self) -> int:
        return self.lanes * self.beats


@dataclass
class Layer:
    """What the report says of one lowered node: its RTL blocks and analytic cycles per frame."""

    node: str
    op: str
    blocks: list[str] = field(default_factory=list)
    cycles: int = 0
    instances: list[dict] = field(default_factory=list)  # per block: instance, module, cycles_per_frame, latency
    memory_bits: int = 0
    fifo_bits: int = 0
    lut: int = 0
    bram36: float = 0.0
    dsp: int = 0


class Netlist:
    """The top level under construction: declarations, instances, memory files, and the modules used."""

    def __init__(self, mem_dir: Path):
        self.mem_dir = mem_dir
        self.lines: list[str] = []
        self.modules: set[str] = set()
        self.mem_files: list[str] = []
        self._names: dict[str, int] = {}
        self.layer: Layer | None = None
        self.window_outputs: set[str] = set()  # streams written by a sliding window

    def unique(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint)
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def stream(self, hint: str, lanes: int, bits: int, beats: int) -> Stream:
        s = Stream(self.unique(hint), lanes, bits, beats)
        self.lines.append(f"logic [{s.width - 1}:0] {s.name}_tdata;\nlogic {s.name}_tvalid, {s.name}_tready;")
        return s

    def mem_file(self, name: str) -> Path:
        name = self.unique(name) + ".mem"
        self.mem_files.append(name)
        return self.mem_dir / name

    def instance(self, module: str, hint: str, params: dict, ports: dict[str, str], spec) -> str:
        """One block instance; ``spec`` (the block's spec, whose ``rtl_parameters`` are ``params``) gives its
        resource estimate (``spec.resources()``)."""
        inst = self.unique(hint)
        self.modules.add(module)
        if self.layer is not None:
            self.layer.blocks.append(module)
            if not callable(getattr(spec, "resources", None)):
                raise CompileError(f"{module} {inst}: no block spec with a resource estimate given ({spec!r})")
            est = spec.resources()
            self.layer.lut += est["lut"]
            self.layer.bram36 += est["bram36"]
            self.layer.dsp += est["dsp"]
        p = ",\n".join(f"    .{k}({v})" for k, v in params.items())
        c = ",\n".join(f"    .{k}({v})" for k, v in [("clk", "clk"), ("rst", "rst"), *ports.items()])
        self.lines.append(f"{module} #(\n{p}\n) {inst} (\n{c}\n);")
        return inst

    @staticmethod
    def ports(prefix: str, s: Stream) -> dict[str, str]:
        return {f"{prefix}_tdata": f"{s.name}_tdata", f"{prefix}_tvalid": f"{s.name}_tvalid",
                f"{prefix}_tready": f"{s.name}_tready"}

    def block(self, module: str, hint: str, params: dict, inputs: dict[str, Stream], out: Stream | None,
              extra: dict[str, str] | None = None, spec=None) -> str:
        ports = {}
        for prefix, s in inputs.items():
            ports.update(self.ports(prefix, s))
        if out is not None:
            ports.update(self.ports("m_axis", out))
        ports.update(extra or {})
        inst = self.instance(module, hint, params, ports, spec)
        if module == "sliding_window" and out is not None:
            self.window_outputs.add(out.name)
        return inst

    def mvu(self, module: str, hint: str, shape: BinaryMvuShape | IntMvuShape, params: dict, x: Stream,
            out: Stream) -> str:
        """A matrix-vector unit (``binary_mvu`` / ``int_mvu`` of ``shape``) from ``x`` to
        ``out``, behind the input FIFO that keeps it from serialising with its producer; every MVU of every
        network is made here.

        The unit takes an input vector's SF beats in its first output fold, then re-reads its buffered copy for the
        other NF - 1 folds with ``s_axis`` stalled. A producer that cannot put the next vector anywhere in that time
        stops with it, and the two layers' times per vector add up instead of overlapping (``cnv_1w1a``'s dense
        layers at PE = 1 measured twice the analytic cycles per frame). So, where NF > 1, the stream in front must
        hold one vector: a sliding window's line buffer does (its writer runs STRIDE + 1 rows ahead of its
        reader, more than a window vector); any other producer gets a FIFO of SF beats, the unit's second input
        buffer."""
        if shape.nf > 1 and x.name not in self.window_outputs:
            x = self.fifo(x, shape.sf)
        return self.block(module, hint, params, {"s_axis": x}, out, spec=shape)

    # ---- stream plumbing --------------------------------------------------------------------------------------

    def lanes_to(self, s: Stream, lanes: int) -> Stream:
        """The same elements with ``lanes`` lanes per beat (width converters; via the gcd where neither lane
        count divides the other)."""
        if s.lanes == lanes:
            return s
        if lanes % s.lanes and s.lanes % lanes:
            return self.lanes_to(self.lanes_to(s, math.gcd(s.lanes, lanes)), lanes)
        if s.elements % lanes:
            raise CompileError(f"cannot regroup {s.elements} elements of {s.name} into beats of {lanes}")
        out = self.stream(f"{s.name}_x{lanes}", lanes, s.bits, s.elements // lanes)
        wc = WidthConverterShape(s.width, out.width)
        self.block("width_converter", f"wc_{s.name}", wc.rtl_parameters(), {"s_axis": s}, out, spec=wc)
        return out

    def bits_to(self, s: Stream, bits: int) -> Stream:
        """The same values in ``bits``-bit lanes: sign extension (or dropping bits the values never use)."""
        if s.bits == bits:
            return s
        out = self.stream(f"{s.name}_b{bits}", s.lanes, bits, s.beats)
        lanes = ", ".join(f"{bits}'($signed({s.name}_tdata[{i * s.bits + s.bits - 1}:{i * s.bits}]))"
                          for i in reversed(range(s.lanes)))
        self.lines.append(f"assign {out.name}_tdata = {{{lanes}}};\nassign {out.name}_tvalid = {s.name}_tvalid;\n"
                          f"assign {s.name}_tready = {out.name}_tready;")
        return out

    def fifo(self, s: Stream, depth: int) -> Stream:
        out = self.stream(f"{s.name}_q", s.lanes, s.bits, s.beats)
        if self.layer is not None:
            self.layer.memory_bits += s.width * max(2, depth)
            self.layer.fifo_bits += s.width * max(2, depth)
        shape = StreamFifoShape(s.width, max(2, depth))
        self.block("stream_fifo", f"fifo_{s.name}", shape.rtl_parameters(), {"s_axis": s}, out, spec=shape)
        return out

    def split(self, s: Stream, n: int) -> list[Stream]:
        """``n`` copies of ``s`` (a chain of stream duplicates)."""
        outs = []
        while n > 1:
            a = self.stream(f"{s.name}_d", s.lanes, s.bits, s.beats)
            b = self.stream(f"{s.name}_d", s.lanes, s.bits, s.beats)
            dup = StreamDuplicateShape(s.width)
            self.instance("stream_duplicate", f"dup_{s.name}", dup.rtl_parameters(),
                          {**self.ports("s_axis", s), **self.ports("m0_axis", a), **self.ports("m1_axis", b)}, dup)
            outs.append(a)
            s, n = b, n - 1
        return outs + [s]


# ------------------------------------------------------------------------------------------ layers


def _attrs(op) -> tuple[dict, list[int], list[int], int, int]:
    scalars = json.loads(op.get_nodeattr("scalars"))
    return scalars, list(op.get_nodeattr("in_shapes")), list(op.get_nodeattr("out_shape")), \
        op.get_nodeattr("SIMD"), op.get_nodeattr("PE")


class Compiler(ChainEmitters):
    """Walks the lowered graph in order and emits each node's blocks into a :class:`Netlist` (the plain W1A1 chain
    layers' handlers come from :class:`~instabnn.hw.compile.chain.ChainEmitters`)."""

    def __init__(self, model, mem_dir: Path):
        from qonnx.custom_op.registry import getCustomOp

        self.model = model
        self.getCustomOp = getCustomOp
        self.net = Netlist(mem_dir)
        self.layers: list[Layer] = []
        self.consumers: dict[str, list] = {}  # tensor -> its readers (node, input index)
        for node in model.graph.node:
            for i, t in enumerate(node.input):
                if t:
                    self.consumers.setdefault(t, []).append((node, i))
        self.ready: dict[tuple[str, int], Stream] = {}  # (reader node, input index) -> its stream
        self.tensor_streams: dict[str, Stream] = {}  # tensor -> the stream that carries it (for probing)
        self.input_stream: Stream | None = None
        self.output_stream: Stream | None = None
        self.classes = 0

    def conv_window(self, q_tensor: str) -> SlidingWindowShape | None:
        """The sliding window of the binary convolution of the block whose input is ``q_tensor``."""
        for thr, _ in self.consumers.get(q_tensor, []):
            if thr.op_type != "ThresholdUnit":
                continue
            for conv, _ in self.consumers.get(thr.output[0], []):
                if conv.op_type == "BinaryConv":
                    return hw_op(self.model, conv).blocks()[0].spec
        return None

    def shortcut_fifo(self, s: Stream, q_tensor: str) -> Stream:
        """A FIFO at the start of a residual shortcut: it holds the block input while the convolution, which
        lags by the rows its sliding window buffers, catches up, so that neither branch stalls the other."""
        swg = self.conv_window(q_tensor)
        rows = 1.0 if swg is None else min(1.0, (swg.buffer_rows + 2) / swg.height)
        return self.net.fifo(s, math.ceil(rows * s.beats) + 8)

    def const(self, node, field: str) -> np.ndarray:
        op = self.getCustomOp(node)
        names = list(op.get_nodeattr("const_names"))
        if field not in names:
            raise CompileError(f"node {node.name}: no constant {field!r}")
        return np.asarray(self.model.get_initializer(node.input[op.data_inputs + names.index(field)]), np.int64)

    def layer_object(self, node):
        from instabnn.hw.ops import unpack

        op = self.getCustomOp(node)
        names = list(op.get_nodeattr("const_names"))
        arrays = {f: self.model.get_initializer(t) for f, t in zip(names, node.input[op.data_inputs:])}
        return unpack(json.loads(op.get_nodeattr("scalars")), arrays)

    # ---- tensors ----------------------------------------------------------------------------------------------

    @staticmethod
    def reads_statistics(reader) -> bool:
        """A block tail's third input: the block input whose statistics it reuses."""
        node, index = reader
        return node.op_type == "ResidualActivation" and index == 2

    def publish(self, tensor: str, s: Stream, skip: str | None = None) -> None:
        """Give every reader of ``tensor`` (but ``skip`` and, after a threshold unit, the statistics readers)
        its own copy of ``s``."""
        self.tensor_streams.setdefault(tensor, s)
        readers = [r for r in self.consumers.get(tensor, []) if r[0].name != skip]
        thresholds = [r for r in readers if r[0].op_type == "ThresholdUnit"]
        if skip is None and thresholds and len(readers) > 1:
            # the threshold unit's buffered q output serves the other readers (emit_ThresholdUnit), except a tail
            # reusing the statistics: it sums the block input as it arrives, a frame before the INSTA-Th unit's
            # bits leave it, so it gets the undelayed stream
            readers = thresholds[:1] + [r for r in readers if self.reads_statistics(r)]
        elif skip is not None:
            readers = [r for r in readers if not self.reads_statistics(r)]
        if not readers:
            if tensor in [o.name for o in self.model.graph.output]:
                self.output_stream = s
                return
            raise CompileError(f"tensor {tensor} has no reader")
        for (reader, index), copy in zip(readers, self.net.split(s, len(readers))):
            self.ready[(reader.name, index)] = copy

    def take(self, node, index: int = 0) -> Stream:
        try:
            return self.ready.pop((node.name, index))
        except KeyError:
            raise CompileError(f"node {node.name}: input {node.input[index]} has no stream (graph not in dataflow "
                               f"order?)") from None

    def run(self) -> None:
        graph = self.model.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise CompileError("the lowered graph must have one input (the image) and one output (the logits)")
        first = graph.node[0]
        if self.start_chain():
            pass  # a plain W1A1 chain: start_chain made the image stream
        elif first.op_type != "StemConv":
            raise CompileError(f"node {first.name} ({first.op_type}): the compiler takes residual networks that start "
                               f"with a StemConv or plain W1A1 chains that start with a ChainLayer")
        else:
            _, in_shapes, _, _, _ = _attrs(self.getCustomOp(first))
            _, cin, h, w = in_shapes[:4]
            in_bits = self.getCustomOp(first).get_nodeattr("in_bits")[0]
            self.input_stream = self.net.stream("image", cin, in_bits, h * w)
        self.publish(graph.input[0].name, self.input_stream)
        for node in graph.node:
            handler = getattr(self, f"emit_{node.op_type}", None)
            if handler is None:
                raise CompileError(f"node {node.name}: op {node.op_type} has no RTL block in the library")
            self.net.layer = Layer(node.name, node.op_type)
            try:
                handler(node, hw_op(self.model, node))
            except CompileError:
                raise
            except ValueError as e:  # a spec class refusing the folding or the constants
                raise CompileError(f"node {node.name} ({node.op_type}): {e}") from None
            self.net.layer.cycles = max((i["cycles_per_frame"] for i in self.net.layer.instances), default=0)
            self.layers.append(self.net.layer)
            self.net.layer = None
        if self.output_stream is None:
            raise CompileError("the graph output has no stream")

    # ---- node handlers ----------------------------------------------------------------------------------------

    def place(self, blk, inst: str) -> str:
        """Record instance ``inst`` of the op's block ``blk`` in the layer's latency table."""
        self.net.layer.instances.append({"instance": inst, "module": blk.module,
                                         "cycles_per_frame": blk.cycles_per_frame, "latency": blk.latency,
                                         "beat_latency": blk.beat_latency})
        return inst

    @staticmethod
    def expect_bits(node, s: Stream, bits: int) -> Stream:
        """``s`` when its lanes have the width the node's blocks were built for; CompileError otherwise."""
        if s.bits != bits:
            raise CompileError(f"node {node.name}: its input stream {s.name} has {s.bits}-bit lanes, its blocks "
                               f"take {bits}")
        return s

    def window(self, node, blk, x: Stream) -> Stream:
        """The sliding window ``blk`` over ``x``; its output stream."""
        swg = blk.spec
        win = self.net.stream(f"{node.name}_win", swg.simd, x.bits, swg.out_beats)
        self.place(blk, self.net.block("sliding_window", f"{node.name}_swg", swg.rtl_parameters(), {"s_axis": x},
                                       win, spec=swg))
        return win

    def emit_StemConv(self, node, op):
        window, mvu, affine = op.blocks()
        x = self.expect_bits(node, self.net.lanes_to(self.take(node), window.spec.simd), window.spec.elem_bits)
        win = self.window(node, window, x)
        wfile = self.net.mem_file(f"{node.name}_weight")
        write_int_weight_file(wfile, conv_weight_matrix(self.const(node, "weight")), mvu.spec)
        acc = self.net.stream(f"{node.name}_acc", mvu.spec.pe, mvu.spec.acc_bits, mvu.vectors * mvu.spec.nf)
        self.place(mvu, self.net.mvu("int_mvu", f"{node.name}_mvu", mvu.spec, mvu.spec.rtl_parameters(wfile.name),
                                     win, acc))
        out = self.affine(node, affine, acc)
        self.net.layer.memory_bits = mvu.spec.mw * mvu.spec.mh * mvu.spec.weight_bits + window.spec.buffer_bits
        self.publish(node.output[0], out)

    def affine(self, node, blk, x: Stream) -> Stream:
        spec = blk.spec
        cfile = self.net.mem_file(f"{node.name}_affine")
        write_affine_file(cfile, spec)
        out = self.net.stream(f"{node.name}_out", spec.pe, spec.out_bits, blk.vectors * spec.cf)
        self.place(blk, self.net.block("channel_affine", f"{node.name}_affine", spec.rtl_parameters(cfile.name),
                                       {"s_axis": self.net.bits_to(self.net.lanes_to(x, spec.pe), spec.in_bits)},
                                       out, spec=spec))
        return out

    def emit_ThresholdUnit(self, node, op):
        c = op.get_normal_input_shape()[1]
        consts = self.layer_object(node)
        [unit] = op.blocks()
        spec, pe, shortcut = unit.spec, unit.spec.pe, unit.spec.shortcut
        if isinstance(consts, InstaThConstants):
            files = [self.net.mem_file(f"{node.name}_coeffs")]
            write_coeff_file(files[0], consts, spec)
        else:  # INSTA-Th+: the SE-like MLP (insta_threshold with SE = 1)
            files = []
            for kind in ("coeff", "const", "m1", "w1", "w2"):
                files.append(self.net.mem_file(f"{node.name}_{kind}"))
                getattr(insta_plus_block, f"write_{kind}_file")(files[-1], consts, spec)
            files.append(self.net.mem_file(f"{node.name}_g_{consts.g}"))
            insta_plus_block.write_g_file(files[-1], spec)
        q = self.net.bits_to(self.net.lanes_to(self.take(node), pe), spec.input_bits)
        bits = self.net.stream(f"{node.name}_bits", pe, 1, spec.frame_beats)
        if shortcut:
            qs = self.net.stream(f"{node.name}_q", pe, spec.input_bits, spec.frame_beats)
            extra = self.net.ports("m_axis_q", qs)
        else:
            extra = {"m_axis_q_tdata": "", "m_axis_q_tvalid": "", "m_axis_q_tready": "1'b1"}
        self.place(unit, self.net.block(unit.module, node.name, spec.rtl_parameters(*(f.name for f in files)),
                                        {"s_axis": q}, bits, extra, spec=spec))
        self.net.layer.memory_bits = spec.buffer_bits + c * spec.coeff_word_bits
        if isinstance(spec, insta_plus_block.InstaThresholdPlusSpec):
            self.net.layer.memory_bits = spec.memory_bits
        self.publish(node.output[0], bits)
        if shortcut:
            self.publish(node.input[0], qs, skip=node.name)

    def emit_BinaryConv(self, node, op):
        window, mvu = op.blocks()
        win = self.window(node, window, self.net.lanes_to(self.take(node), window.spec.simd))
        wfile = self.net.mem_file(f"{node.name}_weight")
        write_weight_file(wfile, 2 * conv_weight_matrix(self.const(node, "weight")) - 1, mvu.spec)
        acc = self.net.stream(f"{node.name}_acc", mvu.spec.pe, mvu.spec.acc_bits, mvu.vectors * mvu.spec.nf)
        self.place(mvu, self.net.mvu("binary_mvu", f"{node.name}_mvu", mvu.spec,
                                     mvu.spec.rtl_parameters(wfile.name), win, acc))
        self.net.layer.memory_bits = mvu.spec.mw * mvu.spec.mh + window.spec.buffer_bits
        self.publish(node.output[0], acc)

    def emit_ShortcutPath(self, node, op):
        shortcut = self.layer_object(node)
        if shortcut.kind not in ("pool", "proj"):
            raise CompileError(f"node {node.name}: shortcut kind {shortcut.kind!r} has no RTL block yet "
                               f"(pool and 1x1 projection do)")
        blocks = op.blocks()
        lanes = op.get_nodeattr("SIMD" if op.matrix else "PE")
        x = self.expect_bits(node, self.take(node), op.input_stream_bits())
        x = self.shortcut_fifo(self.net.lanes_to(x, lanes), node.input[0])
        for blk in blocks:
            if blk.module == "pool_sum":
                pool = blk.spec
                pooled = self.net.stream(f"{node.name}_pool", lanes, pool.out_bits, pool.out_frame_beats)
                self.place(blk, self.net.block("pool_sum", f"{node.name}_pool", pool.rtl_parameters(),
                                               {"s_axis": x}, pooled, spec=pool))
                x = pooled
            else:  # the 1x1 projection
                mvu = blk.spec
                wfile = self.net.mem_file(f"{node.name}_weight")
                write_int_weight_file(wfile, conv_weight_matrix(self.const(node, "weight")), mvu)
                acc = self.net.stream(f"{node.name}_acc", mvu.pe, mvu.acc_bits, blk.vectors * mvu.nf)
                self.place(blk, self.net.mvu("int_mvu", f"{node.name}_mvu", mvu, mvu.rtl_parameters(wfile.name), x,
                                             acc))
                x = acc
                self.net.layer.memory_bits += mvu.mw * mvu.mh * mvu.weight_bits
        self.publish(node.output[0], x)

    def emit_ResidualActivation(self, node, op):
        _, c, h, w = op.get_normal_output_shape()
        act = self.layer_object(node)
        [tail] = op.blocks()  # ValueError where input 0 is not a BinaryConv's accumulators
        spec, pe = tail.spec, tail.spec.pe
        acc = self.net.lanes_to(self.take(node), pe)
        sc = self.expect_bits(node, self.net.lanes_to(self.take(node, 1), pe), spec.sc_bits)
        producer = next((n for n in self.model.graph.node if node.input[1] in n.output), None)
        if producer is not None and producer.op_type == "ShortcutPath":
            sc = self.net.fifo(sc, 2 * sc.beats // h + 8)  # two output rows (the path starts with its own FIFO)
        else:
            sc = self.shortcut_fifo(sc, node.input[1])
        acc = self.net.bits_to(acc, spec.acc_bits)
        out = self.net.stream(f"{node.name}_out", pe, spec.out_bits, spec.frame_beats)
        if tail.module == "residual_tail":
            cfile = self.net.mem_file(f"{node.name}_consts")
            write_tail_file(cfile, act, spec)
            self.place(tail, self.net.block("residual_tail", node.name, spec.rtl_parameters(cfile.name),
                                            {"s_axis_acc": acc, "s_axis_sc": sc}, out, spec=spec))
            self.net.layer.memory_bits += c * spec.const_lane_bits
        else:
            files = {}
            kinds = ("const", "coeff") + (("se_const", "m1", "w1", "w2") if spec.se else ())
            for kind in kinds:
                files[f"{kind}_file"] = self.net.mem_file(f"{node.name}_{kind}")
                getattr(insta_tail_block, f"write_{kind}_file")(files[f"{kind}_file"], act, spec)
            files["g_file"] = self.net.mem_file(f"{node.name}_g_{spec.g}")
            insta_tail_block.write_g_file(files["g_file"], spec)
            if spec.stat_reuse:
                stat = self.net.bits_to(self.net.lanes_to(self.take(node, 2), pe), spec.stat_bits)
                stat = self.shortcut_fifo(stat, node.input[2])
                extra = self.net.ports("s_axis_stat", stat)
            else:
                extra = {"s_axis_stat_tdata": f"{spec.stat_bits * pe}'(0)", "s_axis_stat_tvalid": "1'b0",
                         "s_axis_stat_tready": ""}
            self.place(tail, self.net.block("insta_tail", node.name,
                                            spec.rtl_parameters(**{k: v.name for k, v in files.items()}),
                                            {"s_axis_acc": acc, "s_axis_sc": sc}, out, extra, spec=spec))
            self.net.layer.memory_bits += spec.buffer_depth * pe * spec.y_bits
        self.publish(node.output[0], out)

    def emit_Classifier(self, node, op):
        total, mvu, affine = op.blocks()
        gs = total.spec
        x = self.expect_bits(node, self.net.lanes_to(self.take(node), gs.pe), gs.in_bits)
        sums = self.net.stream(f"{node.name}_sum", gs.pe, gs.out_bits, gs.out_frame_beats)
        self.place(total, self.net.block("global_sum", f"{node.name}_gsum", gs.rtl_parameters(), {"s_axis": x},
                                         sums, spec=gs))
        weight = np.asarray(self.layer_object(node).weight, np.int64)
        self.classes = weight.shape[0]
        wfile = self.net.mem_file(f"{node.name}_weight")
        write_int_weight_file(wfile, weight, mvu.spec)
        acc = self.net.stream(f"{node.name}_acc", mvu.spec.pe, mvu.spec.acc_bits, mvu.spec.nf)
        self.place(mvu, self.net.mvu("int_mvu", f"{node.name}_mvu", mvu.spec, mvu.spec.rtl_parameters(wfile.name),
                                     sums, acc))
        logits = self.affine(node, affine, acc)
        self.net.layer.memory_bits = mvu.spec.mw * mvu.spec.mh * mvu.spec.weight_bits
        self.publish(node.output[0], logits)


# ------------------------------------------------------------------------------------------ top level


def _bytes(bits: int) -> int:
    return 8 * math.ceil(bits / 8)


def top_level(name: str, comp: Compiler) -> tuple[str, dict]:
    """The top module's text and its interface (the manifest's stream fields)."""
    net = comp.net
    image, logits = comp.input_stream, net.lanes_to(comp.output_stream, 1)
    in_w, out_w = _bytes(image.width), _bytes(logits.bits)
    classes = comp.classes
    cls_w = max(1, (classes - 1).bit_length())
    header = f"""// SPDX-License-Identifier: BSD-3-Clause
// Generated by instabnn.hw.compile; do not edit. The network's dataflow top level (see accelerator.json).
//
// s_axis: one image pixel per beat, {image.lanes} channel(s) x {image.bits}-bit two's complement, channel c at
//         bits [c*{image.bits} +: {image.bits}] (tdata is {in_w} bits; bits above {image.width} are ignored).
// m_axis: one integer logit per beat (class 0 first), {logits.bits}-bit two's complement sign-extended to {out_w}
//         bits; tlast on the last of the {classes} classes of each image.
`resetall
`timescale 1ns / 1ps
`default_nettype none

module {name} (
    input  wire logic                clk,
    input  wire logic                rst,
    input  wire logic [{in_w - 1}:0]  s_axis_tdata,
    input  wire logic                s_axis_tvalid,
    output wire logic                s_axis_tready,
    output wire logic [{out_w - 1}:0] m_axis_tdata,
    output wire logic                m_axis_tvalid,
    input  wire logic                m_axis_tready,
    output wire logic                m_axis_tlast
);
"""
    glue = f"""
assign {image.name}_tdata = s_axis_tdata[{image.width - 1}:0];
assign {image.name}_tvalid = s_axis_tvalid;
assign s_axis_tready = {image.name}_tready;

// the class counter: tlast on the last class of an image
logic [{cls_w - 1}:0] class_reg;
always_ff @(posedge clk) begin
    if (m_axis_tvalid && m_axis_tready) begin
        class_reg <= class_reg == {cls_w}'({classes - 1}) ? '0 : class_reg + 1'b1;
    end
    if (rst) begin
        class_reg <= '0;
    end
end
assign m_axis_tdata = {out_w}'($signed({logits.name}_tdata));
assign m_axis_tvalid = {logits.name}_tvalid;
assign {logits.name}_tready = m_axis_tready;
assign m_axis_tlast = class_reg == {cls_w}'({classes - 1});
"""
    body = "\n\n".join(net.lines)
    text = header + "\n" + body + "\n" + glue + "\nendmodule\n\n`resetall\n"
    return text, {"in_width": in_w, "out_width": out_w, "input_lanes": image.lanes, "input_bits": image.bits,
                  "logit_bits": logits.bits, "classes": classes}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=LIBRARY_DIR, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_budget(resources: dict, layers: list[Layer], max_utilisation: float) -> None:
    """CompileError when the LUT estimate exceeds ``max_utilisation`` of the xc7z020's LUTs, or the BRAM or DSP
    estimate exceeds the part."""
    for key, limit in (("lut", max_utilisation), ("bram36", 1.0), ("dsp", 1.0)):
        if resources[key] > limit * XC7Z020[key]:
            top3 = sorted(layers, key=lambda layer: getattr(layer, key), reverse=True)[:3]
            raise CompileError(
                f"the folding is over budget: estimated {resources[key]:g} {key.upper()} > {100 * limit:g}% "
                f"of the xc7z020's {XC7Z020[key]} (largest: "
                + ", ".join(f"{layer.node} {getattr(layer, key):g}" for layer in top3) + ")")


def compile_model(lowered: str | Path, out: str | Path, folding: str | Path | dict | None = None,
                  top: str = "instabnn_top", clock_mhz: float = DEFAULT_CLOCK_MHZ,
                  max_utilisation: float | None = None) -> dict:
    """Generate the RTL directory ``out`` for a lowered graph; returns the manifest. ``out`` is replaced only when
    the whole generation succeeded (built in a temporary directory beside it, then swapped in), and only when it is
    empty or an earlier RTL directory of this compiler (:class:`instabnn.outputs.OutputDir`).
    ``max_utilisation``: refuse a folding whose LUT estimate exceeds this fraction of the xc7z020's LUTs (or whose
    BRAM or DSP estimate exceeds the part)."""
    from instabnn.hw import ops  # noqa: F401  (registers the op domain)
    from instabnn.hw.compile.folding import FoldingError, apply_folding, choose_missing_knobs, read_lowered

    lowered, out = Path(lowered), Path(out)
    target = OutputDir(out, TOOL)  # refuses a folder this compiler did not write, before any work
    if not lowered.is_file():
        raise CompileError(f"{lowered}: no such lowered graph (run `make lower` first)")
    if not re.fullmatch(r"[A-Za-z_]\w*", top):
        raise CompileError(f"top module name {top!r} is not a Verilog identifier")
    try:
        model = read_lowered(lowered)
        if folding is not None:
            model = apply_folding(model, folding)
        else:
            choose_missing_knobs(model)
    except (FoldingError, ValueError) as e:
        raise CompileError(str(e)) from None
    with target as tmp:
        comp = Compiler(model, tmp)
        comp.run()
        text, iface = top_level(top, comp)
        (tmp / f"{top}.sv").write_text(text)
        sources = rtl_sources(comp.net.modules)
        for s in sources:
            shutil.copy2(library_file(s), tmp / s)
        cycles = max(layer.cycles for layer in comp.layers)
        resources = total_resources(vars(layer) for layer in comp.layers)
        if max_utilisation is not None:
            check_budget(resources, comp.layers, max_utilisation)
        manifest = {
            "top": top,
            "sources": sources + [f"{top}.sv"],
            "mem_files": comp.net.mem_files,
            **iface,
            "input_shape": list(model.get_tensor_shape(model.graph.input[0].name))[1:],
            "lowered": os.path.relpath(os.path.abspath(lowered), os.path.abspath(out)),
            "model_sha256": _sha256(lowered),
            "folding": {n.name: {k: op.get_nodeattr(k) for k in (*op.fold_options(), *op.knob_options())}
                        for n, op in ((n, hw_op(model, n)) for n in model.graph.node)},
            "clock_mhz": clock_mhz,
            "commit": _commit(),
            "layers": [vars(layer) for layer in comp.layers],
            "streams": {t: {"signal": st.name, "lanes": st.lanes, "bits": st.bits}
                        for t, st in comp.tensor_streams.items()},
            "cycles_per_frame_estimate": cycles,
            "fifo_bits": sum(layer.fifo_bits for layer in comp.layers),
            "resources_estimate": resources,
            "fps_estimate": clock_mhz * 1e6 / cycles,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "compile.md").write_text(markdown(manifest))
    return manifest


def lowered_graph_path(rtl_dir: str | Path, manifest: dict) -> Path:
    """The lowered graph an RTL directory was compiled from: the manifest's ``lowered`` path, relative to the RTL
    directory (so that the run folder can be moved and used from anywhere), checked against ``model_sha256``.
    :class:`CompileError` names the file when it is missing or is not the graph compiled."""
    rtl_dir = Path(rtl_dir)
    if "lowered" not in manifest:
        raise CompileError(f"{rtl_dir / MANIFEST}: field 'lowered' missing")
    path = Path(os.path.normpath(rtl_dir / manifest["lowered"]))  # lexical, as compile_model wrote it
    if not path.is_file():
        raise CompileError(f"{path}: the lowered graph named by {rtl_dir / MANIFEST} is missing (compile again "
                           "from lowered.onnx)")
    if manifest.get("model_sha256") != _sha256(path):
        raise CompileError(f"{path}: not the lowered graph {rtl_dir} was compiled from (sha256 differs from the "
                           "manifest's model_sha256): compile it again")
    return path


def markdown(m: dict) -> str:
    lines = [f"# Accelerator `{m['top']}`", "",
             f"From `{m['lowered']}` (sha256 {m['model_sha256'][:12]}), commit {m['commit'][:12]}.", "",
             f"Image in: {m['input_shape']} as {m['input_lanes']} x {m['input_bits']}-bit lanes per beat "
             f"(tdata {m['in_width']} bits); logits out: {m['classes']} classes x {m['logit_bits']} bits "
             f"(tdata {m['out_width']} bits, tlast per image).", "",
             "| layer | op | PE | SIMD | RTL blocks | cycles / frame | memory bits | of which FIFO | LUT | BRAM36 "
             "| DSP |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for layer in m["layers"]:
        f = m["folding"][layer["node"]]
        blocks = ", ".join(dict.fromkeys(layer["blocks"]))
        lines.append(f"| {layer['node']} | {layer['op']} | {f['PE']} | {f.get('SIMD', '-')} | {blocks} | {layer['cycles']} | "
                     f"{layer['memory_bits']} | {layer['fifo_bits']} | {layer['lut']} | {layer['bram36']:g} | "
                     f"{layer['dsp']} |")
    r = m["resources_estimate"]
    lines.append(f"| **total** | | | | | {m['cycles_per_frame_estimate']} (bottleneck) | | {m['fifo_bits']} | "
                 f"**{r['lut']}** | **{r['bram36']:g}** | **{r['dsp']}** |")
    lines += ["", f"Bottleneck: {m['cycles_per_frame_estimate']} cycles per frame, "
              f"{m['fps_estimate']:.0f} frames/s at {m['clock_mhz']:g} MHz (analytic).", "",
              f"FIFOs between layers: {m['fifo_bits']} bits (residual shortcuts, and one input vector in front of "
              f"every matrix-vector unit with several output folds that no sliding window feeds; their LUT / BRAM "
              f"are in the layers' estimates).",
              "", f"Resources: analytic estimate (the block specs' resources()) {r['lut']} LUT ({100 * r['lut'] / XC7Z020['lut']:.1f}% "
              f"of the xc7z020), {r['bram36']:g} BRAM36 ({100 * r['bram36'] / XC7Z020['bram36']:.1f}%), {r['dsp']} DSP48E1 "
              f"({100 * r['dsp'] / XC7Z020['dsp']:.1f}%); `make bitstream` synthesises the design for measured figures.", ""]
    lines += ["## Blocks: cycles per frame and latency", "",
              "Each block instance of the layers above with its spec's cycles per frame (steady state) and latency "
              "(clock edges; where each block's latency is measured from and to is in its spec: a frame-buffered "
              "INSTA unit's runs from a frame's last input beat to its first output beat, the others' from a beat "
              "in to the first beat it produces) and beat latency (a beat in to that beat out at full rate: one "
              "frame more for a frame-buffered unit). Stream plumbing (FIFOs, width converters, duplicates) is not "
              "listed.", "",
              "| layer | instance | module | cycles / frame | latency | beat latency |", "|---|---|---|---|---|---|"]
    for layer in m["layers"]:
        for inst in layer["instances"]:
            lines.append(f"| {layer['node']} | {inst['instance']} | {inst['module']} | {inst['cycles_per_frame']} | "
                         f"{inst['latency']} | {inst['beat_latency']} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    from instabnn.model.arguments import Parser, positive_float

    p = Parser(prog="instabnn-compile", description=__doc__.split("\n\n")[0])
    p.add_argument("lowered", help="lowered.onnx written by `make lower`")
    p.add_argument("--folding", help="folding config JSON (`make fold`); default: the PE/SIMD in the graph")
    p.add_argument("--out", help="RTL directory (default: rtl/ beside the lowered graph)")
    p.add_argument("--top", default="instabnn_top", help="top module name")
    p.add_argument("--clock-mhz", type=positive_float, default=DEFAULT_CLOCK_MHZ)
    p.add_argument("--max-utilisation", type=positive_float, default=None,
                   help="refuse a folding whose LUT estimate exceeds this fraction of the xc7z020's LUTs (e.g. 0.75) "
                        "or whose BRAM / DSP estimate exceeds the part")
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else Path(a.lowered).parent / "rtl"
    try:
        m = compile_model(a.lowered, out, a.folding, a.top, a.clock_mhz, a.max_utilisation)
    except (CompileError, OutputError) as e:
        print(f"compile: error: {e}", file=sys.stderr)
        return 2
    r = m["resources_estimate"]
    print(f"wrote {out}/ ({len(m['sources'])} sources, {len(m['mem_files'])} memory files); "
          f"{m['cycles_per_frame_estimate']} cycles/frame, {m['fps_estimate']:.0f} frames/s at "
          f"{m['clock_mhz']:g} MHz (analytic); estimate {r['lut']} LUT, {r['bram36']:g} BRAM36, {r['dsp']} DSP, "
          f"{m['fifo_bits']} FIFO bits; "
          f"report {out}/compile.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
