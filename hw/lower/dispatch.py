"""Which lowering a canonical graph takes: residual (:mod:`instabnn.hw.lower.residual`) or plain W1A1
(:mod:`instabnn.hw.lower.chain`); the integer network of a file."""

from __future__ import annotations

from pathlib import Path

from instabnn.contract.network import IntegerNetwork
from instabnn.hw.lower.chain import lower_chain
from instabnn.hw.lower.graph_reader import LoweringError
from instabnn.hw.lower.read import read_graph
from instabnn.hw.lower.residual import lower_model


def is_residual(model) -> bool:
    return any(n.op_type in ("PRelu", "InstaShift") for n in model.graph.node)


def lower_model_any(model):
    """The integer network of a canonical graph (:func:`canonical`): INSTA-BNN / ReActNet-style residual networks,
    or plain W1A1."""
    return lower_model(model) if is_residual(model) else lower_chain(model)


def lower_graph(model, path: str | Path) -> IntegerNetwork:
    """:func:`lower_model_any` of the graph read from ``path`` (:func:`read_graph`), errors naming the file."""
    try:
        return lower_model_any(model)
    except LoweringError as e:
        raise LoweringError(f"{path}: {e}") from None


def lower_file(path: str | Path) -> IntegerNetwork:
    return lower_graph(read_graph(path), path)

