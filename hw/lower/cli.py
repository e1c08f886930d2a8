"""``python -m instabnn.hw.lower`` / ``instabnn-lower``: lower an exported graph, check the lowered graph against
the integer network, and write ``lowered.onnx``, ``lowered.json`` and ``lowered.md``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from instabnn.contract import layers as L
from instabnn.hw.lower.chain import finn_crosscheck
from instabnn.hw.lower.dispatch import lower_graph
from instabnn.hw.lower.graph_reader import LoweringError
from instabnn.hw.lower.lowered_graph import execute_lowered, to_onnx
from instabnn.hw.lower.read import read_graph
from instabnn.hw.lower.report import agreement, evaluation_inputs, layer_table, markdown


def main(argv=None) -> int:
    from instabnn.hw import lower
    from instabnn.model.arguments import Parser, positive_int
    from instabnn.outputs import atomic_write_text

    p = Parser(prog="instabnn-lower", description=lower.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an .onnx file: instabnn-export's, or Brevitas' export_qonnx (either exporter)")
    p.add_argument("-n", type=positive_int, default=None, help="images compared (default: the whole digits test "
                                                               "split, or 16 generated inputs)")
    p.add_argument("--out", default=None, help="report directory (default: next to the model)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    start = time.time()
    out = Path(args.out) if args.out else Path(args.model).parent
    try:
        if out.exists() and not out.is_dir():
            raise LoweringError(f"--out {out}: not a directory (the reports go into a directory)")
        model = read_graph(args.model)
        net = lower_graph(model, args.model)
        images, labels, source = evaluation_inputs(args.model, args.n)
        report = {"model": str(args.model), "inputs": source, "layers": layer_table(net),
                  "agreement": agreement(model, net, images, labels, not args.no_progress)}
    except (LoweringError, L.ContractError) as e:
        print(f"instabnn-lower: error: {e}", file=sys.stderr)
        return 2
    lowered = to_onnx(net, images.shape[1:])  # (a plain W1A1 network: its graph starts after preprocessing)
    from instabnn.model.export import carry_training_data, read_metadata

    carry_training_data(read_metadata(args.model), lowered.model)
    from instabnn.contract.network import BinaryChainNetwork

    if isinstance(net, BinaryChainNetwork):
        report["finn_crosscheck"] = finn_crosscheck(model, net)
    q0 = net.quantize_input(images)
    graph_logits = execute_lowered(lowered, q0, not args.no_progress)
    report["agreement"]["lowered_graph_identical"] = bool(np.array_equal(graph_logits, net.run(q0)))
    if not report["agreement"]["lowered_graph_identical"]:
        print("instabnn-lower: error: the lowered graph's execution differs from the integer network",
              file=sys.stderr)
        return 2
    report["seconds"] = round(time.time() - start, 2)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".lowered.onnx.tmp"
    lowered.save(str(tmp))
    tmp.replace(out / "lowered.onnx")
    atomic_write_text(out / "lowered.json", json.dumps(report, indent=1, default=str))
    atomic_write_text(out / "lowered.md", markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'lowered.onnx'} (hardware layers, domain instabnn.hw.ops), {out / 'lowered.json'} and "
          f"{out / 'lowered.md'}")
    return 0

