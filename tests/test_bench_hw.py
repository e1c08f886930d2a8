"""``instabnn.sim.bench``: the hardware report joins the model benchmark's JSON (``make bench``)."""

from __future__ import annotations

import json

import pytest

from instabnn.sim.bench import markdown, merge_into


def test_merge_into_keeps_the_model_benchmark(tmp_path):
    target = tmp_path / "bench.json"
    target.write_text(json.dumps({"variants": {"insta": {"accuracy": 0.99}}}))
    report = {"fps": 20000.0, "variants": {}, "resnet20": {}}
    merge_into(target, report)
    data = json.loads(target.read_text())
    assert data["variants"]["insta"]["accuracy"] == 0.99 and data["hardware"] == report
    merge_into(tmp_path / "new.json", report)
    assert json.loads((tmp_path / "new.json").read_text()) == {"hardware": report}
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="list.json"):
        merge_into(tmp_path / "list.json", report)
    assert "Hardware benchmark" in markdown(report)


def test_markdown_has_every_variants_latency():
    """The digits and the ResNet-20 tables both carry the measured latency (issue 14, goal 5)."""
    estimate = {"lut": 1, "bram36": 1.0, "dsp": 1}
    digits = {"compile_seconds": 1.0, "mismatches": 0, "accuracy_reference": 0.99, "accuracy_rtl": 0.99,
              "cycles_per_frame_measured": 4608.0, "cycles_per_frame_analytic": 4608, "latency_cycles": 34147,
              "cocotb_images_per_s": 60.0, "verilator_images_per_s": 70.0, "cocotb_vs_verilator": 0.86,
              "resources_estimate": estimate}
    resnet = {"n": 20, "mismatches": 0, "cycles_per_frame_measured": 18432.0, "cycles_per_frame_analytic": 18432,
              "latency_cycles": 276157, "resources_estimate": estimate}
    text = markdown({"fps": 20000.0, "variants": {"insta": digits}, "resnet20": {"latency_optimized": resnet}})
    assert "| 4608 / 4608 | 34147 |" in text and "| 18432 / 18432 | 276157 |" in text
    assert text.count("latency") >= 2
