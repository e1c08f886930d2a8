"""PYNQ-Z2 (xc7z020, Vivado): the DMA adapter and the block-design script (templates/), Vivado's report parsing, and
the Yosys xc7 resource estimate used where Vivado is not installed."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from .accelerator import Accelerator, BitstreamError, copy_rtl
from .render import render
from .tools import Build, Recorder, tool_version

PYNQ_Z2 = {"part": "xc7z020clg400-1", "board_part": "tul.com.tw:pynq-z2", "family": "zynq-7000"}
XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}


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
    streams and the accelerator: widths, reset polarity, tkeep / tlast (templates/pynq_z2_dma_adapter.v; the
    widths are its parameters' defaults)."""
    return render("pynq_z2_dma_adapter.v", top=acc.top, acc_in_width=acc.in_width,
                  acc_out_width=acc.out_width, dma_in_width=dma_stream_width(acc.in_width),
                  dma_out_width=dma_stream_width(acc.out_width))


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


def dma_parameters(in_width: int, out_width: int) -> dict[str, str]:
    """The AXI DMA's configuration (its CONFIG.* properties; the .hwh carries them to PYNQ, whose DMA driver takes
    the transfer alignment from c_m_axi_*_data_width and the largest transfer from c_sg_length_width) for an
    accelerator with stream widths ``in_width`` / ``out_width``: simple mode, the memory side as wide as the
    widest stream and at least 32 bits."""
    din, dout = dma_stream_width(in_width), dma_stream_width(out_width)
    mm = max(32, din, dout)
    return {"c_include_sg": "0", "c_sg_length_width": "26", "c_sg_include_stscntrl_strm": "0",
            "c_include_mm2s": "1", "c_include_s2mm": "1",
            "c_m_axis_mm2s_tdata_width": str(din), "c_s_axis_s2mm_tdata_width": str(dout),
            "c_m_axi_mm2s_data_width": str(mm), "c_m_axi_s2mm_data_width": str(mm),
            "c_mm2s_burst_size": "16", "c_s2mm_burst_size": "16"}


def pynq_tcl(acc: Accelerator, name: str, sources: list[str], mem_files: list[str], jobs: int = 2) -> str:
    """The Vivado batch script (run from the build folder: ``vivado -mode batch -source project/build.tcl``;
    templates/pynq_z2_block_design.tcl). ``sources`` / ``mem_files``: paths relative to the build folder."""
    clock = f"{acc.clock_mhz:g}"
    ps_fixed = {"PCW_FPGA0_PERIPHERAL_FREQMHZ": clock, "PCW_EN_CLK0_PORT": "1", "PCW_EN_RST0_PORT": "1",
                "PCW_USE_M_AXI_GP0": "1", "PCW_USE_S_AXI_HP0": "1", "PCW_S_AXI_HP0_DATA_WIDTH": "64"}
    return render("pynq_z2_block_design.tcl", part=PYNQ_Z2["part"], board_part=PYNQ_Z2["board_part"],
                  top=acc.top, manifest_name=acc.manifest_path.name, model=acc.model_sha256 or "unknown",
                  clock_mhz=clock, name=name, jobs=jobs, bd_name=BD_NAME, wrapper_top=WRAPPER_TOP,
                  sources=sources, mem_files=mem_files, ps_fallback=PYNQ_Z2_PS_FALLBACK, ps_fixed=ps_fixed,
                  dma=dma_parameters(acc.in_width, acc.out_width))


def vivado_script() -> str:
    return render("run_vivado.sh")


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
    from instabnn.hw.blocks.common.rtl_runner import yosys_synth

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

