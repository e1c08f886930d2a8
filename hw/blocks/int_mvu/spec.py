"""Shape, RTL parameters and memory-init files of the integer matrix-vector unit (``int_mvu.sv`` beside this file).

:class:`IntMvuShape` is the same kind of spec for the integer unit (signed ``WEIGHT_BITS``-bit weights, signed or
unsigned ``INPUT_BITS``-bit inputs, optional signed ``BIAS_BITS``-bit biases). Its ``WEIGHT_FILE`` has the same
line order (line ``nf*SF + sf``, lane ``pe`` at bits ``[pe*SIMD*WEIGHT_BITS, (pe+1)*SIMD*WEIGHT_BITS)``), with element
``i`` of a lane at bits ``[i*WEIGHT_BITS, (i+1)*WEIGHT_BITS)`` as a two's-complement integer; its ``BIAS_FILE`` has
``NF`` lines of ``PE`` two's-complement lanes of ``BIAS_BITS`` bits (lane ``pe`` of line ``nf`` = ``b[nf*PE + pe]``).
Input beats carry ``SIMD`` elements of ``INPUT_BITS`` bits (element ``i`` at bits ``[i*INPUT_BITS, ...)``), output
beats ``PE`` accumulators of ``ACC_BITS`` bits. Example::

    shape = IntMvuShape(mw=27, mh=16, simd=9, pe=4, weight_bits=8, input_bits=8, input_signed=0)
    write_int_weight_file(build / "w.mem", weights, shape)       # weights: (16, 27), int8
    params = shape.rtl_parameters(build / "w.mem")
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.resources import estimate
from instabnn.hw.blocks.common.memfile import write_memh
from instabnn.hw.blocks.common.mvu_folding import MvuFolding
from instabnn.contract.packing import pack_fields, unpack_fields
from instabnn.contract.mvu import integer_accumulator_bits, integer_range

__all__ = [
    "IntMvuShape",
    "INT_PIPELINE_LATENCY",
    "int_weight_words",
    "int_weights_from_words",
    "bias_words",
    "write_int_weight_file",
    "write_bias_file",
]

INT_PIPELINE_LATENCY = 7
"""Clock edges from the issue of the last step ``(nf, SF-1)`` of an output fold (for ``nf = 0``: the edge that
accepts the vector's last ``s_axis`` beat) to the earliest ``m_axis`` handshake of that fold's output beat, with
the output FIFO empty: issue (operand and weight read) at edge ``t``, the weight memory's output register at
``t+1``, the multiplier operands and the bias read at ``t+2``, products at ``t+3``, adder trees at ``t+4``,
accumulate at ``t+5``, output FIFO at ``t+6``, handshake at ``t+7``. Stated in the RTL header; measured by the testbench."""


@dataclass(frozen=True)
class IntMvuShape(MvuFolding):
    """Folding and number formats of a ``MH x MW`` integer matrix-vector unit: ``SIMD`` inputs x ``PE`` outputs per
    clock, signed ``weight_bits``-bit weights, ``input_bits``-bit inputs (signed if ``input_signed``), optional
    signed ``bias_bits``-bit biases (0: none). The RTL checks the same constraints with ``$fatal``."""

    weight_bits: int = 8
    input_bits: int = 8
    input_signed: int = 1  # 1: two's-complement inputs; 0: unsigned
    bias_bits: int = 0  # 0: no bias

    def __post_init__(self):
        self.check_folding()
        if self.input_signed not in (0, 1):
            raise ValueError(f"INPUT_SIGNED must be 0 or 1, got {self.input_signed}")
        if not 2 <= self.weight_bits <= 24:
            raise ValueError(f"WEIGHT_BITS ({self.weight_bits}) must be in [2, 24]")
        if not 1 + self.input_signed <= self.input_bits <= 24:
            raise ValueError(f"INPUT_BITS ({self.input_bits}) must be in [{1 + self.input_signed}, 24]")
        if not 0 <= self.bias_bits <= 48:
            raise ValueError(f"BIAS_BITS ({self.bias_bits}) must be in [0, 48]")
        if self.weight_bits + self.input_bits + (self.mw).bit_length() > 56:
            raise ValueError("WEIGHT_BITS + INPUT_BITS + clog2(MW+1) must be <= 56")

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width from the worst case (:func:`integer_accumulator_bits`)."""
        return integer_accumulator_bits(self.mw, self.weight_bits, self.input_bits, bool(self.input_signed),
                                        self.bias_bits)

    @property
    def weight_range(self) -> tuple[int, int]:
        return integer_range(self.weight_bits, True)

    @property
    def input_range(self) -> tuple[int, int]:
        return integer_range(self.input_bits, bool(self.input_signed))

    @property
    def bias_range(self) -> tuple[int, int]:
        return integer_range(self.bias_bits, True)

    @property
    def in_width(self) -> int:
        """``s_axis_tdata`` width: ``SIMD * INPUT_BITS``."""
        return self.simd * self.input_bits

    @property
    def out_width(self) -> int:
        """``m_axis_tdata`` width: ``PE * ACC_BITS``."""
        return self.pe * self.acc_bits

    @property
    def latency(self) -> int:
        """See :data:`INT_PIPELINE_LATENCY`."""
        return INT_PIPELINE_LATENCY

    @property
    def name(self) -> str:
        sign = "s" if self.input_signed else "u"
        bias = f"_b{self.bias_bits}" if self.bias_bits else ""
        return f"mw{self.mw}_mh{self.mh}_simd{self.simd}_pe{self.pe}_w{self.weight_bits}_x{sign}{self.input_bits}{bias}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: one DSP a multiplier, the adder trees, and the weight memory."""
        pe, simd = self.pe, self.simd
        return estimate(f"int_mvu {self.name}", lut=40 + 1.2 * pe * simd * self.acc_bits / 2, dsp=pe * simd,
                        memories=((self.sf * self.nf, pe * simd * self.weight_bits),))

    def rtl_parameters(self, weight_file: str | PathLike, bias_file: str | PathLike | None = None) -> dict:
        """Parameters of ``int_mvu`` (string parameters quoted for Verilator's ``-G``)."""
        params = {
            "MW": self.mw, "MH": self.mh, "SIMD": self.simd, "PE": self.pe, "WEIGHT_BITS": self.weight_bits,
            "INPUT_BITS": self.input_bits, "INPUT_SIGNED": self.input_signed, "BIAS_BITS": self.bias_bits,
        }
        params["WEIGHT_FILE"] = f'"{Path(weight_file)}"'
        if self.bias_bits:
            if bias_file is None:
                raise ValueError("BIAS_BITS > 0 needs a BIAS_FILE")
            params["BIAS_FILE"] = f'"{Path(bias_file)}"'
        return params


def _check_int_weights(weights, shape: IntMvuShape) -> np.ndarray:
    w = np.asarray(weights)
    if w.shape != (shape.mh, shape.mw):
        raise ValueError(f"weights must have shape ({shape.mh}, {shape.mw}), got {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"weights must be integers, got {w.dtype}")
    lo, hi = shape.weight_range
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"weights must be signed {shape.weight_bits}-bit integers in [{lo}, {hi}]")
    return w.astype(np.int64)


def int_weight_words(weights, shape: IntMvuShape) -> list[int]:
    """The ``NF*SF`` weight-fold words (``PE*SIMD*WEIGHT_BITS`` bits each) of ``int_mvu`` in memory order: lane ``pe``
    of word ``nf*SF + sf`` holds ``W[nf*PE + pe, sf*SIMD : (sf+1)*SIMD]``, element ``i`` in field ``i``."""
    w = _check_int_weights(weights, shape)
    words = []
    for nf in range(shape.nf):
        for sf in range(shape.sf):
            block = w[nf * shape.pe : (nf + 1) * shape.pe, sf * shape.simd : (sf + 1) * shape.simd]
            words.append(pack_fields(block.ravel(), shape.weight_bits, signed=True))  # lane-major, element-minor
    return words


def int_weights_from_words(words, shape: IntMvuShape) -> np.ndarray:
    """Inverse of :func:`int_weight_words`: the ``(MH, MW)`` int64 weight matrix."""
    if len(words) != shape.nf * shape.sf:
        raise ValueError(f"expected {shape.nf * shape.sf} weight words, got {len(words)}")
    w = np.empty((shape.mh, shape.mw), dtype=np.int64)
    for f, word in enumerate(words):
        nf, sf = divmod(f, shape.sf)
        fields = unpack_fields(word, shape.weight_bits, shape.pe * shape.simd, signed=True)
        w[nf * shape.pe : (nf + 1) * shape.pe, sf * shape.simd : (sf + 1) * shape.simd] = fields.reshape(
            shape.pe, shape.simd
        )
    return w


def bias_words(bias, shape: IntMvuShape) -> list[int]:
    """The ``NF`` bias words (``PE`` signed lanes of ``BIAS_BITS`` bits) of ``int_mvu`` in memory order."""
    if not shape.bias_bits:
        raise ValueError("the shape has no bias (bias_bits = 0)")
    b = np.asarray(bias)
    if b.shape != (shape.mh,) or not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"bias must be integers of shape ({shape.mh},), got {b.dtype} {b.shape}")
    return [pack_fields(b[nf * shape.pe : (nf + 1) * shape.pe], shape.bias_bits, signed=True) for nf in range(shape.nf)]


def write_int_weight_file(path: str | PathLike, weights, shape: IntMvuShape) -> Path:
    """Write ``int_mvu``'s ``WEIGHT_FILE`` for integer ``weights`` of shape ``(MH, MW)``."""
    return write_memh(
        path,
        int_weight_words(weights, shape),
        shape.pe * shape.simd * shape.weight_bits,
        f"int_mvu WEIGHT_FILE {shape.name}: line nf*SF+sf, lane pe at bits [pe*SIMD*WB +: SIMD*WB], "
        "element i at [i*WB +: WB]",
    )


def write_bias_file(path: str | PathLike, bias, shape: IntMvuShape) -> Path:
    """Write ``int_mvu``'s ``BIAS_FILE`` for one signed bias per output channel (shape ``(MH,)``)."""
    return write_memh(
        path,
        bias_words(bias, shape),
        shape.pe * shape.bias_bits,
        f"int_mvu BIAS_FILE {shape.name}: line nf, lane pe (signed {shape.bias_bits} bits) = b[nf*PE+pe]",
    )
