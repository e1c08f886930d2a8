"""Bitstreams from a generated accelerator RTL directory: PYNQ-Z2 (Vivado) and ULX3S-85F (open ECP5 flow).

``python -m instabnn.hw.bitstream RTL_DIR --board pynq-z2|ulx3s-85f --out bitstreams/<name>`` (``make bitstream``)
reads ``RTL_DIR/accelerator.json`` (written by the network generator, ``hw/compile/compiler.py``) and builds into a
fresh temporary folder beside ``--out``, which replaces ``--out`` only once the build has finished, and only where
``--out`` is empty or an earlier build folder of this tool (:mod:`instabnn.outputs`; anything else is refused before
the build); a failed build leaves an earlier build folder as it was (its own work files stay in the temporary
folder, named in the error).

The accelerator manifest holds at least ``top``, ``sources`` (relative .sv paths in compile order), ``mem_files``
(relative $readmemh files that the RTL names by bare file name), ``in_width`` / ``out_width`` (AXI-Stream tdata
widths, multiples of 8), ``input_shape`` [C, H, W], ``classes`` and, optionally, ``model_sha256``, ``folding`` and
``clock_mhz`` (default 100). The top's ports: ``clk``, ``rst`` (synchronous, active high), ``s_axis_*`` (one pixel
per beat), ``m_axis_*`` with ``m_axis_tlast`` (one class logit per beat, tlast on each image's last class).

Boards:

* ``pynq-z2`` (xc7z020clg400-1): a Vivado project script (``project/build.tcl``): the Zynq-7000 PS with the
  PYNQ-Z2 board presets (board part ``tul.com.tw:pynq-z2`` where installed, else the part with the board's DDR /
  MIO settings), an AXI DMA 7.1 (MM2S -> accelerator s_axis, accelerator m_axis -> S2MM; simple mode, no
  interrupts: the driver polls), the accelerator as an RTL module reference through a Verilog adapter
  (``instabnn_dma_wrapper.v``, from ``templates/pynq_z2_dma_adapter.v``: the DMA stream widths are the next power
  of two >= the accelerator's widths, pixels zero-padded, logits sign-extended; active-low AXI reset to the
  accelerator's synchronous reset), FCLK_CLK0 at ``clock_mhz`` (the accelerator's clock and stream interfaces get
  the PS clock's FREQ_HZ),
  synthesis, implementation, ``write_bitstream``, the ``.bit`` with its ``.hwh`` handoff beside it (same base
  name, as PYNQ's ``Overlay`` wants) and the utilisation / timing reports. Without ``vivado`` on PATH the script
  is still written (run ``project/run_vivado.sh`` on a machine with Vivado) and Yosys ``synth_xilinx -family xc7``
  gives a resource estimate of the accelerator as % of the xc7z020; the exit status is then 3 (not 1 or 2).
* ``ulx3s-85f`` (LFE5U-85F-6BG381C): the accelerator behind a UART host interface (``instabnn_ulx3s_top.v``, from
  ``templates/ulx3s_top.v``; the FT231X USB serial port, 8N1 at ``--baud``; the host sends each pixel as
  in_width/8 little-endian bytes, the board answers each logit as out_width/8 little-endian two's-complement
  bytes), the 25 MHz board clock (an ECP5 PLL from ``ecppll`` where ``clock_mhz`` is not 25), the ULX3S pin
  constraints (``ulx3s.lpf``), then YoWASP's
  ``synth_ecp5`` -> ``nextpnr-ecp5 --85k --package CABGA381`` -> ``ecppack``; post-route Fmax and utilisation come
  from nextpnr's JSON report.

``--dry-run`` writes the project files and the command script only. Each build folder holds the bitstream (where
built), ``report.json`` / ``report.md`` (resources, % of the part, Fmax / timing, tool versions, the commands run
and their times), ``manifest.json`` (git commit, model hash and folding from the accelerator manifest, clock, board,
tool versions), ``project/`` (scripts, adapters, constraints and a copy of the RTL: enough to rebuild) and
``work/`` (tool logs and intermediate files; not committed).

Exit status: 0 built (or dry run), 1 usage, 2 build failed or bad input, 3 pynq-z2 without Vivado (estimate
only), 4 built but timing not met (the folder is kept beside as ``<out>.timing-failed`` unless
``--allow-timing-fail``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from instabnn.outputs import OutputError, atomic_write_text, check_output_dir, install_output_dir, new_staging_dir

from .accelerator import BitstreamError, load_accelerator
from .pynq_z2 import PYNQ_Z2, build_pynq
from .tools import Recorder, git_commit
from .ulx3s import ULX3S_85F, build_ulx3s

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_NO_VIVADO, EXIT_TIMING = 0, 1, 2, 3, 4
BOARDS = ("pynq-z2", "ulx3s-85f")
TOOL = "instabnn-bitstream"


def _has_bitstream(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "report.json").read_text()).get("bitstream"))
    except (OSError, ValueError, AttributeError):
        return any(folder.glob("*.bit"))


def report_markdown(rep: dict) -> str:
    lines = [f"# Bitstream build: {rep['name']} ({rep['board']}, {rep['part']})", "",
             f"- status: **{rep['status']}**" + (f"; bitstream `{rep['bitstream']}`" if rep["bitstream"] else
                                                 "; no bitstream"),
             f"- accelerator: `{rep['accelerator']['top']}` from `{rep['accelerator']['rtl_dir']}` (model "
             f"{rep['accelerator']['model_sha256'] or 'unknown'}), input {rep['accelerator']['input_shape']}, "
             f"{rep['accelerator']['classes']} classes, streams {rep['accelerator']['in_width']} / "
             f"{rep['accelerator']['out_width']} bits",
             f"- clock: {rep['clock_mhz']:g} MHz requested",
             f"- elapsed: {rep['elapsed_s']:.1f} s", ""]
    for note in rep["notes"]:
        lines.append(f"> {note}")
    if rep["notes"]:
        lines.append("")
    for label, res in rep["resources"].items():
        lines += [f"## Resources: {label}", ""]
        if label.startswith("ecp5"):
            lines += ["| resource | used | available | % |", "|---|---|---|---|"]
            for key, name in (("lut4", "LUT4"), ("trellis_ff", "TRELLIS_FF"), ("dp16kd", "DP16KD"),
                              ("mult18x18d", "MULT18X18D")):
                r = res[key]
                lines.append(f"| {name} | {r['used']} | {r['available']} | {r['pct']:.2f} |")
            bp = res.get("before_packing") or {}
            if "lut4_total" in bp:
                lines += ["", f"LUT4 is nextpnr's TRELLIS_COMB (LUT4 slots after packing); before packing "
                              f"{bp['lut4_total']} LUT4s: {bp.get('lut4_logic', '?')} logic, "
                              f"{bp.get('lut4_carry', '?')} carry, {bp.get('lut4_ram', '?')} RAM, "
                              f"{bp.get('lut4_ramw', '?')} RAMW."]
        else:
            lines += ["| resource | used | xc7z020 | % |", "|---|---|---|---|"]
            for key, name in (("lut", "LUT"), ("ff", "FF"), ("bram36", "BRAM36"), ("dsp", "DSP48E1")):
                if key in res:
                    lines.append(f"| {name} | {res[key]:g} | {res['capacity'][key]} | "
                                 f"{res['utilisation_pct'][key]:.2f} |")
        lines.append("")
    for label, t in rep["timing"].items():
        lines += [f"## Timing ({label})", ""]
        if "clocks" in t:
            lines += ["| clock | Fmax (MHz) | constraint (MHz) | met |", "|---|---|---|---|"]
            for clk, c in t["clocks"].items():
                lines.append(f"| `{clk}` | {c['achieved_mhz']:.2f} | {c['constraint_mhz']:.2f} | "
                             f"{'yes' if c['met'] else '**no**'} |")
            for cp in t.get("critical_paths", []):
                lines += ["", f"Critical path ({cp['from_clock']} -> {cp['to_clock']}): {cp['delay_ns']:.2f} ns "
                          f"({cp['logic_ns']:.2f} logic, {cp['routing_ns']:.2f} routing, {cp['steps']} steps) from "
                          f"`{cp['start']}` to `{cp['end']}`"]
        else:
            lines.append(f"WNS {t['wns_ns']} ns, WHS {t['whs_ns']} ns at {t['period_ns']} ns: Fmax "
                         f"{t['fmax_mhz']} MHz, {'met' if t['met'] else '**not met**'}")
        lines.append("")
    if rep["tools"]:
        lines += ["## Tools", ""] + [f"- {k}: {v}" for k, v in rep["tools"].items()] + [""]
    if rep["commands"]:
        lines += ["## Commands run", "", "| step | in | command | s |", "|---|---|---|---|"]
        for c in rep["commands"]:
            lines.append(f"| {c['step']} | `{c['cwd']}` | `{c['command']}` | {c['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def build(rtl_dir: str | Path, board: str, out: str | Path, *, dry_run: bool = False, jobs: int = 2,
          baud: int = 115_200, seed: int = 1, allow_timing_fail: bool = False,
          replace_bitstream: bool = False, clock_mhz: float | None = None, outreg: bool = True) -> tuple[int, dict]:
    """Build ``board``'s bitstream of the accelerator in ``rtl_dir`` into ``out``; returns ``(exit status,
    report)``. Raises :class:`BitstreamError` on bad input or a failed tool (``out`` then stays as it was)."""
    if board not in BOARDS:
        raise BitstreamError(f"unknown board {board!r} (one of {', '.join(BOARDS)})")
    for option, value in (("--baud", baud), ("--jobs", jobs)):
        if value < 1:
            raise BitstreamError(f"{option} {value}: must be a positive integer")
    acc = load_accelerator(rtl_dir)
    if clock_mhz is not None:
        if not 1 <= clock_mhz <= 800:
            raise BitstreamError(f"--clock-mhz must be in 1 .. 800, got {clock_mhz:g}")
        acc.clock_mhz = float(clock_mhz)
    out = Path(out)
    name = out.name
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise BitstreamError(f"--out {out}: the folder name must be letters, digits and ._+- only")
    check_output_dir(out, TOOL)  # a folder this tool did not write is refused before the build
    t0 = time.monotonic()
    tmp = new_staging_dir(out).resolve()
    rec = Recorder(tmp)
    try:
        if board == "pynq-z2":
            b = build_pynq(acc, tmp, name, dry_run, jobs, rec)
            part = PYNQ_Z2["part"]
        else:
            b = build_ulx3s(acc, tmp, name, dry_run, baud, seed, rec, outreg=outreg)
            part = ULX3S_85F["part"]
    except BaseException as e:
        if isinstance(e, BitstreamError):
            raise BitstreamError(f"{e}\n(build files kept in {tmp}; {out} unchanged)") from e
        raise
    commit = git_commit()
    acc_info = {"top": acc.top, "rtl_dir": str(acc.rtl_dir), "model_sha256": acc.model_sha256,
                "in_width": acc.in_width, "out_width": acc.out_width, "input_shape": acc.input_shape,
                "classes": acc.classes}
    rep = {"name": name, "board": board, "part": part, "status": b.status, "bitstream": b.bitstream,
           "clock_mhz": acc.clock_mhz, "accelerator": acc_info, "resources": b.resources, "timing": b.timing,
           "tools": b.tools, "commands": rec.commands, "notes": b.notes, **b.extra,
           "elapsed_s": round(time.monotonic() - t0, 2)}
    manifest = {"name": name, "board": board, "part": part, "git_commit": commit,
                "model_sha256": acc.model_sha256, "folding": acc.folding, "clock_mhz": acc.clock_mhz,
                "accelerator_top": acc.top, "bitstream": b.bitstream, "status": b.status, "tools": b.tools,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(tmp / "report.json", json.dumps(rep, indent=1) + "\n")
    atomic_write_text(tmp / "report.md", report_markdown(rep))
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    code = EXIT_NO_VIVADO if b.status == "no-vivado" else EXIT_OK
    if b.status == "timing-failed" and not allow_timing_fail:
        folder, code = out.parent / f"{name}.timing-failed", EXIT_TIMING
    elif b.bitstream is None and out.exists() and _has_bitstream(out) and not replace_bitstream:
        folder = out.parent / f"{name}.{b.status}"
        rep["notes"].append(f"{out} holds a bitstream: left as it was; this build is in {folder}")
    else:
        folder = out
    try:
        install_output_dir(tmp, folder, TOOL)
    except OutputError as e:
        raise BitstreamError(f"{e} (this build is kept in {tmp})") from None
    rep["folder"] = str(folder)
    return code, rep


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="instabnn-bitstream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rtl_dir", help="accelerator RTL directory (with accelerator.json)")
    p.add_argument("--board", choices=BOARDS, default="pynq-z2")
    p.add_argument("--out", required=True, help="build folder, e.g. bitstreams/pynq-z2-demo")
    p.add_argument("--dry-run", action="store_true", help="write the project files and scripts, run no tool")
    p.add_argument("--jobs", type=int, default=2, help="Vivado run jobs (pynq-z2)")
    p.add_argument("--baud", type=int, default=115_200, help="UART baud rate (ulx3s-85f)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (ulx3s-85f)")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="accelerator clock, overriding the manifest's clock_mhz (ulx3s-85f: 25 = the board clock, "
                        "no PLL)")
    p.add_argument("--allow-timing-fail", action="store_true",
                   help="install a build whose timing is not met (else it goes to <out>.timing-failed, exit 4)")
    p.add_argument("--no-outreg", action="store_true",
                   help="ulx3s-85f: no block-RAM output-register pass between yosys and nextpnr (ecp5_outreg), for "
                        "comparison")
    p.add_argument("--replace-bitstream", action="store_true",
                   help="let a build without bitstream (dry run, no Vivado) replace a folder that holds one")
    args = p.parse_args(argv)
    try:
        status, rep = build(args.rtl_dir, args.board, args.out, dry_run=args.dry_run, jobs=args.jobs,
                            baud=args.baud, seed=args.seed, allow_timing_fail=args.allow_timing_fail,
                            replace_bitstream=args.replace_bitstream, clock_mhz=args.clock_mhz,
                            outreg=not args.no_outreg)
    except (BitstreamError, OutputError) as e:
        print(f"instabnn-bitstream: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(report_markdown(rep))
    folder = rep["folder"]
    if status == EXIT_NO_VIVADO:
        print(f"instabnn-bitstream: Vivado is not installed (no 'vivado' on PATH): no PYNQ-Z2 bitstream was built. "
              f"Produced instead in {folder}: project/build.tcl + project/run_vivado.sh (the Vivado build, to run "
              f"where Vivado is installed) and a Yosys synth_xilinx xc7 resource estimate (report.md). "
              f"Exit status {EXIT_NO_VIVADO}.", file=sys.stderr)
    elif status == EXIT_TIMING:
        print(f"instabnn-bitstream: timing not met at {rep['clock_mhz']:g} MHz: the build is in {folder}, "
              f"not installed (lower clock_mhz, or --allow-timing-fail). Exit status {EXIT_TIMING}.", file=sys.stderr)
    else:
        print(f"instabnn-bitstream: {rep['status']}: {folder}")
    return status


