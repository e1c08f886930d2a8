"""Per-block Yosys synthesis figures (xc7): parsing, and real runs on two foldings of the binary MVU."""

from __future__ import annotations

import shutil

import pytest

from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape
from instabnn.hw.synth import XC7Z020, parse_stat, synth_binary_mvu

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
