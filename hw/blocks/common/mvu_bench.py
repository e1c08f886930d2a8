"""What the two matrix-vector units' testbenches share (``binary_mvu``, ``int_mvu``: the same FINN MVAU schedule,
:class:`~instabnn.hw.blocks.common.mvu_folding.MvuFolding`, and the same ports): :class:`MvuBench` (the case, the
parameter check, the scoreboard), the three cocotb test bodies (:func:`stream_full_rate`,
:func:`stream_idle_backpressure`, :func:`reset_mid_vector`: a bench's ``@cocotb.test()``s call them with its
:class:`MvuBench`), the full-rate measurement (:func:`check_full_rate`) and its pytest-side check
(:func:`check_measurements`)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from instabnn.hw.blocks.common.axis_tb import (CYCLE_TOLERANCE, AxisHarness, check_dut_parameters, idle_backpressure,
                                               read_case, reset_mid_stream, write_result)


class MvuBench(AxisHarness):
    """The cocotb side of an MVU bench: the case (shape, vector count, seed, ``case.npz`` with ``weights``), the
    DUT's parameters and port widths against the shape, and the scoreboard. A bench sets ``shape_type`` and gives
    :meth:`expected_parameters`, :meth:`random_vectors`, :meth:`words`, :meth:`unpack_inputs`, :meth:`expected`
    and :meth:`output_lanes`."""

    shape_type: type

    def __init__(self, dut, test_seed: int, drivers_follow_reset: bool = True):
        case, self.case_dir = read_case()
        self.shape = self.shape_type(**case["shape"])
        self.n_vectors = int(case["n_vectors"])
        self.arrays = np.load(case["arrays"])
        self.weights = self.arrays["weights"].astype(np.int64)
        self.rng = np.random.default_rng([int(case["seed"]), test_seed])
        # drivers_follow_reset=False: the source keeps driving through a reset (tvalid may be high at the reset edge)
        super().__init__(dut, ["s_axis"], ["m_axis"], drivers_follow_reset)
        self.log = dut._log
        s = self.shape
        check_dut_parameters(dut, self.expected_parameters(), {"s_axis_tdata": s.in_width, "m_axis_tdata": s.out_width})

    async def send_vectors(self, vectors: np.ndarray):
        await self.send("s_axis", self.words(vectors))

    async def send_tail(self, beats: int):
        """The last ``beats`` beats of one random vector (completes an interrupted vector)."""
        await self.send("s_axis", self.words(self.random_vectors(1))[-beats:])

    async def wait_outputs(self, tag: str, n_vectors: int):
        """Until the outputs of ``n_vectors`` vectors are out (with idle and backpressure), then long enough that
        anything extra would be seen."""
        s = self.shape
        timeout = n_vectors * (s.cycles_per_vector + s.sf + s.nf) * 8 + 200
        await self.wait_beats("m_axis", n_vectors * s.nf, timeout_cycles=timeout, what=f"{tag}: ")
        await self.idle_cycles(3 * s.latency)  # nothing extra comes out

    def check_outputs(self, tag: str, n_vectors: int) -> np.ndarray:
        """Scoreboard: the recorded input words (as the DUT sampled them) against the recorded output beats."""
        s = self.shape
        ins, outs = self.beats("s_axis"), self.beats("m_axis")
        for what, beats, per_vector in (("input", ins, s.sf), ("output", outs, s.nf)):
            assert len(beats) == n_vectors * per_vector, (
                f"{tag}: {len(beats)} {what} beats, expected {n_vectors * per_vector}"
            )
        sampled = self.unpack_inputs([w for _, w in ins], n_vectors)
        expected = self.expected(sampled)
        got = np.empty_like(expected)
        for j, (_, tdata) in enumerate(outs):
            v, nf = divmod(j, s.nf)
            got[v, nf * s.pe : (nf + 1) * s.pe] = self.output_lanes(tdata)
        bad = np.argwhere(got != expected)
        for v, o in bad[:10]:
            self.log.error("%s: vector %d channel %d: expected %d, got %d", tag, v, o, expected[v, o], got[v, o])
        assert not len(bad), (
            f"{tag}: {len(bad)} mismatches; first at vector {bad[0][0]}, output channel {bad[0][1]}: "
            f"expected {expected[tuple(bad[0])]}, got {got[tuple(bad[0])]}"
        )
        return sampled


async def stream_full_rate(tb: MvuBench):
    """No idle, no backpressure: exact outputs, cycles per vector and latency."""
    s = tb.shape
    tb.set_idle_backpressure(None)
    await tb.reset()
    n = max(tb.n_vectors, 3)
    vectors = tb.random_vectors(n)
    await tb.send_vectors(vectors)  # all queued: the source stays valid from the first beat to the last
    await tb.wait_beats("m_axis", n * s.nf, timeout_cycles=n * s.cycles_per_vector * 2 + 100)
    sampled = tb.check_outputs("stream_full_rate", n)
    assert np.array_equal(sampled, vectors), "the monitored input differs from what the source sent"
    check_full_rate(tb, n)


async def stream_idle_backpressure(tb: MvuBench):
    """Random idle on s_axis and random backpressure on m_axis: exact outputs, nothing lost or added
    (:func:`~instabnn.hw.blocks.common.axis_tb.idle_backpressure`, a vector being a frame)."""
    await idle_backpressure(tb, int(tb.rng.integers(1 << 30)), tb.n_vectors, random_frames=tb.random_vectors,
                            send_frames=tb.send_vectors, wait_outputs=tb.wait_outputs, check_outputs=tb.check_outputs,
                            result_dir=tb.case_dir)


async def reset_mid_vector(tb: MvuBench):
    """Reset in the middle of a vector, then correct operation (no stale beats, exact outputs):
    :func:`~instabnn.hw.blocks.common.axis_tb.reset_mid_stream` with a single-cycle reset at every cycle offset
    from the first input handshake up to one vector plus the pipeline latency (input fold, re-read folds, pipeline
    draining). ``tb`` is made with ``drivers_follow_reset=False``."""
    s = tb.shape
    await reset_mid_stream(
        tb, "reset_mid_vector", list(range(min(s.cycles_per_vector + s.latency + 2, 24))), frame_beats=s.sf,
        input_beats=lambda: len(tb.beats("s_axis")), send_frames=lambda n: tb.send_vectors(tb.random_vectors(n)),
        wait_outputs=tb.wait_outputs, frames_after_last=tb.n_vectors // 2)


def check_measurements(shape, result: dict):
    """The pytest side: ``result`` (the full-rate test's results) has the shape's cycles per vector, measured within
    2 %, and its latency, every output beat."""
    analytic = shape.cycles_per_vector
    assert result["cycles_per_vector_analytic"] == analytic
    assert abs(result["cycles_per_vector_measured"] - analytic) <= CYCLE_TOLERANCE * analytic
    assert result["latency_measured"] == [shape.latency]


def check_full_rate(tb, n: int):
    """``tb`` (an :class:`~instabnn.hw.blocks.common.axis_tb.AxisHarness` with ``shape``, ``log`` and ``case_dir``)
    has sent ``n`` vectors at full rate and checked their outputs: from the recorded handshakes, the cycles per
    vector (input and output side) must be within 2 % of ``SF * NF`` and every output beat must leave exactly
    ``shape.latency`` edges after the issue of its fold's last step. The figures go to
    ``result_stream_full_rate.json``."""
    s = tb.shape
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
    write_result(
        tb.case_dir,
        "stream_full_rate",
        {
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
        },
    )
    assert abs(measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{measured} cycles per vector, analytic {analytic}"
    assert abs(out_measured - analytic) <= CYCLE_TOLERANCE * analytic, f"{out_measured} cycles per vector at the output"
    assert set(latencies) == {s.latency}, f"latencies {sorted(set(latencies))}, stated {s.latency}"
