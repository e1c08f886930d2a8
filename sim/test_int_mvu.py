"""cocotb testbench of ``hw/blocks/int_mvu/int_mvu.sv`` against ``instabnn.hw.reference.mvu.integer_matvec``.

The pytest entry ``tests/test_rtl_int_mvu.py`` builds the unit with Verilator for one :class:`IntMvuShape`, writes
its memory-init files and a case file with :func:`prepare_case`, and runs the cocotb tests below in one simulation;
the case file is named by the environment variable ``INSTABNN_INT_MVU_CASE``.

Tests (each starts with a reset):

* ``stream_full_rate``: source always valid, sink always ready. Every output equals the reference exactly; the
  cycles per vector (steady state, input and output side) are within 2 % of ``(MW/SIMD) * (MH/PE)``; every output
  beat appears exactly ``INT_PIPELINE_LATENCY`` cycles after the issue of its fold's last step.
* ``stream_idle_backpressure``: random idle on ``s_axis`` and random backpressure on ``m_axis`` (seeded pause
  generators); every output exact, no beat lost or added.
* ``reset_mid_vector``: single-cycle resets at every offset within a vector (input fold, re-read folds, pipeline
  draining), with the source driving through the reset; then exact operation, no stale beat.

The weights and inputs include the extremes (rows of all-minimum / all-maximum weights, vectors of all-minimum /
all-maximum inputs, extreme biases), so the worst-case accumulator values of the stated width are exercised. A
mismatch names the test, vector, output channel, expected and got. The reference sees the input words as the DUT
sampled them. Parameters are read back from the DUT where exposed (``ACC_BITS`` etc.) and the port widths checked.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

import cocotb
from cocotb.triggers import RisingEdge

from instabnn.hw.blocks.int_mvu.spec import IntMvuShape, write_bias_file, write_int_weight_file
from instabnn.hw.packing import pack_fields, unpack_fields
from instabnn.hw.reference.mvu import integer_matvec
from instabnn.hw.blocks.common.axis_tb import CYCLE_TOLERANCE, AxisHarness, case_from_env, dut_int, write_result

CASE_ENV = "INSTABNN_INT_MVU_CASE"


# ----------------------------------------------------------------------------------------------------------------
# Case preparation (runs in pytest, before the simulator starts: the memories are loaded at time 0)
# ----------------------------------------------------------------------------------------------------------------


def random_weights(rng: np.random.Generator, shape: IntMvuShape) -> np.ndarray:
    """Uniform weights over the full range; row 0 all minimum, row 1 all maximum (the accumulator's extremes)."""
    lo, hi = shape.weight_range
    w = rng.integers(lo, hi + 1, size=(shape.mh, shape.mw), dtype=np.int64)
    w[0] = lo
    if shape.mh > 1:
        w[1] = hi
    return w


def random_bias(rng: np.random.Generator, shape: IntMvuShape) -> np.ndarray:
    lo, hi = shape.bias_range
    b = rng.integers(lo, hi + 1, size=shape.mh, dtype=np.int64)
    b[0] = hi if shape.input_signed else lo  # with row 0 = minimum weights: the most positive / negative sums
    if shape.mh > 1:
        b[1] = lo if shape.input_signed else hi
    return b


def prepare_case(shape: IntMvuShape, seed: int, n_vectors: int, directory: Path) -> tuple[dict, dict]:
    """Random weights (and biases) for ``shape``; writes the memory files, ``case.npz`` and ``case.json`` into
    ``directory``. Returns ``(rtl_parameters, extra_env)`` for the runner."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {"weights": random_weights(rng, shape)}
    weight_file = write_int_weight_file(directory / "weights.mem", arrays["weights"], shape)
    bias_file = None
    if shape.bias_bits:
        arrays["bias"] = random_bias(rng, shape)
        bias_file = write_bias_file(directory / "bias.mem", arrays["bias"], shape)
    np.savez(directory / "case.npz", **arrays)
    case = {"shape": asdict(shape), "seed": seed, "n_vectors": n_vectors, "arrays": str(directory / "case.npz")}
    (directory / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return shape.rtl_parameters(weight_file, bias_file), {CASE_ENV: str(directory / "case.json")}


# ----------------------------------------------------------------------------------------------------------------
# Testbench
# ----------------------------------------------------------------------------------------------------------------


class TB(AxisHarness):
    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = case_from_env(CASE_ENV, "tests/test_rtl_int_mvu.py")
        self.shape = IntMvuShape(**case["shape"])
        self.n_vectors = int(case["n_vectors"])
        arrays = np.load(case["arrays"])
        self.weights = arrays["weights"].astype(np.int64)
        self.bias = arrays["bias"].astype(np.int64) if self.shape.bias_bits else None
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset)
        self.log = dut._log
        self._check_parameters()

    def _check_parameters(self):
        s, dut = self.shape, self.dut
        expected = {
            "MW": s.mw, "MH": s.mh, "SIMD": s.simd, "PE": s.pe, "WEIGHT_BITS": s.weight_bits,
            "INPUT_BITS": s.input_bits, "INPUT_SIGNED": s.input_signed, "BIAS_BITS": s.bias_bits,
            "ACC_BITS": s.acc_bits,
        }
        read = {name: dut_int(dut, name) for name in expected}
        self.log.info("DUT parameters %s (None: not exposed by the simulator)", read)
        for name, value in read.items():
            assert value is None or value == expected[name], f"DUT {name}={value}, case file says {expected[name]}"
        for port, width in (("s_axis_tdata", s.in_width), ("m_axis_tdata", s.out_width)):
            got = len(getattr(dut, port))
            assert got == width, f"{port} is {got} bits, expected {width}"

    def random_vectors(self, n: int) -> np.ndarray:
        """``n`` input vectors, uniform over the input range; vectors 1 and 2 all-minimum and all-maximum."""
        lo, hi = self.shape.input_range
        x = self.rng.integers(lo, hi + 1, size=(n, self.shape.mw), dtype=np.int64)
        for i, v in enumerate([lo, hi][: max(0, n - 1)]):
            x[i + 1] = v  # vector 0 stays random (the latency check wants an ordinary one)
        return x

    def words(self, vectors: np.ndarray) -> list[int]:
        s = self.shape
        return [
            pack_fields(v[sf * s.simd : (sf + 1) * s.simd], s.input_bits, signed=bool(s.input_signed))
            for v in vectors
            for sf in range(s.sf)
        ]

    def unpack_inputs(self, words: list[int], n_vectors: int) -> np.ndarray:
        s = self.shape
        elems = [unpack_fields(w, s.input_bits, s.simd, signed=bool(s.input_signed)) for w in words]
        return np.concatenate(elems).reshape(n_vectors, s.mw) if elems else np.zeros((0, s.mw), np.int64)

    async def send_vectors(self, vectors: np.ndarray):
        await self.send("s_axis", self.words(vectors))

    def check_outputs(self, tag: str, n_vectors: int) -> np.ndarray:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.shape
        ins, outs = self.beats("s_axis"), self.beats("m_axis")
        for what, beats, per_vector in (("input", ins, s.sf), ("output", outs, s.nf)):
            assert len(beats) == n_vectors * per_vector, (
                f"{tag}: {len(beats)} {what} beats, expected {n_vectors * per_vector}"
            )
        sampled = self.unpack_inputs([w for _, w in ins], n_vectors)
        expected = integer_matvec(self.weights, sampled, self.bias)
        got = np.empty_like(expected)
        for j, (_, tdata) in enumerate(outs):
            v, nf = divmod(j, s.nf)
            got[v, nf * s.pe : (nf + 1) * s.pe] = unpack_fields(tdata, s.acc_bits, s.pe, signed=True)
        bad = np.argwhere(got != expected)
        for v, o in bad[:10]:
            self.log.error("%s: vector %d channel %d: expected %d, got %d", tag, v, o, expected[v, o], got[v, o])
        assert not len(bad), (
            f"{tag}: {len(bad)} mismatches; first at vector {bad[0][0]}, output channel {bad[0][1]}: "
            f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
        )
        return sampled


@cocotb.test()
async def stream_full_rate(dut):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    tb = TB(dut, test_seed=1)
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_vectors, 3)
    vectors = tb.random_vectors(n)
    await tb.send_vectors(vectors)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_beats("m_axis", n * s.nf, timeout_cycles=n * s.cycles_per_vector * 2 + 100)
    sampled = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(sampled, vectors), "the monitored input differs from what the source sent"

    in_cycles = [c for c, _ in tb.beats("s_axis")]
    out_cycles = [c for c, _ in tb.beats("m_axis")]
    starts = in_cycles[:: s.sf]
    periods = np.diff(starts)
    measured = (starts[-1] - starts[0]) / (n - 1)
    out_measured = (out_cycles[(n - 1) * s.nf] - out_cycles[0]) / (n - 1)
    analytic = s.cycles_per_vector
    # latency: output beat of (vector v, fold nf) vs. the issue of step (nf, SF-1) = last input handshake + nf*SF
    latencies = [
        out_cycles[v * s.nf + nf] - (in_cycles[v * s.sf + s.sf - 1] + nf * s.sf) for v in range(n) for nf in range(s.nf)
    ]
    tb.log.info(
        "cycles per vector: measured %.3f (input side, min %d max %d), %.3f (output side), analytic %d; "
        "latency %s, stated %d",
        measured, periods.min(), periods.max(), out_measured, analytic, sorted(set(latencies)), s.latency,
    )
    write_result(tb.case_dir, "stream_full_rate", {
        "shape": asdict(s),
        "n_vectors": n,
        "cycles_per_vector_measured": measured,
        "cycles_per_vector_measured_output": out_measured,
        "cycles_per_vector_min": int(periods.min()),
        "cycles_per_vector_max": int(periods.max()),
        "cycles_per_vector_analytic": analytic,
        "latency_measured": sorted(set(latencies)),
        "latency_stated": s.latency,
        "total_cycles": out_cycles[-1] - in_cycles[0] + 1,
    })
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per vector, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per vector at the output"
    assert set(latencies) == {s.latency}, f"latencies {sorted(set(latencies))}, stated {s.latency}"


@cocotb.test()
async def stream_idle_backpressure(dut):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added."""
    tb = TB(dut, test_seed=2)
    s = tb.shape
    await tb.reset()
    tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
    n = tb.n_vectors
    vectors = tb.random_vectors(n)
    await tb.send_vectors(vectors)
    await tb.wait_beats("m_axis", n * s.nf, timeout_cycles=n * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200)
    await tb.idle_cycles(3 * s.latency)  # nothing extra comes out
    sampled = tb.check_outputs("stream_idle_backpressure", n)
    assert np.array_equal(sampled, vectors), "the monitored input differs from what the source sent"
    cycles = tb.beats("m_axis")[-1][0] - tb.beats("s_axis")[0][0] + 1
    tb.log.info("%d vectors in %d cycles with idle and backpressure (%.2f per vector)", n, cycles, cycles / n)
    write_result(tb.case_dir, "stream_idle_backpressure", {"n_vectors": n, "total_cycles": cycles})
    tb.set_idle_backpressure(None)


@cocotb.test()
async def reset_mid_vector(dut):
    """Reset in the middle of a vector, then correct operation (no stale beats, exact outputs).

    The source is not tied to the reset, so s_axis_tvalid may be high at the reset edge and the stream goes on
    right after it: the unit must start a fresh vector with the first beat accepted after the reset. A single-cycle
    reset is applied at every cycle offset from the first input handshake up to one vector plus the pipeline
    latency, alternately with idle and backpressure.
    """
    tb = TB(dut, test_seed=3, drivers_follow_reset=False)
    s = tb.shape
    delays = list(range(min(s.cycles_per_vector + s.latency + 2, 24)))
    checked = 0
    for i, delay in enumerate(delays):
        tag = f"reset_mid_vector[delay={delay}]"
        tb.set_idle_backpressure(None)
        await tb.reset()
        if i % 2:
            tb.set_idle_backpressure(seed=int(tb.rng.integers(1 << 30)))
        await tb.send_vectors(tb.random_vectors(3))
        while not tb.beats("s_axis"):
            await RisingEdge(dut.clk)
        await tb.idle_cycles(delay)
        await tb.reset(cycles=1)  # a single-cycle reset must be enough
        await RisingEdge(dut.clk)  # values seen at this edge are the state the reset left
        assert not dut.m_axis_tvalid.value, f"{tag}: m_axis_tvalid high right after reset"
        # the rest of the interrupted stream is the start of new vectors: complete the last one, then more
        await tb.sources["s_axis"].wait()  # returns at the clock edge that accepted the last beat
        await RisingEdge(dut.clk)
        pad = (-len(tb.beats("s_axis"))) % s.sf
        if pad:
            await tb.send("s_axis", tb.words(tb.random_vectors(1))[:pad])
        await tb.send_vectors(tb.random_vectors(tb.n_vectors // 2 if delay == delays[-1] else 2))
        await tb.sources["s_axis"].wait()
        await RisingEdge(dut.clk)
        assert len(tb.beats("s_axis")) % s.sf == 0, f"{tag}: {len(tb.beats('s_axis'))} input beats after the reset"
        total = len(tb.beats("s_axis")) // s.sf
        timeout = total * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200
        await tb.wait_beats("m_axis", total * s.nf, timeout_cycles=timeout, what=f"{tag}: ")
        await tb.idle_cycles(2 * s.latency)  # nothing extra comes out
        tb.check_outputs(tag, total)
        checked += total
    tb.log.info("reset at %d offsets, %d vectors after the resets exact", len(delays), checked)
    tb.set_idle_backpressure(None)
