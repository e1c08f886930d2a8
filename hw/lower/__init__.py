"""Lower an exported QONNX graph to the integer network of the arithmetic contract, and report on it.

``python -m instabnn.hw.lower model.onnx`` (``make lower``) reads the graph the exporter writes
(:mod:`instabnn.model.export`), recognises each hardware layer by its node pattern, fixes its constants with the
functions of :mod:`instabnn.contract.layers` (the same ones the hardware-exact PyTorch mode uses), and writes
``lowered.json`` / ``lowered.md``: per layer the formats, accumulator widths, parameter memory in bits, and the
agreement of the integer network with the float graph (sign agreement per binarizer, top-1 agreement).

Patterns (x: a residual-stream tensor, the output of a signed power-of-two ``Quant``)::

    stem       Quant(image) -> Conv(Quant w) -> BatchNormalization -> Quant
    threshold  Sub(x, tau)                                                     RSign
               InstaShift(x, Mul(InstaStatistic(x), alpha); g=none)            INSTA-Th
               InstaShift(x, g(SE(InstaStatistic(x))); g=none)                 INSTA-Th+
    block      BipolarQuant(threshold) -> Pad(-1) -> Conv(BipolarQuant w) -> BatchNormalization -> Add(., shortcut)
    shortcut   x | AveragePool(x) | BatchNormalization(Conv(Quant w, AveragePool(x) | x))
    activation Sub(gamma) -> PRelu -> Add(zeta)                                RPReLU
               PRelu                                                           PReLU (RPReLU, gamma = zeta = 0)
               InstaShift(y, Mul(s, alpha) | SE(s); g) -> PRelu                INSTA-PReLU(+),
               s = InstaStatistic(y) | Add(Mul(s_th, u), v)  (statistics reuse)
               -> Quant
    head       GlobalAveragePool -> Flatten -> MatMul(Quant w) [-> Add(bias)]   (a Gemm is read as MatMul -> Add)

Anything else is refused with a :class:`LoweringError` naming the node and the reason; nothing is written then.
"""

from instabnn.hw.lower.chain import finn_crosscheck, finn_streamline, lower_chain
from instabnn.hw.lower.cli import main
from instabnn.hw.lower.dispatch import is_residual, lower_file, lower_graph, lower_model_any
from instabnn.hw.lower.graph_reader import GraphReader, LoweringError
from instabnn.hw.lower.lowered_graph import execute_lowered, to_onnx
from instabnn.hw.lower.read import canonical, load_onnx, read_graph
from instabnn.hw.lower.report import agreement, evaluation_inputs, layer_table, markdown, memory_bits
from instabnn.hw.lower.residual import lower_model

__all__ = ["GraphReader", "LoweringError", "agreement", "canonical", "evaluation_inputs", "execute_lowered",
           "finn_crosscheck", "finn_streamline", "is_residual", "layer_table", "load_onnx", "lower_chain",
           "lower_file", "lower_graph", "lower_model", "lower_model_any", "main", "markdown", "memory_bits",
           "read_graph", "to_onnx"]
