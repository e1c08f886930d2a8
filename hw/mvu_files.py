"""Shape, RTL parameters and memory-init files of the binary matrix-vector unit (``hw/rtl/binary_mvu.sv``).

:class:`BinaryMvuShape` is the one source of truth for the unit's folding: the RTL parameters, stream widths,
accumulator width, memory layouts, cycle count and latency are all derived from it (and the RTL derives the same
numbers from the same five parameters; the testbench checks that they agree).

Memory-init files (``$readmemh``, generated; the first line is a ``//`` comment saying so)
-----------------------------------------------------------------------------------------
Output channel ``o`` is computed by PE lane ``pe = o % PE`` in neuron fold ``nf = o // PE``; input element ``k``
arrives in synapse fold ``sf = k // SIMD`` at bit ``k % SIMD`` of the beat (``SF = MW/SIMD``, ``NF = MH/PE``).

``WEIGHT_FILE``: ``NF*SF`` lines, line ``f = nf*SF + sf`` (the order in which the unit consumes them) is one
weight-fold word of ``PE*SIMD`` bits holding all PE lanes; lane ``pe`` at bits ``[pe*SIMD, (pe+1)*SIMD)`` holds
``W[nf*PE + pe, sf*SIMD : (sf+1)*SIMD]`` with element ``i`` at bit ``i`` and ``-1 -> 0``, ``+1 -> 1``.

``THRESH_FILE`` (``THRESHOLDS = 1`` only): ``NF`` lines, line ``nf`` holds ``PE`` lanes of ``ACC_BITS + 1`` bits,
lane ``pe`` = the two's-complement integer threshold of channel ``nf*PE + pe``: the unit outputs bit 1 (+1) where
``acc >= T``. Thresholds are stored as ``ceil(T)`` clipped to ``[-MW, MW + 1]``, which changes no comparison with an
accumulator in ``[-MW, MW]`` (see :func:`hardware_thresholds`).

Example::

    shape = BinaryMvuShape(mw=64, mh=8, simd=16, pe=4, thresholds=1)
    write_weight_file(build / "w.mem", weights, shape)           # weights: (8, 64) in {-1, +1}
    write_threshold_file(build / "t.mem", thresholds, shape)     # thresholds: (8,)
    params = shape.rtl_parameters(build / "w.mem", build / "t.mem")

Integer MVU (``hw/rtl/int_mvu.sv``)
-----------------------------------
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

from instabnn.hw.packing import hex_digits, pack_bipolar, pack_fields, to_hex, unpack_bipolar, unpack_fields
from instabnn.hw.reference.mvu import accumulator_bits, integer_accumulator_bits, integer_range

__all__ = [
    "BinaryMvuShape",
    "PIPELINE_LATENCY",
    "weight_words",
    "threshold_words",
    "hardware_thresholds",
    "weights_from_words",
    "write_memh",
    "read_memh",
    "write_weight_file",
    "write_threshold_file",
    "IntMvuShape",
    "INT_PIPELINE_LATENCY",
    "int_weight_words",
    "int_weights_from_words",
    "bias_words",
    "write_int_weight_file",
    "write_bias_file",
]

PIPELINE_LATENCY = 4
"""Clock edges from the issue of the last step ``(nf, SF-1)`` of an output fold (for ``nf = 0``: the edge that
accepts the vector's last ``s_axis`` beat) to the earliest ``m_axis`` handshake of that fold's output beat, with
the output FIFO empty: issued at edge ``t`` (operand and weight read), XNOR-popcount at ``t+1``, accumulate at
``t+2``, output FIFO at ``t+3`` (``m_axis_tvalid`` high from here), handshake at ``t+4``. Stated in the RTL
header; measured by the testbench."""


@dataclass(frozen=True)
class MvuFolding:
    """The FINN MVAU folding both matrix-vector units share: ``MH x MW``, ``SIMD`` inputs x ``PE`` outputs per clock,
    ``SF = MW / SIMD`` input beats and ``NF = MH / PE`` output beats per vector, one step per clock."""

    mw: int  # input vector length (K*K*Cin)
    mh: int  # output channels
    simd: int  # input elements per beat, divides mw
    pe: int  # output channels per beat, divides mh

    def check_folding(self):
        for name in ("mw", "mh", "simd", "pe"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.mw % self.simd:
            raise ValueError(f"SIMD ({self.simd}) must divide MW ({self.mw})")
        if self.mh % self.pe:
            raise ValueError(f"PE ({self.pe}) must divide MH ({self.mh})")

    @property
    def sf(self) -> int:
        """Synapse folds: input beats per vector, ``MW / SIMD``."""
        return self.mw // self.simd

    @property
    def nf(self) -> int:
        """Neuron folds: output beats per vector, ``MH / PE``."""
        return self.mh // self.pe

    @property
    def cycles_per_vector(self) -> int:
        """Clock cycles per input vector in steady state without stalls: ``SF * NF``."""
        return self.sf * self.nf


@dataclass(frozen=True)
class BinaryMvuShape(MvuFolding):
    """Folding of a ``MH x MW`` binary matrix-vector unit: ``SIMD`` inputs x ``PE`` outputs per clock."""

    thresholds: int = 0  # 0: output accumulators; 1: output acc >= T[o] bits

    def __post_init__(self):
        self.check_folding()
        if self.thresholds not in (0, 1):
            raise ValueError(f"THRESHOLDS must be 0 or 1, got {self.thresholds}")

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width that holds ``[-MW, MW]``."""
        return accumulator_bits(self.mw)

    @property
    def thresh_bits(self) -> int:
        """Signed threshold width: holds ``[-MW, MW + 1]`` (``MW + 1``: a channel that is never +1)."""
        return self.acc_bits + 1

    @property
    def out_lane_bits(self) -> int:
        """Bits per PE lane of ``m_axis_tdata``: 1 with thresholds, else ``ACC_BITS``."""
        return 1 if self.thresholds else self.acc_bits

    @property
    def in_width(self) -> int:
        """``s_axis_tdata`` width."""
        return self.simd

    @property
    def out_width(self) -> int:
        """``m_axis_tdata`` width."""
        return self.pe * self.out_lane_bits

    @property
    def latency(self) -> int:
        """See :data:`PIPELINE_LATENCY`."""
        return PIPELINE_LATENCY

    @property
    def name(self) -> str:
        return f"mw{self.mw}_mh{self.mh}_simd{self.simd}_pe{self.pe}_th{self.thresholds}"

    def rtl_parameters(self, weight_file: str | PathLike, thresh_file: str | PathLike | None = None) -> dict:
        """Parameters of ``binary_mvu`` (string parameters quoted for Verilator's ``-G``)."""
        params = {"MW": self.mw, "MH": self.mh, "SIMD": self.simd, "PE": self.pe, "THRESHOLDS": self.thresholds}
        params["WEIGHT_FILE"] = f'"{Path(weight_file)}"'
        if self.thresholds:
            if thresh_file is None:
                raise ValueError("THRESHOLDS = 1 needs a THRESH_FILE")
            params["THRESH_FILE"] = f'"{Path(thresh_file)}"'
        return params


def _check_weights(weights, shape: BinaryMvuShape) -> np.ndarray:
    w = np.asarray(weights)
    if w.shape != (shape.mh, shape.mw):
        raise ValueError(f"weights must have shape ({shape.mh}, {shape.mw}), got {w.shape}")
    return w


def weight_words(weights, shape: BinaryMvuShape) -> list[int]:
    """The ``NF*SF`` weight-fold words (``PE*SIMD`` bits each) in memory order; see the module docstring."""
    w = _check_weights(weights, shape)
    words = []
    for nf in range(shape.nf):
        for sf in range(shape.sf):
            lanes = [
                pack_bipolar(w[nf * shape.pe + pe, sf * shape.simd : (sf + 1) * shape.simd]) for pe in range(shape.pe)
            ]
            words.append(pack_fields(lanes, shape.simd, signed=False))
    return words


def weights_from_words(words, shape: BinaryMvuShape) -> np.ndarray:
    """Inverse of :func:`weight_words`: the ``(MH, MW)`` bipolar matrix (int64)."""
    if len(words) != shape.nf * shape.sf:
        raise ValueError(f"expected {shape.nf * shape.sf} weight words, got {len(words)}")
    w = np.empty((shape.mh, shape.mw), dtype=np.int64)
    for f, word in enumerate(words):
        nf, sf = divmod(f, shape.sf)
        lanes = unpack_fields(word, shape.simd, shape.pe)
        for pe, lane in enumerate(lanes):
            w[nf * shape.pe + pe, sf * shape.simd : (sf + 1) * shape.simd] = unpack_bipolar(int(lane), shape.simd)
    return w


def hardware_thresholds(thresholds, mw: int) -> np.ndarray:
    """One threshold per channel as the integers the RTL compares with: ``clip(ceil(T), -MW, MW + 1)``.

    For every integer ``acc`` in ``[-MW, MW]``: ``acc >= T  <=>  acc >= hardware_thresholds(T)``.
    ``thresholds``: shape ``(MH,)`` or ``(MH, 1)``.
    """
    t = np.asarray(thresholds)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"the unit takes one threshold per channel, shape (MH,) or (MH, 1); got {t.shape}")
    if np.issubdtype(t.dtype, np.integer):
        t = t.astype(np.int64)
    else:
        t = t.astype(np.float64)
        if np.any(np.isnan(t)):
            raise ValueError("thresholds must not be NaN")
        t = np.ceil(np.clip(t, -mw - 1, mw + 2)).astype(np.int64)
    return np.clip(t, -mw, mw + 1)


def threshold_words(thresholds, shape: BinaryMvuShape) -> list[int]:
    """The ``NF`` threshold words (``PE`` lanes of ``ACC_BITS + 1`` bits) in memory order."""
    t = hardware_thresholds(thresholds, shape.mw)
    if t.shape != (shape.mh,):
        raise ValueError(f"expected {shape.mh} thresholds, got {t.shape[0]}")
    return [
        pack_fields(t[nf * shape.pe : (nf + 1) * shape.pe], shape.thresh_bits, signed=True) for nf in range(shape.nf)
    ]


def write_memh(path: str | PathLike, words, bits: int, comment: str = "") -> Path:
    """Write ``words`` as a ``$readmemh`` file: one zero-padded hex word of ``bits`` bits per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"// generated by instabnn.hw.mvu_files; do not edit. {comment}".rstrip()]
    lines += [to_hex(w, bits) for w in words]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_memh(path: str | PathLike, bits: int | None = None) -> list[int]:
    """Read a file written by :func:`write_memh` (``//`` comments and blank lines skipped): one word per line of
    hex digits only (``hex_digits(bits)`` of them when ``bits`` is given). ValueError naming the file and line
    otherwise."""
    words, hexdigits = [], "0123456789abcdefABCDEF"
    for number, text in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        line = text.split("//", 1)[0].strip()
        if not line:
            continue
        if not all(c in hexdigits for c in line):
            bad = next(c for c in line if c not in hexdigits)
            raise ValueError(f"{path}:{number}: {bad!r} in {line!r} is not a hex digit")
        if bits is not None and len(line) != hex_digits(bits):
            raise ValueError(f"{path}:{number}: {line!r} is not {hex_digits(bits)} hex digits")
        words.append(int(line, 16))
    return words


def write_weight_file(path: str | PathLike, weights, shape: BinaryMvuShape) -> Path:
    """Write ``WEIGHT_FILE`` for ``weights`` of shape ``(MH, MW)`` in {-1, +1}."""
    return write_memh(
        path,
        weight_words(weights, shape),
        shape.pe * shape.simd,
        f"binary_mvu WEIGHT_FILE {shape.name}: line nf*SF+sf, lane pe at bits [pe*SIMD +: SIMD]",
    )


def write_threshold_file(path: str | PathLike, thresholds, shape: BinaryMvuShape) -> Path:
    """Write ``THRESH_FILE`` for one threshold per output channel (shape ``(MH,)``)."""
    return write_memh(
        path,
        threshold_words(thresholds, shape),
        shape.pe * shape.thresh_bits,
        f"binary_mvu THRESH_FILE {shape.name}: line nf, lane pe (signed {shape.thresh_bits} bits) = T[nf*PE+pe]",
    )


# ----------------------------------------------------------------------------------------------------------------
# Integer MVU (hw/rtl/int_mvu.sv)
# ----------------------------------------------------------------------------------------------------------------

INT_PIPELINE_LATENCY = 5
"""Clock edges from the issue of the last step ``(nf, SF-1)`` of an output fold (for ``nf = 0``: the edge that
accepts the vector's last ``s_axis`` beat) to the earliest ``m_axis`` handshake of that fold's output beat, with
the output FIFO empty: issue (operand, weight and bias read) at edge ``t``, products at ``t+1``, adder trees at
``t+2``, accumulate at ``t+3``, output FIFO at ``t+4``, handshake at ``t+5``. Stated in the RTL header; measured
by the testbench."""


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
