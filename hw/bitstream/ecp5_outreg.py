"""Move the fabric register after an ECP5 block-RAM read into the block RAM's own output register.

Yosys (0.70, ``synth_ecp5``) maps every synchronous-read memory to DP16KD block RAMs with ``REGMODE_A/B =
"NOREG"``: the read data leaves the RAM's read latch directly, and nextpnr-ecp5 (speed 6) models a clock-to-out of
about 5.6 ns on DOA/DOB, against about 1 ns with ``REGMODE = "OUTREG"``. The RTL of this project registers every
block-RAM read twice (``r1 <= mem[addr]``, then ``r2 <= r1``, both under the same enable): Yosys absorbs ``r1`` into
the RAM and leaves ``r2`` as TRELLIS_FF cells in the fabric. This pass, run on Yosys' JSON netlist before nextpnr,
deletes those fabric registers and turns on the RAM's output register instead.

Yosys seldom leaves that register right at the RAM output: a memory split in depth over several DP16KDs has its
read mux (LUT4s selected by a registered address bit) in between, a written memory its read-during-write bypass
(LUT4s selecting registered write data). So the register is retimed backwards across up to ``max_depth`` levels
of LUT4s: the read ports whose outputs meet in one LUT4 cone are merged together, every other input of the cone
gets a new TRELLIS_FF with the same clock and enable, the cone's outputs take over the old registers' nets.

A group is merged only when that is cycle-exact whichever way the output register's enable works (the Yosys
DP16KD model is a blackbox; the Lattice documentation calls OCE the output register's clock enable, and whether
the read enable CE gates it too is not modelled here): every used data-out bit and every cone output drives only
cone LUT4s or exactly one sink, the DI of a TRELLIS_FF; those FFs are clocked by the RAM ports' clock net (both
non-inverted), their enable is provably the RAM ports' read enable CE (the same net or constant 1, or through an
inverted CEMUX the complement LUT4 of the same nets, compared by truth table), they have no set/reset in use (LSR
unconnected or constant 0, no PRLD), power up at 0 (REGSET RESET; with an RTL initial value also the cone must
give 0 from all-zero registers), none of their outputs feeds the cone back, no GSR cell in the design, and the
RAM ports' resets are the constant 0. Then REGMODE becomes OUTREG and OCE is tied to CE, which is exact under
either reading. Any other port is left as it is, with a one-word reason in the summary.

A DP16KD in Yosys' pseudo-dual-port form (``DATA_WIDTH_A = 36``: port A writes, port B reads, the read data on
DOA0..17 and DOB0..17) is one read port; it is merged by setting both REGMODE_A and REGMODE_B and both OCEA and
OCEB, and only when both clocks are the same net, CEA is the constant 1 or the enable, and both resets are 0, so
that it does not matter which half's controls the hardware's output register follows. PDPW16KD cells
(which Yosys does not emit, but a hand-instantiated design may hold) are handled with their own port names.

CLI: ``python -m instabnn.hw.bitstream.ecp5_outreg IN.json --out OUT.json`` prints the summary (``--summary
FILE`` also writes it as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from instabnn.outputs import atomic_write_text

TOOL = "instabnn-ecp5-outreg"

CONST_BITS = ("0", "1", "x", "z")
# cell types whose presence makes a fabric FF's GSR setting matter (the RAM's output register would not follow it)
GSR_CELLS = ("GSR", "SGSR")


class OutregError(Exception):
    """A netlist this pass cannot read."""


def _pstr(value) -> str:
    """A Yosys JSON parameter as a string: a string that looks like bits carries a trailing space."""
    if isinstance(value, str) and value.endswith(" "):
        return value[:-1]
    return str(value)


def _pint(value, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        return value
    s = _pstr(value)
    if s and set(s) <= {"0", "1"}:
        return int(s, 2)
    try:
        return int(s)
    except ValueError:
        return default


def _param(cell: dict, name: str, default: str) -> str:
    return _pstr(cell.get("parameters", {}).get(name, default))


def _bit(cell: dict, port: str):
    """The single bit on ``port``: a net id (int), a constant ("0", "1", "x", "z") or None when unconnected."""
    bits = cell.get("connections", {}).get(port)
    if not bits:
        return None
    if len(bits) != 1:
        raise OutregError(f"cell port {port} has {len(bits)} bits, expected 1")
    return bits[0]


def _port_specs(cell: dict) -> list[dict]:
    """The read ports of a block-RAM cell: data-out pins and the pins / parameters controlling them. Each spec:
    name, data pins, clock pins (with their mux parameters), read enables, output enables, resets, REGMODE
    parameters. Lists where a pseudo-dual-port DP16KD has both halves' controls."""
    t = cell["type"]
    if t == "DP16KD":
        if _pint(cell.get("parameters", {}).get("DATA_WIDTH_A"), 18) == 36:
            return [{"name": "PDP", "data": [f"DOA{i}" for i in range(18)] + [f"DOB{i}" for i in range(18)],
                     "clk": [("CLKB", "CLKBMUX"), ("CLKA", "CLKAMUX")], "ce": ("CEB", "CEBMUX"),
                     "ce_other": ("CEA", "CEAMUX"), "oce": [("OCEA", "OCEAMUX"), ("OCEB", "OCEBMUX")],
                     "rst": [("RSTA", "RSTAMUX"), ("RSTB", "RSTBMUX")], "regmode": ["REGMODE_A", "REGMODE_B"]}]
        return [{"name": h, "data": [f"DO{h}{i}" for i in range(18)], "clk": [(f"CLK{h}", f"CLK{h}MUX")],
                 "ce": (f"CE{h}", f"CE{h}MUX"), "ce_other": None, "oce": [(f"OCE{h}", f"OCE{h}MUX")],
                 "rst": [(f"RST{h}", f"RST{h}MUX")], "regmode": [f"REGMODE_{h}"]} for h in ("A", "B")]
    if t == "PDPW16KD":
        return [{"name": "R", "data": [f"DO{i}" for i in range(36)], "clk": [("CLKR", "CLKRMUX")],
                 "ce": ("CER", "CERMUX"), "ce_other": None, "oce": [("OCER", "OCERMUX")],
                 "rst": [("RST", "RSTMUX")], "regmode": ["REGMODE"]}]
    return []


def _ff_enable(ff: dict):
    """The FF's clock enable: "1", (net, inverted), or a string starting with "!" when it cannot be merged."""
    cemux = _param(ff, "CEMUX", "1").strip()
    if cemux == "1":
        return "1"
    if cemux == "0":
        return "!ff-never-enabled"
    ce = _bit(ff, "CE")
    inv = cemux == "INV"
    if ce in ("0", "1"):
        return "1" if (ce == "1") != inv else "!ff-never-enabled"
    if isinstance(ce, int):
        return (ce, inv)
    return "!ff-enable-unconnected"


def _lut_fn(mod: dict, drivers: dict, lit):
    """An enable literal as (input nets, function of an assignment {net: bool}): through the LUT4 that drives
    the net, if one does (one level), else the net itself."""
    net, inv = lit
    cell = mod["cells"].get(drivers.get(net, ""))
    if cell is not None and cell.get("type") == "LUT4" and _bit(cell, "Z") == net:
        init = _pstr(cell.get("parameters", {}).get("INIT", "0"))
        value = int(init, 2) if init and set(init) <= {"0", "1"} else None
        pins = [_bit(cell, p) for p in "ABCD"]
        if value is not None and all(isinstance(b, int) or b in (None, "0", "1") for b in pins):
            nets = sorted({b for b in pins if isinstance(b, int)})

            def fn(a, pins=pins, value=value, inv=inv):
                idx = sum((1 << k) for k, b in enumerate(pins) if (a[b] if isinstance(b, int) else b == "1"))
                return bool((value >> idx) & 1) != inv
            return nets, fn
    return [net], (lambda a, net=net, inv=inv: a[net] != inv)


def _same_enable(mod: dict, drivers: dict, e1, e2) -> bool:
    """Whether two enables ("1" or (net, inverted)) are the same function of the same nets (exactly)."""
    if e1 == e2:
        return True
    if e1 == "1" or e2 == "1":
        return False
    (v1, f1), (v2, f2) = _lut_fn(mod, drivers, e1), _lut_fn(mod, drivers, e2)
    nets = sorted(set(v1) | set(v2))
    if len(nets) > 10:
        return False
    for m in range(1 << len(nets)):
        a = {n: bool((m >> i) & 1) for i, n in enumerate(nets)}
        if f1(a) != f2(a):
            return False
    return True


def _ram_enable(cell: dict, pin: tuple[str, str]):
    """A RAM's enable pin: "1", (net, False), or a string starting with "!" when it cannot be merged."""
    port, mux = pin
    m = _param(cell, mux, port).strip()
    if m != port:
        return f"!ram-{port.lower()}-mux-{m}"
    b = _bit(cell, port)
    if b is None or b == "1":
        return "1"
    if isinstance(b, int):
        return (b, False)
    return f"!ram-{port.lower()}-constant-{b}"


def _lut_zero(cell: dict) -> bool:
    """Whether the LUT4 outputs 0 when every input that is not a constant is 0 (power-up value of a retimed
    cone whose registers all start at 0)."""
    idx = 0
    for k, pin in enumerate("ABCD"):
        b = _bit(cell, pin)
        if b == "1":
            idx |= 1 << k
        elif b not in (None, "0") and not isinstance(b, int):
            return False  # x / z inputs: no claim
    init = _pstr(cell.get("parameters", {}).get("INIT", "0"))
    if set(init) <= {"0", "1"}:
        value = int(init, 2)
    else:
        try:
            value = int(init)
        except ValueError:
            return False
    return not (value >> idx) & 1


def _ram_port(mod: dict, cell: dict, spec: dict, sinks: dict) -> tuple[str | None, dict]:
    """The block-RAM side of a read port: (reason, {}) when it cannot be merged, else (None, port) with its
    clock net, read enable and used data-out nets."""
    for rm in spec["regmode"]:
        if _param(cell, rm, "NOREG") != "NOREG":
            return "already-registered", {}
    conns = cell.get("connections", {})
    used = []
    for pin in spec["data"]:
        bits = conns.get(pin)
        if bits and isinstance(bits[0], int) and sinks.get(bits[0]):
            used.append((pin, bits[0]))
    if not used:
        return "no-used-outputs", {}
    clk_nets = []
    for port, mux in spec["clk"]:
        if _param(cell, mux, port) != port:
            return "ram-clock-inverted", {}
        b = _bit(cell, port)
        if not isinstance(b, int):
            return "ram-clock-constant", {}
        clk_nets.append(b)
    if len(set(clk_nets)) != 1:
        return "pdp-clocks-differ", {}
    for port, mux in spec["rst"]:
        if _param(cell, mux, port) != port:
            return "ram-reset-mux", {}
        if _bit(cell, port) not in (None, "0"):
            return "ram-reset-used", {}
    for port, mux in spec["oce"]:
        if _param(cell, mux, port) != port:
            return "ram-oce-mux", {}
    ram_ce = _ram_enable(cell, spec["ce"])
    if isinstance(ram_ce, str) and ram_ce.startswith("!"):
        return ram_ce[1:], {}
    other = None
    if spec["ce_other"] is not None:
        other = _ram_enable(cell, spec["ce_other"])
        if other != "1" and other != ram_ce:
            return "pdp-write-ce-differs", {}
    return None, {"clk": clk_nets[0], "ce": ram_ce, "used": used}


def _ff_reason(ff: dict, clk) -> str | None:
    """Why a fabric FF cannot become (or be moved behind) the RAM's output register, None when it can."""
    if _param(ff, "CLKMUX", "CLK").strip() != "CLK":
        return "ff-clock-inverted"
    if _bit(ff, "CLK") != clk:
        return "ff-clock-differs"
    if _param(ff, "LSRMODE", "LSR").strip() != "LSR":
        return "ff-preload"
    if not (_param(ff, "LSRMUX", "LSR").strip() == "LSR" and _bit(ff, "LSR") in (None, "0")):
        return "ff-set-reset"
    if _param(ff, "REGSET", "RESET").strip() != "RESET":
        return "ff-init-one"
    if not isinstance(_bit(ff, "Q"), int):
        return "ff-q-unconnected"
    return None


def _components(mod: dict, ports: dict, sinks: dict, max_depth: int) -> list[tuple]:
    """Group the candidate read ports (keys of ``ports``) with the LUT4s their outputs reach within ``max_depth``
    levels: two ports are in one group when a LUT4 depends on both (a depth-cascaded memory's read mux, a
    read-during-write bypass). Returns [(ports, luts, too_deep)], luts as {name: depth}."""
    cells = mod["cells"]
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    depth_of, too_deep = {}, set()
    frontier = []
    for key, p in ports.items():
        find(("port", key))
        for _, net in p["used"]:
            frontier.append((net, ("port", key), 0))
    while frontier:
        net, src, depth = frontier.pop()
        for user, port in sinks.get(net, []):
            c = cells.get(user)
            if not c or c.get("type") != "LUT4" or port not in ("A", "B", "C", "D"):
                continue
            node = ("lut", user)
            union(src, node)
            if depth + 1 > max_depth:
                too_deep.add(user)
                continue
            if user in depth_of and depth_of[user] <= depth + 1:
                continue
            depth_of[user] = depth + 1
            z = _bit(c, "Z")
            if isinstance(z, int):
                frontier.append((z, node, depth + 1))
    groups = defaultdict(lambda: ([], {}, []))
    for key in ports:
        groups[find(("port", key))][0].append(key)
    for lut, d in depth_of.items():
        groups[find(("lut", lut))][1][lut] = d
    for lut in too_deep:
        groups[find(("lut", lut))][2].append(lut)
    return [g for g in groups.values() if g[0]]


def _component(mod: dict, group: tuple, ports: dict, sinks: dict, drivers: dict, ram_nets: set,
               inits: dict) -> tuple[str | None, dict]:
    """Check one group of :func:`_components`: (reason, {"ports": [...]}) when it cannot be merged, else
    (None, plan) with the end FFs, the cone's LUT4s and the nets feeding the cone from outside."""
    cells = mod["cells"]
    comp_ports, luts, deep = group
    plan = {"ports": sorted(comp_ports)}
    if deep:
        return "cone-too-deep", plan
    end_ffs = {}
    nets = [net for k in comp_ports for _, net in ports[k]["used"]] + [_bit(cells[l], "Z") for l in luts]
    reason = None
    for net in nets:
        if not isinstance(net, int):
            return "cone-lut-unconnected", plan
        users = sinks.get(net, [])
        for user, port in users:
            c = cells.get(user)
            t = c.get("type") if c else None
            if t == "TRELLIS_FF" and port == "DI":
                if len(users) != 1:
                    return "fanout", plan
                end_ffs[user] = net
            elif user in luts and port in ("A", "B", "C", "D"):
                continue
            else:
                reason = "sink-not-ff" if not luts else f"cone-sink-{(t or 'port').lower()}"
                return reason, plan
    if not end_ffs:
        return "no-end-ff", plan
    clks = {ports[k]["clk"] for k in comp_ports}
    if len(clks) != 1:
        return "ram-clocks-differ", plan
    clk = clks.pop()
    en = ports[plan["ports"][0]]["ce"]
    if any(ports[k]["ce"] != en for k in comp_ports):
        return "ram-enables-differ", plan
    for ff_name in end_ffs:
        ff = cells[ff_name]
        r = _ff_reason(ff, clk)
        if r is not None:
            return r, plan
        ff_en = _ff_enable(ff)
        if isinstance(ff_en, str) and ff_en.startswith("!"):
            return ff_en[1:], plan
        if not _same_enable(mod, drivers, ff_en, en):
            return "ff-enable-not-ram-ce", plan
    # from here on the enable is the RAM's CE pin: "1" or its net
    en = "1" if en == "1" else en[0]
    driven = {n for k in comp_ports for _, n in ports[k]["used"]} | {_bit(cells[l], "Z") for l in luts}
    end_q = {_bit(cells[f], "Q") for f in end_ffs}
    outside = []
    # before the first enabled clock edge the end registers read 0 (REGSET RESET); after the retiming, the cone
    # of zeros. That only matters where the RTL gave the register an initial value (an init attribute)
    defined = any(inits.get(_bit(cells[f], "Q"), "x") in ("0", "1") for f in end_ffs)
    for lut in luts:
        if defined and not _lut_zero(cells[lut]):
            return "cone-powerup-nonzero", plan
        for pin in "ABCD":
            b = _bit(cells[lut], pin)
            if isinstance(b, int) and b not in driven:
                if b in ram_nets:
                    return "cone-mixes-ram-ports", plan
                if b in end_q:
                    return "cone-feedback", plan
                if b not in outside:
                    outside.append(b)
    plan.update({"clk": clk, "enable": en, "luts": sorted(luts), "end_ffs": end_ffs, "outside": outside})
    return None, plan


def _init_bits(mod: dict) -> dict:
    """net id -> its initial value ("0", "1", "x") from the netnames' init attributes."""
    out = {}
    for w in mod.get("netnames", {}).values():
        init = w.get("attributes", {}).get("init")
        if not isinstance(init, str):
            continue
        init = _pstr(init)
        bits = w.get("bits", [])
        for i, b in enumerate(bits):
            if isinstance(b, int) and i < len(init):
                out[b] = init[len(init) - 1 - i]
    return out


def _new_net(netlist: dict) -> int:
    top = 1
    for mod in netlist["modules"].values():
        for c in mod.get("cells", {}).values():
            for bits in c.get("connections", {}).values():
                top = max([top] + [b for b in bits if isinstance(b, int)])
        for w in mod.get("netnames", {}).values():
            top = max([top] + [b for b in w.get("bits", []) if isinstance(b, int)])
        for p in mod.get("ports", {}).values():
            top = max([top] + [b for b in p.get("bits", []) if isinstance(b, int)])
    return top + 1


def _sinks(mod: dict) -> dict:
    """net id -> [(cell name, input port)] (module outputs as ("$output", port name))."""
    sinks = defaultdict(list)
    for cname, cell in mod.get("cells", {}).items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            if dirs.get(port, "input") == "output":
                continue  # inout counts as a sink too
            for b in bits:
                if isinstance(b, int):
                    sinks[b].append((cname, port))
    for pname, p in mod.get("ports", {}).items():
        if p.get("direction") in ("output", "inout"):
            for b in p.get("bits", []):
                if isinstance(b, int):
                    sinks[b].append(("$output", pname))
    return sinks


def _driver_pin(mod: dict, net: int, luts: list[str], port_pins: dict) -> tuple[str, str]:
    if net in port_pins:
        return port_pins[net]
    for lut in luts:
        if _bit(mod["cells"][lut], "Z") == net:
            return lut, "Z"
    raise OutregError(f"net {net}: no driver in the merged cone")


def merge_outregs(netlist: dict, max_depth: int = 3) -> dict:
    """Merge in place (see the module docstring); returns the summary: ports merged, FFs removed / added, LUTs
    retimed, skips by reason and one entry per block-RAM read port with used outputs. ``max_depth``: the most
    LUT4 levels between a RAM output and its fabric register that are retimed (0: only direct RAM -> FF)."""
    if not isinstance(netlist, dict) or not isinstance(netlist.get("modules"), dict):
        raise OutregError("not a Yosys JSON netlist (no \"modules\")")
    merged, ffs_removed, ffs_added, luts_retimed, skipped, entries = 0, 0, 0, 0, Counter(), []
    next_net = None
    for mname, mod in netlist["modules"].items():
        cells = mod.get("cells", {})
        rams = [(n, c) for n, c in cells.items() if c.get("type") in ("DP16KD", "PDPW16KD")]
        if not rams:
            continue
        gsr = any(c.get("type") in GSR_CELLS for c in cells.values())
        sinks = _sinks(mod)
        drivers = {b: n for n, c in cells.items() for p, bits in c.get("connections", {}).items()
                   if c.get("port_directions", {}).get(p) == "output" for b in bits if isinstance(b, int)}
        ram_nets = {b for b, n in drivers.items() if cells[n].get("type") in ("DP16KD", "PDPW16KD")}
        inits = _init_bits(mod)
        ports, result = {}, {}
        for cname, cell in rams:
            for spec in _port_specs(cell):
                key = (cname, spec["name"])
                try:
                    reason, port = _ram_port(mod, cell, spec, sinks)
                except OutregError as e:
                    reason, port = f"unreadable: {e}", {}
                if reason == "no-used-outputs":
                    continue  # a write-only or unused port: nothing to say
                if reason is None and gsr:
                    reason = "design-uses-gsr"
                if reason is not None:
                    result[key] = reason
                else:
                    ports[key] = {**port, "cell": cname, "spec": spec}
        for group in _components(mod, ports, sinks, max_depth):
            try:
                reason, plan = _component(mod, group, ports, sinks, drivers, ram_nets, inits)
            except OutregError as e:
                reason, plan = f"unreadable: {e}", {"ports": group[0]}
            if reason is not None:
                for k in plan["ports"]:
                    result[k] = reason
                continue
            en = plan["enable"]
            port_pins = {}
            for k in plan["ports"]:
                p = ports[k]
                cell = cells[p["cell"]]
                for rm in p["spec"]["regmode"]:
                    cell.setdefault("parameters", {})[rm] = "OUTREG"
                for oce, _ in p["spec"]["oce"]:
                    cell["connections"][oce] = [en]
                    cell.setdefault("port_directions", {})[oce] = "input"
                for pin, net in p["used"]:
                    port_pins[net] = (p["cell"], pin)
            # every net feeding the cone from outside is delayed by one register (same clock and enable)
            if plan["outside"] and next_net is None:
                next_net = _new_net(netlist)
            delayed = {}
            for net in plan["outside"]:
                name = f"$outreg$delay${next_net}"
                ff = {"hide_name": 1, "type": "TRELLIS_FF",
                      "parameters": {"CEMUX": "1 " if en == "1" else "CE", "CLKMUX": "CLK", "GSR": "DISABLED",
                                     "LSRMUX": "LSR", "REGSET": "RESET", "SRMODE": "LSR_OVER_CE"},
                      "attributes": {},
                      "port_directions": {"CLK": "input", "CE": "input", "LSR": "input", "DI": "input",
                                          "Q": "output"},
                      "connections": {"CLK": [plan["clk"]], "CE": [en], "LSR": ["0"], "DI": [net],
                                      "Q": [next_net]}}
                cells[name] = ff
                mod.setdefault("netnames", {})[name + "$q"] = {"hide_name": 1, "bits": [next_net], "attributes": {}}
                delayed[net] = next_net
                next_net += 1
            for lut in plan["luts"]:
                conns = cells[lut]["connections"]
                for pin in "ABCD":
                    b = _bit(cells[lut], pin)
                    if b in delayed:
                        conns[pin] = [delayed[b]]
            # each end FF goes: what drove its DI now drives its Q net
            for ff_name, net in plan["end_ffs"].items():
                q = cells[ff_name]["connections"]["Q"][0]
                owner, pin = _driver_pin(mod, net, plan["luts"], port_pins)
                cells[owner]["connections"][pin] = [q]
                del cells[ff_name]
            merged += len(plan["ports"])
            ffs_removed += len(plan["end_ffs"])
            ffs_added += len(delayed)
            luts_retimed += len(plan["luts"])
            for k in plan["ports"]:
                result[k] = "merged"
            # the sink index is stale for the nets touched here; they belong to this component only
        for (cname, pname), r in sorted(result.items()):
            entries.append({"module": mname, "cell": cname, "port": pname, "result": r})
            if r != "merged":
                skipped[r] += 1
    return {"merged": merged, "ffs_removed": ffs_removed, "ffs_added": ffs_added, "luts_retimed": luts_retimed,
            "skipped": dict(sorted(skipped.items())), "skipped_total": sum(skipped.values()), "ports": entries}


def outreg_command(src: str, dst: str, summary: str | None = None, python: str | None = None) -> list[str]:
    """The command line that runs this pass (the current interpreter: the venv's)."""
    cmd = [python or sys.executable, "-m", "instabnn.hw.bitstream.ecp5_outreg", src, "--out", dst]
    return cmd + (["--summary", summary] if summary else [])


def summary_line(summary: dict) -> str:
    skips = ", ".join(f"{k} {v}" for k, v in summary["skipped"].items())
    return (f"{summary['merged']} block-RAM read port(s) merged into OUTREG ({summary['ffs_removed']} fabric FFs "
            f"removed, {summary['ffs_added']} added ahead of {summary['luts_retimed']} retimed LUT4s), "
            f"{summary['skipped_total']} skipped" + (f" ({skips})" if skips else ""))


def _check_replaceable(path: str | Path, key: str, what: str) -> None:
    """An existing ``path`` is replaced only when it is what this step writes (a JSON object with ``key``): a Yosys
    netlist, or this pass's summary; anything else is the user's, and an error."""
    path = Path(path)
    if not path.exists():
        return
    try:
        ok = key in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):
        ok = False
    if not ok:
        raise OutregError(f"{path}: exists and is not {what}; not replaced")


def process_file(src: str | Path, dst: str | Path, max_depth: int = 3) -> dict:
    """Read the netlist ``src``, merge, write ``dst`` atomically; returns the summary. An existing ``dst`` that is
    not a Yosys JSON netlist is refused."""
    src = Path(src)
    _check_replaceable(dst, "modules", "a Yosys JSON netlist")
    try:
        netlist = json.loads(src.read_text())
    except OSError as e:
        raise OutregError(f"{src}: cannot read: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise OutregError(f"{src}: not JSON: {e}") from None
    try:
        summary = merge_outregs(netlist, max_depth)
    except OutregError as e:
        raise OutregError(f"{src}: {e}") from None
    try:
        atomic_write_text(dst, json.dumps(netlist) + "\n")
    except OSError as e:
        raise OutregError(f"{dst}: cannot write: {e.strerror or e}") from None
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=TOOL, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("netlist", help="Yosys JSON netlist (synth_ecp5 -json)")
    p.add_argument("--out", required=True, help="the rewritten netlist (may be the input itself)")
    p.add_argument("--summary", help="also write the summary as JSON here")
    p.add_argument("--max-depth", type=int, default=3,
                   help="most LUT4 levels between a RAM output and its register that are retimed (default 3; 0: "
                        "only a register right at the RAM output)")
    args = p.parse_args(argv)
    try:
        if args.summary:
            _check_replaceable(args.summary, "merged", "a summary of this pass")
        summary = process_file(args.netlist, args.out, args.max_depth)
        if args.summary:
            atomic_write_text(args.summary, json.dumps(summary, indent=1) + "\n")
    except OutregError as e:
        print(f"{TOOL}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{TOOL}: error: {args.summary}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{args.netlist}: {summary_line(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
