"""The analytic resource model (each block spec's ``resources()``, the shared terms in
``hw/blocks/common/resources.py``): multiplier mapping, the INSTA units' DSP / LUT trade-offs, the binary MVU's
weight ROM and popcount, and a missing width refused."""

from __future__ import annotations

import json
import shutil

import pytest

from instabnn.hw.blocks.common import resources
from instabnn.hw.blocks.insta_threshold.spec import InstaThresholdSpec, sequencer_limbs
from instabnn.hw.compile.folding import with_chosen_limbs
from instabnn.hw.synth import threshold_unit_constants


def test_multiplier_dsp_follows_yosys_slicing():
    assert resources.multiplier_dsp(8, 8) == 1
    assert resources.multiplier_dsp(25, 18) == resources.multiplier_dsp(18, 25) == 1
    assert resources.multiplier_dsp(30, 18) == 2  # the tail's SLOPE x D
    assert resources.multiplier_dsp(28, 25) == 4  # the one-limb sequencer of a C = 64, N = 64 unit (Yosys: 4)
    assert resources.multiplier_dsp(25, 15) == 1  # the same with two limbs (Yosys: 1)


def test_sequencer_limbs_fit_the_dsp_port():
    assert sequencer_limbs((8, 15, 18)) == 1
    assert sequencer_limbs((14, 21, 28)) == 2
    assert sequencer_limbs((16, 27, 36)) == 3
    for widths in ((14, 21, 28), (16, 27, 36), (10, 17, 19)):
        limbs = sequencer_limbs(widths)
        assert -(-max(widths) // limbs) <= 17


def test_insta_threshold_tables_and_limbs_trade_dsp_for_lut():
    consts = threshold_unit_constants(64, 64, 8, static=0)
    spec = with_chosen_limbs(InstaThresholdSpec.from_constants(consts, 1))  # LIMBS as folding chooses it
    assert spec.limbs == 2 and spec.power_table == 1 and spec.full_rate  # the defaults at PE = 1
    plain = InstaThresholdSpec.from_constants(consts, 1, limbs=1, power_table=0)

    fast, slow = plain.resources(), spec.resources()
    assert fast["dsp"] == 6 and slow["dsp"] == 1  # Yosys: 6 and 1
    assert slow["lut"] > fast["lut"]
    # where two limbs would slow the unit down, it keeps one
    tight = with_chosen_limbs(InstaThresholdSpec.from_constants(threshold_unit_constants(16, 16, 8, static=0),
                                                                4))  # 64 beats
    assert tight.limbs == 1 and tight.full_rate


def test_a_missing_width_is_an_error_naming_the_block(tmp_path):
    from instabnn.hw.compile import compiler as C

    with pytest.raises(ValueError, match="binary_mvu mw64: memory of depth 36 x width None"):
        resources.estimate("binary_mvu mw64", lut=10, memories=((36, None),))
    with pytest.raises(ValueError, match="insta_tail t: LIMBS is None"):
        resources.moment_poly_sequencer("insta_tail t", 8, 64, 1, None, (8, 8, 8), 0)
    net = C.Netlist(tmp_path)
    net.layer = C.Layer("conv1", "BinaryConv")
    with pytest.raises(C.CompileError, match="binary_mvu conv1_mvu: no block spec"):
        net.instance("binary_mvu", "conv1_mvu", {"MW": 64}, {}, None)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")
def test_whole_design_estimates_are_within_tolerance_of_yosys(tmp_path):
    """issue 16: the estimate within 15 % of Yosys' LUT sites (logic + LUT RAM) on the residual digits networks and
    the W1A1 chains
    (``make estimate-check``; about half an hour of Yosys)."""
    from instabnn.sim import estimate_check

    rc = estimate_check.main(["--out", str(tmp_path / "estimate_vs_yosys.json")])
    report = json.loads((tmp_path / "estimate_vs_yosys.json").read_text())
    assert set(report["designs"]) == set(estimate_check.DESIGNS)
    for name, r in report["designs"].items():
        assert r["lut_within_tolerance"], (name, r["estimate"], r["yosys"])
    assert rc == 0


def test_roms_stay_in_logic_unless_they_fill_their_block_rams():
    # the calibration points (Yosys 0.23 synth_xilinx -family xc7): 4096 x 1 and 36 x 1024 in logic, 3584 x 14 in
    # block RAM (3 RAMB18)
    assert resources.rom(4096, 1) == {"lut": 64, "bram36": 0.0}
    assert resources.rom(36, 1024) == {"lut": 1024, "bram36": 0.0}
    assert resources.rom(36, 1024, 1)["lut"] == 2048  # the XNOR with the input: a 7-input function a bit
    assert resources.rom(3584, 14)["bram36"] == 2.0 and resources.rom(3584, 14)["lut"] == 0
    assert resources.rom(4, 100) == {"lut": 0, "bram36": 0.0}  # two address bits fold into the reader's LUTs
    # ram_style "block": block RAM at any depth, the XNOR a LUT a bit (Yosys: 29 RAMB18 for 36 x 1024)
    assert resources.rom(36, 1024, 1, "block") == {"lut": 1024, "bram36": 14.5}
    with pytest.raises(ValueError, match="ROM style 'ultra'"):
        resources.rom(36, 1024, 1, "ultra")


def test_popcount_luts_follow_the_adder_tree():
    assert resources.popcount_luts(6) == 3  # one leaf: a LUT per count bit
    assert resources.popcount_luts(12) == 3 + 3 + 4
    assert resources.popcount_luts(64) == 2 * resources.popcount_luts(32) + 7


def test_binary_mvu_estimate_near_its_yosys_calibration_points():
    from instabnn.hw.blocks.binary_mvu.spec import BinaryMvuShape

    # Yosys 0.23: PE 16 x SIMD 64, 36 weight words: 3,952 LUT, no block RAM (the weights in LUTs);
    # PE 4 x SIMD 256, one weight word: 1,966 LUT (the popcounts alone)
    wide = BinaryMvuShape(576, 64, 64, 16, 1).resources()
    assert wide["bram36"] == 0 and abs(wide["lut"] / 3952 - 1) < 0.1
    flat = BinaryMvuShape(256, 4, 256, 4, 1).resources()
    assert flat["bram36"] == 0 and abs(flat["lut"] / 1966 - 1) < 0.1
    deep = BinaryMvuShape(2304, 256, 32, 1, 1).resources()  # 18,432 x 32 weights: block RAM
    assert deep["bram36"] >= 16 and deep["lut"] < 500


def test_width_converter_estimate_by_direction():
    from instabnn.hw.blocks.stream.spec import WidthConverterShape

    assert WidthConverterShape(14, 784).resources()["lut"] <= 20  # up: registers with enables
    down = WidthConverterShape(784, 14).resources()  # Yosys 0.23: 1,689 LUT, 1 DSP (TFC's image to SIMD 14)
    assert abs(down["lut"] / 1689 - 1) < 0.1 and down["dsp"] == 1
    assert WidthConverterShape(64, 64).resources()["lut"] == 0


def test_estimate_check_compares_and_refuses_unknown_designs(capsys):
    from instabnn.sim import estimate_check

    yosys = {"lut": 1000, "bram36": 2.0, "dsp": 3, "seconds": 1.0}
    assert estimate_check.compare({"lut": 1140, "bram36": 2.0, "dsp": 3}, yosys)["lut_within_tolerance"]
    assert not estimate_check.compare({"lut": 800, "bram36": 2.0, "dsp": 3}, yosys)["lut_within_tolerance"]
    md = estimate_check.markdown({"designs": {"tfc_1w1a": {"fps": 20000.0, "estimate": {"lut": 800, "bram36": 2.0,
                                                                                            "dsp": 3},
                                                           "yosys": yosys, "lut_ratio": 0.8,
                                                           "lut_with_lutram_ratio": 0.8,
                                                           "lut_within_tolerance": False}}})
    assert "| tfc_1w1a | 20000 | 800 / 2 / 3 | 1,000 / 2 / 3 | 0 | 0.800 (outside) | 0.800 |" in md
    # the check counts Yosys' LUT RAM as the LUT sites it takes (the estimate counts small RAMs as LUTs)
    with_ram = estimate_check.compare({"lut": 1100, "bram36": 0.0, "dsp": 0}, {**yosys, "lutram_sites": 100})
    assert with_ram["lut_with_lutram_ratio"] == 1.0 and with_ram["lut_within_tolerance"]
    assert with_ram["lut_ratio"] == 1.1
    assert not estimate_check.compare({"lut": 1400, "bram36": 0.0, "dsp": 0},
                                      {**yosys, "lutram_sites": 100})["lut_within_tolerance"]
    assert estimate_check.main(["--designs", "cnv_1w1a,bogus"]) == 1
    assert "unknown ['bogus']" in capsys.readouterr().err
