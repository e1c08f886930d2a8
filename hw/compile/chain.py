"""Compiler support for plain W1A1 chains (Brevitas bnn_pynq TFC / SFC / LFC / CNV style): the ``emit_*`` handlers
of the lowered ops ``ChainLayer`` and ``AffineLogits`` (:mod:`instabnn.hw.ops`) as a mixin of
:class:`instabnn.hw.compile.compiler.Compiler`, and :meth:`ChainEmitters.start_chain`, the image stream of a chain
graph.

Layer -> RTL (FINN stream order throughout: pixel-major, channel-minor):

    ChainLayer, binary input      [sliding_window (pad 0)] -> binary_mvu (THRESHOLDS = 1: bit = acc >= T)
                                  [-> maxpool_bits (pool > 1)]
    ChainLayer, integer input     [sliding_window (pad 0)] -> int_mvu (the +-1 weights as 2-bit integers)
      (the first layer of an      -> channel_affine (MULT 1, BIAS -T, SHIFT 0, OUT_BITS 2: acc - T clamped) and
       8-bit image, CNV)             the inverted sign bit of each lane (bit = acc - T >= 0) [-> maxpool_bits]
    ChainLayer, last              the same without thresholds: binary_mvu (THRESHOLDS = 0) accumulators
    AffineLogits                  channel_affine (MULT = mult, BIAS = bias, SHIFT = 0, OUT_BITS from the worst case)

The window is skipped where a layer is a dense layer (a 1x1 kernel at stride 1: one vector per pixel, or one vector
for the whole frame when the layer flattens its input). The reference flattens NCHW (``ChainStage`` /
``BinaryChainNetwork.run`` reshape), the stream delivers the frame pixel-major, so the weight columns of a dense
layer after a C x H x W frame with H*W > 1 are permuted into stream order
(:func:`instabnn.hw.blocks.common.stream_order.stream_order_columns`). The image input is what the lowered graph's
``image`` is:
TFC's input is binarized on the host (``BinaryChainNetwork.quantize_input``; ``input_bits`` 1), so its top level
takes one 1-bit lane per pixel of the flattened image (784 lanes, one beat); CNV's takes 3 lanes of 8 bits.

Folding (PE / SIMD in the node, as for the other ops): SIMD input elements per beat (divides the input channels of
a convolution, or the vector length of a dense layer), PE output channels per beat (divides the output channels);
the maximum pool and the threshold path run at the MVU's PE. ``AffineLogits``: PE logits per beat.
:class:`~instabnn.hw.compile.compiler.Compiler` inherits these handlers; its ``run`` calls
:meth:`ChainEmitters.start_chain`.
"""

from __future__ import annotations

import numpy as np

from instabnn.hw.blocks.channel_affine.spec import write_const_file as write_affine_file
from instabnn.hw.blocks.common.stream_order import stream_order_columns
from instabnn.hw.blocks.binary_mvu.spec import write_threshold_file, write_weight_file
from instabnn.hw.blocks.int_mvu.spec import write_int_weight_file
from instabnn.contract.window import conv_weight_matrix

__all__ = ["ChainEmitters"]


class ChainEmitters:
    """The chain handlers; mixed into the compiler (uses its ``net``, ``take``, ``publish``, ``layer_object``,
    ``window``, ``affine``, ``place``). The blocks and their specs come from the op (``ChainLayer.blocks``)."""

    def start_chain(self) -> bool:
        """For a chain graph (first node a ``ChainLayer``): make the image stream, one beat per pixel of the
        ``image`` input with its channels as lanes of its width (``in_bits`` of the first node), and return True.
        Any other graph: False, nothing made."""
        from instabnn.hw.compile.compiler import CompileError, _attrs

        first = self.model.graph.node[0]
        if first.op_type != "ChainLayer":
            if any(n.op_type in ("ChainLayer", "AffineLogits") for n in self.model.graph.node):
                raise CompileError(f"node {first.name} ({first.op_type}): a chain graph must start with a ChainLayer")
            return False
        op = self.getCustomOp(first)
        _, in_shapes, _, _, _ = _attrs(op)
        _, cin, h, w = in_shapes[:4]
        self.input_stream = self.net.stream("image", cin, op.get_nodeattr("in_bits")[0], h * w)
        return True

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _sign_bits(self, node, y, pe: int):
        """Bits (y >= 0) of a stream of PE 2-bit two's-complement lanes: each lane's inverted sign bit."""
        bits = self.net.stream(f"{node.name}_bits", pe, 1, y.beats)
        lanes = ", ".join(f"~{y.name}_tdata[{i * y.bits + y.bits - 1}]" for i in reversed(range(pe)))
        self.net.lines.append(f"assign {bits.name}_tdata = {{{lanes}}};\nassign {bits.name}_tvalid = {y.name}_tvalid;\n"
                              f"assign {y.name}_tready = {bits.name}_tready;")
        return bits

    # ---- handlers ----------------------------------------------------------------------------------------------

    def emit_ChainLayer(self, node, op):
        from instabnn.hw.compile.compiler import CompileError

        _, cin, h, w = op.get_normal_input_shape()
        out_shape = op.get_normal_output_shape()
        stage = self.layer_object(node)
        weight = np.asarray(stage.weight_bits, np.int64)
        cout, wcin, k = weight.shape[0], weight.shape[1], weight.shape[-1]
        blocks = op.blocks()
        mvu_block = next(b for b in blocks if b.module.endswith("_mvu"))
        mvu, vectors, simd, pe = mvu_block.spec, mvu_block.vectors, op.get_nodeattr("SIMD"), op.get_nodeattr("PE")
        x = self.take(node)
        if x.bits != op.input_stream_bits():
            raise CompileError(f"node {node.name}: takes {op.input_stream_bits()}-bit lanes, got {x.bits}-bit lanes")
        x = self.net.lanes_to(x, simd)
        swg = blocks[0].spec if blocks[0].module == "sliding_window" else None
        memory = 0
        if swg is None and k == 1 and wcin != cin:  # dense layer after a frame: the reference flattens NCHW
            matrix = weight[:, :, 0, 0][:, stream_order_columns(cin, h, w)]
        elif swg is None:  # pointwise: one vector per pixel (a dense layer on a 1x1 frame)
            matrix = weight[:, :, 0, 0]
        else:
            x = self.window(node, blocks[0], x)
            matrix = conv_weight_matrix(weight)
            memory += swg.buffer_bits
        mw = matrix.shape[1]
        thresholds = stage.thresholds is not None
        wfile = self.net.mem_file(f"{node.name}_weight")
        if op.integer_input:
            write_int_weight_file(wfile, 2 * matrix - 1, mvu)
            acc = self.net.stream(f"{node.name}_acc", pe, mvu.acc_bits, vectors * mvu.nf)
            self.place(mvu_block, self.net.mvu("int_mvu", f"{node.name}_mvu", mvu, mvu.rtl_parameters(wfile.name), x,
                                               acc))
            memory += mw * cout * 2
            out = acc
            if thresholds:
                affine = next(b for b in blocks if b.module == "channel_affine")
                spec = affine.spec
                cfile = self.net.mem_file(f"{node.name}_threshold")
                write_affine_file(cfile, spec)
                y = self.net.stream(f"{node.name}_cmp", pe, 2, acc.beats)
                self.place(affine, self.net.block("channel_affine", f"{node.name}_threshold",
                                                  spec.rtl_parameters(cfile.name), {"s_axis": acc}, y, spec=spec))
                out = self._sign_bits(node, y, pe)
                memory += cout * (spec.mult_bits + spec.bias_bits)
        else:
            write_weight_file(wfile, 2 * matrix - 1, mvu)
            tfile = None
            if thresholds:
                tfile = self.net.mem_file(f"{node.name}_threshold")
                write_threshold_file(tfile, np.asarray(stage.thresholds, np.int64), mvu)
                memory += cout * mvu.thresh_bits
            out = self.net.stream(f"{node.name}_{'bits' if thresholds else 'acc'}", pe, mvu.out_lane_bits,
                                  vectors * mvu.nf)
            self.place(mvu_block, self.net.mvu("binary_mvu", f"{node.name}_mvu", mvu,
                                               mvu.rtl_parameters(wfile.name, tfile.name if tfile else None), x, out))
            memory += mw * cout
        oh, ow = (swg.out_height, swg.out_width) if swg is not None else ((1, 1) if vectors == 1 else (h, w))
        if (oh, ow) != tuple(out_shape[2:4]) and stage.pool == 1:
            raise CompileError(f"node {node.name}: {oh}x{ow} output pixels, the graph says {list(out_shape)}")
        if stage.pool > 1:
            if not thresholds:
                raise CompileError(f"node {node.name}: a max-pool needs the thresholded bits")
            pool_block = blocks[-1]
            pool = pool_block.spec
            pooled = self.net.stream(f"{node.name}_pool", pe, 1, pool.out_frame_beats)
            self.place(pool_block, self.net.block("maxpool_bits", f"{node.name}_pool", pool.rtl_parameters(),
                                                  {"s_axis": out}, pooled, spec=pool))
            out = pooled
            memory += pool.row_buffer_bits
        self.net.layer.memory_bits = memory
        self.publish(node.output[0], out)

    def emit_AffineLogits(self, node, op):
        from instabnn.hw.compile.compiler import CompileError

        [affine] = op.blocks()
        spec = affine.spec
        acc = self.take(node)
        if max(2, acc.bits) != spec.in_bits:
            raise CompileError(f"node {node.name}: its blocks take {spec.in_bits}-bit accumulators, got {acc.bits}")
        self.classes = spec.channels
        out = self.affine(node, affine, acc)
        self.net.layer.memory_bits = spec.channels * (spec.mult_bits + spec.bias_bits)
        self.publish(node.output[0], out)
