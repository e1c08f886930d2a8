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
