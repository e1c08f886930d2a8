"""The full-rate measurement of the two matrix-vector units' testbenches (``binary_mvu``, ``int_mvu``: the same
FINN MVAU schedule, :class:`~instabnn.hw.blocks.common.mvu_folding.MvuFolding`)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from instabnn.hw.blocks.common.axis_tb import CYCLE_TOLERANCE, write_result


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
