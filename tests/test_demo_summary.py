"""The make-demo summary (sim/demo.py): fields from the run directory's reports, a clear error for a missing one."""

from __future__ import annotations

import json

import pytest

from instabnn.sim import demo


def _run(tmp_path, mismatches=0):
    (tmp_path / "rtl").mkdir()
    (tmp_path / "result.json").write_text(json.dumps({"config": {"variant": "insta"}, "test_acc": 0.9861}))
    (tmp_path / "lowered.json").write_text(json.dumps({"agreement": {
        "accuracy_float": 0.9861, "accuracy_reference": 0.9833, "top1_agreement": 0.9972}}))
    (tmp_path / "rtl" / "accelerator.json").write_text(json.dumps({
        "cycles_per_frame_estimate": 4608, "model_sha256": "ab" * 32,
        "resources_estimate": {"lut": 1000, "bram36": 2.5, "dsp": 7}}))
    (tmp_path / "cosim.json").write_text(json.dumps({
        "n": 360, "accuracy_rtl": 0.9833, "mismatches": mismatches, "cycles_per_frame": 4610.0,
        "latency_cycles": 12345, "sim_images_per_s": 50.0}))
    return tmp_path


def test_summary_fields_and_exit_status(tmp_path):
    s = demo.summary(_run(tmp_path))
    assert (s["accuracy_float"], s["accuracy_reference"], s["accuracy_rtl"]) == (0.9861, 0.9833, 0.9833)
    assert s["fps_at_100mhz"] == pytest.approx(100e6 / 4610.0) and s["cycles_per_frame"] == 4610.0
    assert "0 mismatching images" in demo.table(s)
    assert demo.main([str(tmp_path), "--out", str(tmp_path / "demo.json")]) == 0
    assert json.loads((tmp_path / "demo.json").read_text())["mismatches"] == 0
    (tmp_path / "cosim.json").write_text(json.dumps({**json.loads((tmp_path / "cosim.json").read_text()),
                                                    "mismatches": 2}))
    assert demo.main([str(tmp_path), "--out", str(tmp_path / "demo.json")]) == 1


def test_missing_report_names_the_file_and_step(tmp_path, capsys):
    run = _run(tmp_path)
    (run / "cosim.json").unlink()
    assert demo.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert "cosim.json" in err and "co-simulation" in err
