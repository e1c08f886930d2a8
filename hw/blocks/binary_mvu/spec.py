"""Shape, RTL parameters and memory-init files of the binary matrix-vector unit (``binary_mvu.sv`` beside this file).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from instabnn.hw.blocks.common.memfile import write_memh
from instabnn.hw.blocks.common.mvu_folding import MvuFolding
from instabnn.hw.blocks.common.resources import RAM_STYLES, estimate, popcount_luts
from instabnn.contract.packing import pack_bipolar, pack_fields, unpack_bipolar, unpack_fields
from instabnn.contract.mvu import accumulator_bits

__all__ = [
    "BinaryMvuShape",
    "PIPELINE_LATENCY",
    "weight_words",
    "threshold_words",
    "hardware_thresholds",
    "weights_from_words",
    "write_weight_file",
    "write_threshold_file",
]

PIPELINE_LATENCY = 5
"""Clock edges from the issue of the last step ``(nf, SF-1)`` of an output fold (for ``nf = 0``: the edge that
accepts the vector's last ``s_axis`` beat) to the earliest ``m_axis`` handshake of that fold's output beat, with
the output FIFO empty: issued at edge ``t`` (operand and weight read), the weight memory's output register at
``t+1``, XNOR-popcount at ``t+2``, accumulate at ``t+3``, output FIFO at ``t+4`` (``m_axis_tvalid`` high from
here), handshake at ``t+5``. Stated in the RTL header; measured by the testbench."""


@dataclass(frozen=True)
class BinaryMvuShape(MvuFolding):
    """Folding of a ``MH x MW`` binary matrix-vector unit: ``SIMD`` inputs x ``PE`` outputs per clock."""

    thresholds: int = 0  # 0: output accumulators; 1: output acc >= T[o] bits
    ram_style: str = "auto"  # the weight memory: "auto" (the synthesis tool's choice) or "block" (block RAM)

    def __post_init__(self):
        self.check_folding()
        if self.thresholds not in (0, 1):
            raise ValueError(f"THRESHOLDS must be 0 or 1, got {self.thresholds}")
        if self.ram_style not in RAM_STYLES:
            raise ValueError(f"RAM_STYLE must be one of {', '.join(RAM_STYLES)}, got {self.ram_style!r}")

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
        style = "" if self.ram_style == "auto" else f"_{self.ram_style}"
        return f"mw{self.mw}_mh{self.mh}_simd{self.simd}_pe{self.pe}_th{self.thresholds}{style}"

    def resources(self) -> dict:
        """{lut, bram36, dsp} estimate: the PE popcounts of SIMD bits (``popcount.sv`` as built, less what Yosys
        shares: 0.92), the accumulators and threshold compares, the weight ROM with its XNOR (``SF*NF`` words of
        ``PE*SIMD`` bits: in LUTs where shallow and wide, see :func:`~instabnn.hw.blocks.common.resources.rom`),
        the threshold ROM and the input vector buffer. Fitted to Yosys of PE 4 x SIMD 256 at one weight word
        (1,966 LUT) and PE 16 x SIMD 64 at 36 words (3,952 LUT, no block RAM). ``ram_style = "block"`` puts the
        weight ROM in block RAM at any depth."""
        pe = self.pe
        roms = [(self.sf * self.nf, pe * self.simd, 1, self.ram_style)]
        if self.thresholds:
            roms.append((self.nf, pe * self.thresh_bits))
        return estimate(f"binary_mvu {self.name}",
                        lut=60 + 0.92 * pe * popcount_luts(self.simd) + 1.5 * pe * self.acc_bits,
                        memories=((self.sf if self.sf > 1 else 0, self.simd),), roms=tuple(roms))

    def rtl_parameters(self, weight_file: str | PathLike, thresh_file: str | PathLike | None = None) -> dict:
        """Parameters of ``binary_mvu`` (string parameters quoted for Verilator's ``-G``)."""
        params = {"MW": self.mw, "MH": self.mh, "SIMD": self.simd, "PE": self.pe, "THRESHOLDS": self.thresholds,
                  "RAM_STYLE": f'"{self.ram_style}"'}
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
