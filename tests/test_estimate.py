"""The analytic resource model (each block spec's ``resources()``, the shared terms in
``hw/blocks/common/resources.py``): multiplier mapping, the INSTA units' DSP / LUT trade-offs, the binary MVU's
weight ROM and popcount, and a missing width refused."""

from __future__ import annotations

from instabnn.hw.blocks.common import resources
from instabnn.hw.blocks.insta_threshold.spec import InstaThresholdSpec, sequencer_limbs
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
    spec = InstaThresholdSpec.from_constants(consts, 1)
    assert spec.limbs == 2 and spec.power_table == 1 and spec.full_rate  # the defaults at PE = 1
    plain = InstaThresholdSpec.from_constants(consts, 1, limbs=1, power_table=0)

    fast, slow = plain.resources(), spec.resources()
    assert fast["dsp"] == 6 and slow["dsp"] == 1  # Yosys: 6 and 1
    assert slow["lut"] > fast["lut"]
    # where two limbs would slow the unit down, it keeps one
    tight = InstaThresholdSpec.from_constants(threshold_unit_constants(16, 16, 8, static=0), 4)  # 64 beats
    assert tight.limbs == 1 and tight.full_rate
