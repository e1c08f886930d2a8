"""Folding: PE / SIMD per hardware layer of a lowered graph for a target throughput, FINN style.

``python -m instabnn.hw.compile.folding lowered.onnx --target-fps 5000 --clock-mhz 100`` picks, for every node of a
lowered graph (:mod:`instabnn.hw.ops`), the least parallel (SIMD, PE) whose expected cycles per frame
(``get_exp_cycles``: the slowest of the block specs the node lowers to, :meth:`instabnn.hw.ops.InstaHwOp.blocks`,
the compiler's model too) meet the target: SIMD grows first (through the divisors of the input channels), then PE
(divisors of the output channels), as FINN's SetFolding does. The INSTA units' other knobs, ``LIMBS`` and
``SE_SIMD``, are chosen for each (SIMD, PE) tried: the cheapest value that keeps the node within the target
(:func:`choose_knobs`). Then the weight memory of each binary MVU (knob ``ram_style``, FINN's name: ``auto``, the
synthesis tool's choice, or ``block``) goes to block RAM where that saves LUTs, the layers that save the most LUTs
per BRAM36 first, as long as the layers' estimated BRAM36 stay within ``--bram36-budget`` (default
:data:`BRAM36_BUDGET`: 90 % of the PYNQ boards' xc7z020; :func:`choose_ram_styles`). It writes a folding config in
FINN's format (``{node name: {"PE": .., "SIMD": ..}}``, SIMD only on the nodes that have it, a knob only on the
nodes that have it; ``ram_style`` may be left out: ``auto``), which FINN's ``ApplyConfig`` applies to the graph, so
a user can edit it and feed it back (``--config``, or ``instabnn.hw.compile --folding``). A config must name every
node of the graph and no other, with only that node's keys, each a positive integer dividing the dimension it folds,
knobs one of their legal values (FINN's ``"Defaults": {}`` is accepted); anything else is an error naming the node
or key. The report lists per layer the folding and cycles, the bottleneck, and the frames per second it gives at the
clock. Resource estimates enter only the ``ram_style`` choice.

The config file is written only where no file is, or over one this tool wrote itself and nobody changed since
(the sha256 of what it wrote is kept beside it in ``.<name>.sha256``): a folding you edited or passed is never
replaced.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import sys
from pathlib import Path


BRAM36_BUDGET = 126.0
"""Default BRAM36 the weight memories may take in all when :func:`choose_ram_styles` moves them to block RAM: 90 % of
the xc7z020's 140 (the limit issue 14 sets for a design to fit the PYNQ part)."""

OPTIONAL_KNOBS = {"ram_style": "auto"}
"""Knobs a folding config may leave out, with the value they then take (FINN's default too)."""


class FoldingError(ValueError):
    """A target or config the graph cannot meet; the message names the node."""


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _candidates(op) -> list[dict[str, int]]:
    """(SIMD, PE) settings in order of growing parallelism: SIMD first, then PE."""
    options = op.fold_options()
    pes = divisors(options["PE"])
    if "SIMD" not in options:
        return [{"PE": p} for p in pes]
    simds = divisors(options["SIMD"])
    return [{"SIMD": s, "PE": 1} for s in simds] + [{"SIMD": simds[-1], "PE": p} for p in pes[1:]]


def read_lowered(path: str | Path):
    """The lowered graph at ``path`` (``lowered.onnx`` of instabnn-lower); FoldingError naming the file, or its
    first node that is not a hardware layer."""
    from qonnx.core.modelwrapper import ModelWrapper

    from instabnn.hw import ops
    from instabnn.hw.lower import LoweringError, load_onnx

    try:
        proto = load_onnx(path)
    except LoweringError as e:
        raise FoldingError(str(e)) from None
    for node in proto.graph.node:
        if node.domain != ops.DOMAIN:
            raise FoldingError(f"{path}: node {node.name} ({node.op_type}) is not a hardware layer of {ops.DOMAIN}; "
                               f"lower the model first (python -m instabnn.hw.lower)")
    return ModelWrapper(proto)


def choose_knobs(op, target_cycles: int) -> dict[str, int]:
    """The node's knobs beyond PE / SIMD (``LIMBS``, ``SE_SIMD``; :meth:`~instabnn.hw.ops.InstaHwOp.knob_candidates`)
    at its current PE / SIMD, set on ``op`` and returned: for each, the cheapest value that keeps the node's cycles
    per frame within ``target_cycles``, or, where none does, as fast as the knob can make it (so that ``0`` asks
    for the fastest)."""
    chosen = {}
    for knob, values in op.knob_candidates().items():
        def cycles(value, knob=knob):
            op.set_nodeattr(knob, value)
            return op.get_exp_cycles()

        chosen[knob] = cheapest(values, cycles, target_cycles)
        op.set_nodeattr(knob, chosen[knob])
    return chosen


def with_chosen_limbs(spec, target_cycles: int = 0):
    """An INSTA-Th / INSTA-PReLU unit's spec (``InstaThresholdSpec``, ``InstaTailSpec``) with LIMBS as folding
    chooses it (:func:`cheapest` of ``limbs_by_cost``; 1 for a static unit or one with an SE-like MLP): for units
    built outside a lowered graph (block testbenches, block syntheses)."""
    from dataclasses import replace

    from instabnn.hw.blocks.insta_threshold.spec import limbs_by_cost

    if getattr(spec, "static", 0) or getattr(spec, "se", False):
        return replace(spec, limbs=1)
    return replace(spec, limbs=cheapest(limbs_by_cost(spec.power_sum_bits),
                                        lambda n: replace(spec, limbs=n).cycles_per_frame, target_cycles))


def cheapest(values, cycles_of, target_cycles: int = 0):
    """The knob rule: the first of ``values`` (cheapest first) whose ``cycles_of(value)`` is within
    ``target_cycles``, or, where none is, as fast as any of them (``target_cycles = 0``: the fastest)."""
    cycles = {v: cycles_of(v) for v in values}
    bound = max(target_cycles, min(cycles.values()))
    return next(v for v in values if cycles[v] <= bound)


def choose_folding(model, target_cycles: int, bram36_budget: float = BRAM36_BUDGET) -> dict:
    """The folding config (FINN ApplyConfig format) meeting ``target_cycles`` per frame where possible; nodes that
    cannot meet it get their most parallel setting (reported as the bottleneck). Each (SIMD, PE) is tried with the
    knobs :func:`choose_knobs` gives it; then :func:`choose_ram_styles` places the weight memories within
    ``bram36_budget``."""
    from instabnn.hw.ops import hw_op

    config = {}
    for node in model.graph.node:
        op = hw_op(model, node)
        chosen = None
        for cand in _candidates(op):
            for k, v in cand.items():
                op.set_nodeattr(k, v)
            chosen = {**cand, **choose_knobs(op, target_cycles)}
            if op.get_exp_cycles() <= target_cycles:
                break
        config[node.name] = chosen
    for name, style in choose_ram_styles(model, bram36_budget).items():
        config[name]["ram_style"] = style
    return config


def choose_ram_styles(model, bram36_budget: float = BRAM36_BUDGET) -> dict[str, str]:
    """Knob ``ram_style`` of every node that has it, set on the graph's ops and returned: ``block`` where the
    node's estimate (its blocks' ``resources()``) has fewer LUTs with its weight memory in block RAM than with
    ``auto``, the nodes that save the most LUTs per BRAM36 they add first, as long as the estimated BRAM36 of all
    the layers' blocks stay within ``bram36_budget``; ``auto`` elsewhere. The style changes no cycle count."""
    from instabnn.hw.blocks.common.resources import total
    from instabnn.hw.ops import hw_op

    ops = {node.name: hw_op(model, node) for node in model.graph.node}
    styled = {name: op for name, op in ops.items() if "ram_style" in op.knob_options()}

    def node_estimate(op) -> dict:
        return total(block.spec.resources() for block in op.blocks())

    for op in styled.values():
        op.set_nodeattr("ram_style", "auto")
    bram36 = sum(node_estimate(op)["bram36"] for op in ops.values())
    gains = []
    for name, op in styled.items():
        auto = node_estimate(op)
        op.set_nodeattr("ram_style", "block")
        block = node_estimate(op)
        op.set_nodeattr("ram_style", "auto")
        saved, added = auto["lut"] - block["lut"], block["bram36"] - auto["bram36"]
        if saved > 0 and added > 0:
            gains.append((saved / added, name, added))
    chosen = {name: "auto" for name in styled}
    for _, name, added in sorted(gains, key=lambda g: (-g[0], g[1])):
        if bram36 + added <= bram36_budget:
            bram36 += added
            chosen[name] = "block"
            styled[name].set_nodeattr("ram_style", "block")
    return chosen


def choose_missing_knobs(model) -> None:
    """For a graph compiled without a folding config: every knob the graph does not set (0), as fast as it makes
    its node (:func:`choose_knobs` with no target); the optional ones at their default."""
    from instabnn.hw.ops import hw_op

    for node in model.graph.node:
        op = hw_op(model, node)
        if any(op.get_nodeattr(k) == 0 for k in op.knob_options()):
            choose_knobs(op, 0)
    set_optional_knobs(model)


def set_optional_knobs(model) -> None:
    """Every knob of :data:`OPTIONAL_KNOBS` a node has and the graph does not set, at its default."""
    from instabnn.hw.ops import hw_op

    for node in model.graph.node:
        op = hw_op(model, node)
        for knob, default in OPTIONAL_KNOBS.items():
            if knob in op.knob_options() and not op.get_nodeattr(knob):
                op.set_nodeattr(knob, default)


def read_folding(path: str | Path) -> dict:
    """A folding config file as a dict; FoldingError naming the file (and line) when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FoldingError(f"{path}: no such folding config" + (" (a directory)" if path.is_dir() else ""))
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FoldingError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise FoldingError(f"{path}: not a text (JSON) file") from None


def validate_folding(model, config, source: str = "folding config") -> None:
    """``config`` names every node of ``model`` once and nothing else, each with exactly its folding keys (PE, SIMD
    where the node has one, and its knobs ``LIMBS`` / ``SE_SIMD`` where it has them) as positive integers, each
    knob one of its legal values (``ram_style``, a string, may be left out: :data:`OPTIONAL_KNOBS`); FINN's
    reserved ``"Defaults"`` may be present, empty. FoldingError naming ``source`` and the node or key otherwise
    (divisibility: :func:`check_folding`)."""
    from instabnn.hw.ops import hw_op

    if not isinstance(config, dict):
        raise FoldingError(f'{source}: a folding config is a JSON object {{"node": {{"PE": .., "SIMD": ..}}}}, '
                           f"not a {type(config).__name__}")
    if config.get("Defaults", {}) != {}:
        raise FoldingError(f"{source}: \"Defaults\" {json.dumps(config['Defaults'])} is not supported: give every "
                           f"node its own PE / SIMD")
    ops = {n.name: hw_op(model, n) for n in model.graph.node}
    try:
        knobs = {name: op.knob_options() for name, op in ops.items()}
    except ValueError as e:
        raise FoldingError(f"{source}: {e}") from None
    options = {name: {**op.fold_options(), **knobs[name]} for name, op in ops.items()}
    for name in config:
        if name != "Defaults" and name not in options:
            near = difflib.get_close_matches(name, options, 1)
            raise FoldingError(f"{source}: unknown node {name!r}" + (f" (did you mean {near[0]!r}?)" if near else
                               f"; the graph's nodes: {', '.join(options)}"))
    missing = [name for name in options if name not in config]
    if missing:
        raise FoldingError(f"{source}: no folding for node(s) {', '.join(missing)}")
    for name, allowed in options.items():
        entry = config[name]
        if not isinstance(entry, dict):
            raise FoldingError(f"{source}: node {name}: expected {{{', '.join(repr(k) + ': ..' for k in allowed)}}}, "
                               f"got {json.dumps(entry)}")
        for key, value in entry.items():
            if key not in allowed:
                raise FoldingError(f"{source}: node {name}: unknown key {key!r} (this node folds by "
                                   f"{' and '.join(allowed)})")
            legal = knobs[name].get(key)
            if legal and isinstance(legal[0], str):
                if value not in legal:
                    raise FoldingError(f"{source}: node {name}: {key} = {json.dumps(value)} is not one of "
                                       f"{', '.join(json.dumps(v) for v in legal)}")
                continue
            if type(value) is not int or value < 1:
                raise FoldingError(f"{source}: node {name}: {key} = {json.dumps(value)} is not a positive integer")
            if legal and value not in legal:
                raise FoldingError(f"{source}: node {name}: {key} = {value} is not one of its legal values "
                                   f"{legal}")
        absent = [k for k in allowed if k not in entry and k not in OPTIONAL_KNOBS]
        if absent:
            raise FoldingError(f"{source}: node {name}: no {' or '.join(absent)}" + (
                " (a folding knob: instabnn-folding chooses it)" if set(absent) & set(knobs[name]) else ""))


def apply_folding(model, config: dict | str | Path, source: str = "folding config"):
    """``model`` with the folding config (a dict, read from ``source``, or a JSON file) applied by FINN's
    ApplyConfig, after :func:`validate_folding` and before :func:`check_folding`."""
    from finn.transformation.general import ApplyConfig

    if isinstance(config, (str, Path)):
        source, config = str(config), read_folding(config)
    validate_folding(model, config, source)
    model = model.transform(ApplyConfig(config))
    set_optional_knobs(model)
    try:
        check_folding(model)
    except FoldingError as e:
        raise FoldingError(f"{source}: {e}") from None
    return model


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
    from instabnn.hw.ops import hw_op

    rows = []
    for node in model.graph.node:
        op = hw_op(model, node)
        rows.append({"node": node.name, "op": node.op_type,
                     "SIMD": op.get_nodeattr("SIMD") if "SIMD" in op.fold_options() else None,
                     "PE": op.get_nodeattr("PE"), "knobs": {k: op.get_nodeattr(k) for k in op.knob_options()},
                     "cycles": int(op.get_exp_cycles())})
    bottleneck = max(rows, key=lambda r: r["cycles"])
    return {"layers": rows, "bottleneck": bottleneck["node"], "cycles_per_frame": bottleneck["cycles"]}


def _hash_file(config_path: Path) -> Path:
    return config_path.with_name(f".{config_path.name}.sha256")


def refuse_to_replace(out: Path) -> None:
    """FoldingError unless ``out`` may be written: absent, or a file this tool wrote and nobody changed since."""
    if out.is_dir():
        raise FoldingError(f"--out {out}: is a directory (give the folding config's file name)")
    if not out.exists():
        return
    recorded = _hash_file(out)
    if not recorded.is_file() or recorded.read_text().strip() != hashlib.sha256(out.read_bytes()).hexdigest():
        raise FoldingError(f"{out}: exists and was not written by instabnn-folding or was edited since; not replaced "
                           f"(apply it with --config / compile --folding, or choose another --out)")


def write_config(out: Path, config: dict) -> None:
    from instabnn.outputs import atomic_write_text

    text = json.dumps(config, indent=1)
    atomic_write_text(out, text)
    atomic_write_text(_hash_file(out), hashlib.sha256(text.encode()).hexdigest() + "\n")


def main(argv=None) -> int:
    from instabnn.model.arguments import Parser, positive_float

    p = Parser(prog="instabnn-folding", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a lowered.onnx written by instabnn-lower")
    p.add_argument("--target-fps", type=positive_float, default=5000.0)
    p.add_argument("--clock-mhz", type=positive_float, default=100.0)
    p.add_argument("--bram36-budget", type=positive_float, default=BRAM36_BUDGET,
                   help="BRAM36 the layers may use in all when binary MVU weight memories move to block RAM "
                        f"(ram_style block; default {BRAM36_BUDGET:g}, 90 %% of the xc7z020)")
    p.add_argument("--config", help="apply this folding config (FINN format) instead of choosing one")
    p.add_argument("--out", help="folding config to write (default: folding.json next to the model; with --config: "
                                 "none)")
    args = p.parse_args(argv)
    path = Path(args.model)
    out = Path(args.out) if args.out else None if args.config else path.parent / "folding.json"
    target = int(args.clock_mhz * 1e6 / args.target_fps)
    try:
        if out is not None:
            refuse_to_replace(out)
        model = read_lowered(path)
        if args.config:
            config = read_folding(args.config)
            model = apply_folding(model, config, args.config)
        else:
            config = choose_folding(model, target, args.bram36_budget)
        report = folding_report(model)
    except FoldingError as e:
        print(f"instabnn-folding: error: {e}", file=sys.stderr)
        return 2
    fps = args.clock_mhz * 1e6 / report["cycles_per_frame"]
    print("| node | op | SIMD | PE | knobs | cycles / frame |\n|---|---|---|---|---|---|")
    for r in report["layers"]:
        knobs = ", ".join(f"{k} {v}" for k, v in r["knobs"].items()) or "-"
        print(f"| {r['node']} | {r['op']} | {r['SIMD'] or '-'} | {r['PE']} | {knobs} | {r['cycles']} |")
    print(f"\nbottleneck {report['bottleneck']}: {report['cycles_per_frame']} cycles per frame = {fps:.0f} frames/s at "
          f"{args.clock_mhz:g} MHz (target {args.target_fps:g}: {target} cycles)")
    if out is not None:
        write_config(out, config)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
