"""Per-block Yosys synthesis figures (xc7): parsing, and real runs on two foldings of the binary MVU."""

from __future__ import annotations

import shutil

import pytest

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape
from instabnn.hw.synth import (XC7Z020, SynthError, instance_parameters, parse_hierarchy, parse_stat,
                               synth_binary_mvu)

STAT = """
=== binary_mvu ===
   Number of wires:                580
   Number of cells:                544
     CARRY4                         47
     FDRE                          175
     FDSE                           10
     LUT2                           76
     LUT6                          101
     RAM32M                          3
     RAMB18E1                        3
     RAMB36E1                        1
     DSP48E1                         2
"""


def test_parse_stat_groups_cells():
    r = parse_stat("earlier stat\n   Number of cells: 3\n     LUT1 3\n" + STAT)
    assert (r["lut"], r["ff"], r["carry4"], r["lutram"], r["bram36"], r["dsp"]) == (177, 185, 47, 3, 2.5, 2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")
def test_more_parallel_folding_costs_more_logic(tmp_path):
    small = synth_binary_mvu(BinaryMvuShape(144, 16, 16, 4, 1), tmp_path / "a")
    large = synth_binary_mvu(BinaryMvuShape(144, 16, 48, 8, 1), tmp_path / "b")
    assert 0 < small["lut"] < large["lut"] and 0 < small["ff"]
    assert small["utilisation_xc7z020_pct"]["lut"] == round(100 * small["lut"] / XC7Z020["lut"], 2)


HIERARCHY = r"""
Printing statistics.

=== $paramod$09e04010\lane_collector ===
   Number of cells:                  6
     FDRE                            1
     LUT3                            1
     RAM64M                          3

=== $paramod\output_fifo\WIDTH=s32'00000000000000000000000000000001 ===
   Number of cells:                 17
     FDRE                            7
     LUT4                            4

=== $paramod\output_fifo\WIDTH=s32'00000000000000000000000000001000 ===
   Number of cells:                 38
     FDRE                           21
     LUT2                            4

=== design hierarchy ===
   Number of cells:                 61
     DSP48E1                         1
     FDRE                           29
     LUT2                            4
     LUT3                            1
     LUT4                            4
     RAM32M                          2
     RAM64M                          3
     RAMB18E1                        1
"""


def test_parse_hierarchy_per_module_and_total():
    r = parse_hierarchy("an earlier stat\n" + HIERARCHY)
    assert r["lane_collector"] == {"lut": 1, "lutram_sites": 12, "ff": 1, "bram36": 0.0, "dsp": 0}
    assert r["output_fifo"] == {"lut": 8, "lutram_sites": 0, "ff": 28, "bram36": 0.0, "dsp": 0}  # both widths
    assert r["total"] == {"lut": 9, "lutram_sites": 20, "ff": 29, "bram36": 0.5, "dsp": 1}


def test_instance_parameters_from_a_compiled_top(tmp_path):
    top = tmp_path / "instabnn_top.sv"
    top.write_text("""module instabnn_top;
sliding_window #(
    .C(1),
    .K(3)
) stem_swg (
    .clk(clk)
);

insta_tail #(
    .CHANNELS(32),
    .G_FILE("block0_tail_g_tanh3.mem")
) block0_tail (
    .clk(clk),
    .s_axis_stat_tdata(10'(0))
);
endmodule
""")
    assert instance_parameters(top, "block0_tail") == ("insta_tail",
                                                       {"CHANNELS": "32", "G_FILE": '"block0_tail_g_tanh3.mem"'})
    assert instance_parameters(top, "stem_swg") == ("sliding_window", {"C": "1", "K": "3"})
    with pytest.raises(SynthError, match="instabnn_top.sv: no instance block9_tail"):
        instance_parameters(top, "block9_tail")
