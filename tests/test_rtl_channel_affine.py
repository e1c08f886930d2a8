"""RTL tests of the per-channel affine unit (``hw/blocks/channel_affine/channel_affine.sv``): the spec equals the contract's layers,
lint, illegal parameters, cocotb (``instabnn.sim.test_channel_affine``)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from instabnn.hw.blocks.channel_affine.spec import ChannelAffineSpec, write_const_file
from instabnn.hw.reference import layers as L
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import lint_output_clean, run_cocotb, verilator_lint

SOURCES = rtl_paths("channel_affine")


def _requant_spec(seed: int, channels: int, pe: int, acc_bits: int) -> ChannelAffineSpec:
    rng = np.random.default_rng(seed)
    bound = 1 << (acc_bits - 1)
    rq = L.affine_requant(rng.uniform(-2, 2, channels), rng.uniform(-1, 1, channels), -6, bound, -5, 8)
    return ChannelAffineSpec.from_requant(rq, acc_bits, pe)


def _classifier_spec(seed: int, classes: int, pe: int, acc_bits: int) -> ChannelAffineSpec:
    rng = np.random.default_rng(seed)
    head = L.classifier(rng.integers(-128, 128, (classes, 16)), rng.integers(-8, -4, classes),
                        rng.uniform(-3, 3, classes), -4, 64)
    return ChannelAffineSpec.from_classifier(head, acc_bits, pe)


def test_spec_reference_equals_the_contract_layers():
    rng = np.random.default_rng(0)
    rq = L.affine_requant(rng.uniform(-2, 2, 8), rng.uniform(-1, 1, 8), -6, 1 << 15, -5, 8)
    acc = rng.integers(-(1 << 15), 1 << 15, (5, 8, 3, 3))
    assert np.array_equal(ChannelAffineSpec.from_requant(rq, 16, 4).reference(acc), rq(acc))
    head = L.classifier(rng.integers(-128, 128, (10, 16)), rng.integers(-8, -4, 10), rng.uniform(-3, 3, 10), -4, 64)
    q = rng.integers(-128, 128, (6, 16, 8, 8))
    sums = L.global_sum(q) @ head.weight.T
    spec = ChannelAffineSpec.from_classifier(head, 22, 5)
    assert np.array_equal(spec.reference(sums), head(q))
    worst = np.full((1, 10), -(1 << 21))
    assert np.array_equal(spec.reference(worst), (worst << head.shift[None, :]) + head.bias[None, :])  # no clamp


CASES = [("requant", 16, 4, 18, 9), ("requant", 6, 3, 12, 5), ("logits", 10, 5, 22, 1), ("logits", 10, 1, 30, 1)]


@pytest.mark.parametrize("kind,channels,pe,in_bits,pixels", CASES, ids=[f"{c[0]}_c{c[1]}_pe{c[2]}" for c in CASES])
def test_channel_affine_cocotb(kind, channels, pe, in_bits, pixels, tmp_path, verilator_path):
    make = _requant_spec if kind == "requant" else _classifier_spec
    spec = make(channels + pe, channels, pe, in_bits)
    cfile = write_const_file(tmp_path / "consts.mem", spec)
    params = spec.rtl_parameters(cfile)
    ok, log = lint_output_clean(verilator_lint(SOURCES, "channel_affine", params, verilator_path))
    assert ok, log
    case = {"spec": asdict(spec), "pixels": pixels, "n_frames": 12, "seed": channels * 7 + pe}
    (tmp_path / "case.json").write_text(json.dumps(case))
    run_cocotb(sources=SOURCES, toplevel="channel_affine", test_module="instabnn.sim.test_channel_affine",
               parameters=params, directory=tmp_path, test_dir=tmp_path,
               extra_env={"INSTABNN_AFFINE_CASE": str(tmp_path / "case.json")}, seed=pe)
    result = json.loads((tmp_path / "result_stream_full_rate.json").read_text())
    assert result["latency"] == [4]
    assert abs(result["cycles_per_frame"] - pixels * spec.cf) <= 0.02 * pixels * spec.cf


@pytest.mark.parametrize("override,message", [({"PE": 3}, "must divide"), ({"SHIFT": -1}, "SHIFT"),
                                              ({"CONST_FILE": '""'}, "CONST_FILE"), ({"OUT_BITS": 65}, "OUT_BITS")])
def test_illegal_parameters_are_fatal(override, message, tmp_path, verilator_path):
    spec = _requant_spec(1, 8, 4, 16)
    params = {**spec.rtl_parameters(write_const_file(tmp_path / "c.mem", spec)), **override}
    proc = verilator_lint(SOURCES, "channel_affine", params, verilator_path)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


SWEEP = [("requant", 32, 8, 20, 16), ("requant", 12, 4, 14, 9), ("requant", 7, 7, 10, 4), ("logits", 10, 2, 26, 1),
         ("logits", 100, 20, 24, 1), ("requant", 64, 16, 18, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("kind,channels,pe,in_bits,pixels", SWEEP, ids=[f"{c[0]}_c{c[1]}_pe{c[2]}" for c in SWEEP])
def test_channel_affine_sweep(kind, channels, pe, in_bits, pixels, tmp_path, verilator_path):
    """>= 1000 frames over six parameter sets (200 frames per test, three tests each)."""
    make = _requant_spec if kind == "requant" else _classifier_spec
    spec = make(channels * pe, channels, pe, in_bits)
    params = spec.rtl_parameters(write_const_file(tmp_path / "consts.mem", spec))
    case = {"spec": asdict(spec), "pixels": pixels, "n_frames": 200, "seed": channels + pe}
    (tmp_path / "case.json").write_text(json.dumps(case))
    run_cocotb(sources=SOURCES, toplevel="channel_affine", test_module="instabnn.sim.test_channel_affine",
               parameters=params, directory=tmp_path, test_dir=tmp_path,
               extra_env={"INSTABNN_AFFINE_CASE": str(tmp_path / "case.json")}, seed=pe)
