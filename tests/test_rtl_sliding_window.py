"""RTL tests of the sliding-window generator (``hw/blocks/sliding_window/sliding_window.sv``): spec, lint, illegal parameters,
Yosys synthesis, cocotb simulation against ``instabnn.hw.reference.window``.

Each simulation case builds the generator with Verilator for one :class:`SlidingWindowShape` and runs the cocotb
tests of ``instabnn.sim.test_sliding_window`` (full rate with the cycle and latency checks, random idle and
backpressure, reset mid-frame). The default tier runs two shapes; ``-m slow`` sweeps more shapes (binary and 8-bit,
K in {1, 3}, stride 1 and 2, padding 0 and 1) with over 1000 frames, and simulates a Yosys netlist.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pytest

from instabnn.hw.blocks.sliding_window.spec import SlidingWindowShape
from instabnn.hw.rtl_library import rtl_paths
from instabnn.sim.rtl_runner import (
    VERILATOR_BUILD_ARGS,
    lint_output_clean,
    run_cocotb,
    verilator_lint,
    yosys_synth,
)

SOURCES = rtl_paths("sliding_window")
TOPLEVEL = "sliding_window"
TEST_MODULE = "instabnn.sim.test_sliding_window"

FAST_SHAPES = [
    # binary 3x3 stride 1 pad -1 (code 0): a stage-1 convolution in miniature, output-bound
    SlidingWindowShape(channels=8, height=6, width=5, kernel=3, stride=1, pad=1, simd=4, elem_bits=1, pad_value=0),
    # 8-bit 1x1 stride 2 (the real downsampling shortcut), input-bound
    SlidingWindowShape(channels=4, height=6, width=6, kernel=1, stride=2, pad=0, simd=2, elem_bits=8),
]
FAST_FRAMES = 8

SLOW_SHAPES = [
    # the first convolution: 3 channels of 8 bits, pad 0, all channels per beat
    SlidingWindowShape(channels=3, height=7, width=7, kernel=3, stride=1, pad=1, simd=3, elem_bits=8),
    # binary 3x3 stride 2 pad 1 (downsampling block), odd map, pad code 1 to see it is a parameter
    SlidingWindowShape(channels=4, height=7, width=6, kernel=3, stride=2, pad=1, simd=2, elem_bits=1, pad_value=1),
    # 3x3 without padding, even map and stride 2: a row no window uses at the bottom
    SlidingWindowShape(channels=2, height=8, width=5, kernel=3, stride=2, pad=0, simd=1, elem_bits=4, pad_value=5),
    # 1x1 stride 1: input and output rates equal
    SlidingWindowShape(channels=6, height=4, width=3, kernel=1, stride=1, pad=0, simd=3, elem_bits=2),
    # 1x1 stride 2, odd map, one channel per beat
    SlidingWindowShape(channels=2, height=5, width=5, kernel=1, stride=2, pad=0, simd=1, elem_bits=8),
    # 3x3 stride 1 pad 0, tiny map (one output pixel per frame)
    SlidingWindowShape(channels=2, height=3, width=3, kernel=3, stride=1, pad=0, simd=2, elem_bits=1),
    # 3x3 stride 1 pad 1 on a 1-pixel-wide map
    SlidingWindowShape(channels=1, height=4, width=1, kernel=3, stride=1, pad=1, simd=1, elem_bits=3, pad_value=0),
    # K = 2 (even kernel), stride 2, pad 1
    SlidingWindowShape(channels=4, height=5, width=4, kernel=2, stride=2, pad=1, simd=4, elem_bits=1),
    # equal input and output rates with the smallest rows: 1x1 on a 1-pixel-wide map, 2x2 stride 2
    SlidingWindowShape(channels=1, height=3, width=1, kernel=1, stride=1, pad=0, simd=1, elem_bits=8),
    SlidingWindowShape(channels=2, height=4, width=4, kernel=2, stride=2, pad=0, simd=2, elem_bits=1),
]
SLOW_FRAMES = 64  # per test; with the idle/backpressure and reset tests about 150 frames per shape, 1600 in all

LINT_SHAPES = FAST_SHAPES + SLOW_SHAPES + [
    SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1),
    SlidingWindowShape(channels=64, height=8, width=8, kernel=3, stride=2, pad=1, simd=32, elem_bits=1),
    SlidingWindowShape(channels=3, height=32, width=32, kernel=3, stride=1, pad=1, simd=3, elem_bits=8),
]


def run_sliding_window(shape: SlidingWindowShape, n_frames: int, directory: Path, yosys_netlist: bool = False) -> dict:
    from instabnn.sim.test_sliding_window import prepare_case

    seed = zlib.crc32(shape.name.encode())
    case_dir = directory / "case"
    parameters, extra_env = prepare_case(shape, seed, n_frames, case_dir)
    sources, build_args = SOURCES, VERILATOR_BUILD_ARGS
    if yosys_netlist:
        netlist = directory / "netlist.v"
        yosys_synth(SOURCES, TOPLEVEL, parameters, case_dir / "synth", netlist)
        sources, parameters, build_args = [netlist], {}, VERILATOR_BUILD_ARGS + ["-Wno-UNOPTFLAT"]
    run_cocotb(sources=sources, toplevel=TOPLEVEL, test_module=TEST_MODULE, parameters=parameters,
               directory=directory, test_dir=case_dir, extra_env=extra_env, seed=seed, build_args=build_args)
    return json.loads((case_dir / "result_stream_full_rate.json").read_text())


def _check_measurements(shape: SlidingWindowShape, result: dict):
    analytic = shape.cycles_per_frame
    assert result["cycles_per_frame_analytic"] == analytic
    assert abs(result["cycles_per_frame_measured"] - analytic) <= 0.02 * analytic
    assert result["latency_measured"] == shape.latency


# ----------------------------------------------------------------------------------------------------------------
# Spec (no simulator)
# ----------------------------------------------------------------------------------------------------------------


def test_shape_numbers():
    s = SlidingWindowShape(channels=16, height=32, width=32, kernel=3, stride=1, pad=1, simd=16, elem_bits=1)
    assert (s.out_height, s.out_width, s.mw, s.in_beats, s.out_beats) == (32, 32, 144, 1024, 9216)
    assert s.cycles_per_frame == 9216 and s.buffer_rows == 5 and s.buffer_bits == 5 * 32 * 16
    d = SlidingWindowShape(channels=16, height=32, width=32, kernel=1, stride=2, pad=0, simd=8, elem_bits=8)
    assert (d.out_height, d.in_beats, d.out_beats, d.cycles_per_frame) == (16, 2048, 512, 2048)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=6, height=4, width=4, kernel=3, simd=4), "SIMD"),
    (dict(channels=4, height=4, width=4, kernel=1, pad=1), "PAD"),
    (dict(channels=4, height=1, width=4, kernel=3), "does not fit"),
    (dict(channels=4, height=4, width=4, kernel=3, elem_bits=2, pad_value=4), "PAD_VALUE"),
])
def test_shape_rejects_illegal(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindowShape(**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# RTL
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: s.name)
def test_sliding_window_sim(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_sliding_window(shape, FAST_FRAMES, tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLOW_SHAPES, ids=lambda s: s.name)
def test_sliding_window_sim_sweep(shape, verilator_path, tmp_path):
    _check_measurements(shape, run_sliding_window(shape, SLOW_FRAMES, tmp_path))


@pytest.mark.parametrize("shape", LINT_SHAPES, ids=lambda s: s.name)
def test_sliding_window_lint_clean(shape, verilator_path):
    ok, output = lint_output_clean(verilator_lint(SOURCES, TOPLEVEL, shape.rtl_parameters(), verilator_path))
    assert ok, output


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"SIMD": 3}, "SIMD (3) must divide C (8)"),
        ({"PAD": 3}, "PAD (3) must be in [0, K-1] = [0, 2]"),
        ({"K": 1, "PAD": 1}, "PAD (1) must be in [0, K-1] = [0, 0]"),
        ({"H": 1, "PAD": 0}, "kernel does not fit"),
        ({"ELEM_BITS": 31}, "ELEM_BITS (31) must be in [1, 30]"),
        ({"PAD_VALUE": 2}, "PAD_VALUE (2) must be an ELEM_BITS-bit code in [0, 1]"),
        ({"STRIDE": 0}, "must be >= 1"),
    ],
)
def test_sliding_window_rejects_illegal_parameters(overrides, message, verilator_path):
    params = FAST_SHAPES[0].rtl_parameters()
    params.update(overrides)
    proc = verilator_lint(SOURCES, TOPLEVEL, params, verilator_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


needs_yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed (make setup installs it)")


@needs_yosys
def test_sliding_window_yosys_synth(tmp_path):
    """Yosys reads and synthesises the RTL (generic synth); the line buffer is one memory."""
    log = yosys_synth(SOURCES, TOPLEVEL, FAST_SHAPES[0].rtl_parameters(), tmp_path)
    assert "Number of cells" in log


@pytest.mark.slow
@needs_yosys
@pytest.mark.parametrize("shape", [FAST_SHAPES[0], SLOW_SHAPES[1]], ids=lambda s: s.name)
def test_sliding_window_yosys_netlist_sim(shape, verilator_path, tmp_path):
    """Yosys reads the RTL as Verilator does: its netlist passes the same cocotb tests, cycle for cycle."""
    _check_measurements(shape, run_sliding_window(shape, FAST_FRAMES, tmp_path, yosys_netlist=True))
