"""Folding: PE / SIMD per hardware layer of a lowered graph for a target throughput, FINN style.

``python -m instabnn.hw.folding lowered.onnx --target-fps 5000 --clock-mhz 100`` picks, for every node of a lowered
graph (:mod:`instabnn.hw.ops`), the least parallel (SIMD, PE) whose expected cycles per frame
(``get_exp_cycles``) meet the target: SIMD grows first (through the divisors of the input channels), then PE
(divisors of the output channels), as FINN's SetFolding does. It writes a folding config in FINN's format
(``{node name: {"PE": .., "SIMD": ..}}``), which FINN's ``ApplyConfig`` applies to the graph, so a user can edit it
and feed it back (``--config``). The report lists per layer the folding and cycles, the bottleneck, and the frames
per second it gives at the clock. Resource estimates are not part of it yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

class FoldingError(ValueError):
    """A target or config the graph cannot meet; the message names the node."""


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _candidates(op) -> list[dict[str, int]]:
    """(SIMD, PE) settings in order of growing parallelism: SIMD first, then PE."""
    options = op.fold_options()
    simds = divisors(options["SIMD"]) if "SIMD" in options else [1]
    pes = divisors(options["PE"])
    return [{"SIMD": s, "PE": 1} for s in simds] + [{"SIMD": simds[-1], "PE": p} for p in pes[1:]]


def choose_folding(model, target_cycles: int) -> dict:
    """The folding config (FINN ApplyConfig format) meeting ``target_cycles`` per frame where possible; nodes that
    cannot meet it get their most parallel setting (reported as the bottleneck)."""
    from qonnx.custom_op.registry import getCustomOp

    from instabnn.hw import ops

    config = {}
    for node in model.graph.node:
        if node.domain != ops.DOMAIN:
            raise FoldingError(f"node {node.name} ({node.op_type}): not a hardware layer of {ops.DOMAIN}; lower "
                               f"the model first (python -m instabnn.hw.lower)")
        op = getCustomOp(node)
        chosen = None
        for cand in _candidates(op):
            for k, v in cand.items():
                op.set_nodeattr(k, v)
            chosen = cand
            if op.get_exp_cycles() <= target_cycles:
                break
        config[node.name] = dict(chosen)
    return config


def apply_folding(model, config: dict | str | Path):
    from finn.transformation.general import ApplyConfig

    return model.transform(ApplyConfig(config))


def check_folding(model) -> None:
    """Every PE / SIMD divides the dimension it folds (FoldingError naming the node otherwise)."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        op = getCustomOp(node)
        for attr, dim in op.fold_options().items():
            v = op.get_nodeattr(attr)
            if v < 1 or dim % v:
                raise FoldingError(f"node {node.name} ({node.op_type}): {attr}={v} does not divide {dim}")


def folding_report(model) -> dict:
    from qonnx.custom_op.registry import getCustomOp

    rows = []
    for node in model.graph.node:
        op = getCustomOp(node)
        rows.append({"node": node.name, "op": node.op_type, "SIMD": op.get_nodeattr("SIMD"),
                     "PE": op.get_nodeattr("PE"), "cycles": int(op.get_exp_cycles())})
    bottleneck = max(rows, key=lambda r: r["cycles"])
    return {"layers": rows, "bottleneck": bottleneck["node"], "cycles_per_frame": bottleneck["cycles"]}


def main(argv=None) -> int:
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.model.checkpoint import atomic_write_text

    p = argparse.ArgumentParser(prog="instabnn-folding", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a lowered.onnx written by instabnn-lower")
    p.add_argument("--target-fps", type=float, default=5000.0)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--config", help="apply this folding config (FINN format) instead of choosing one")
    p.add_argument("--out", help="folding config to write (default: folding.json next to the model)")
    args = p.parse_args(argv)
    try:
        path = Path(args.model)
        if not path.is_file():
            raise FoldingError(f"{path}: no such file")
        model = ModelWrapper(str(path))
        if args.target_fps <= 0 or args.clock_mhz <= 0:
            raise FoldingError("--target-fps and --clock-mhz must be positive")
        target = int(args.clock_mhz * 1e6 / args.target_fps)
        if args.config:
            config = json.loads(Path(args.config).read_text())
            model = apply_folding(model, config)
            check_folding(model)
        else:
            config = choose_folding(model, target)
        report = folding_report(model)
    except (FoldingError, ValueError) as e:
        print(f"instabnn-folding: error: {e}", file=sys.stderr)
        return 2
    fps = args.clock_mhz * 1e6 / report["cycles_per_frame"]
    print("| node | op | SIMD | PE | cycles / frame |\n|---|---|---|---|---|")
    for r in report["layers"]:
        print(f"| {r['node']} | {r['op']} | {r['SIMD']} | {r['PE']} | {r['cycles']} |")
    print(f"\nbottleneck {report['bottleneck']}: {report['cycles_per_frame']} cycles per frame = {fps:.0f} frames/s at "
          f"{args.clock_mhz:g} MHz (target {args.target_fps:g}: {target} cycles)")
    out = Path(args.out) if args.out else path.parent / "folding.json"
    atomic_write_text(out, json.dumps(config, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
