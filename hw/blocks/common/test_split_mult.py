"""split_mult (hw/blocks/common/split_mult.sv), the two-stage chunked product the tails, the threshold unit and the
affine blocks share: its product against Python's exact ``a * b`` modulo ``2^P_BITS``, two enabled edges later, at
operand widths on both sides of the chunk boundaries (one 25 x 18 port, 24- and 17-bit chunks, several chunks each
way, a product kept narrower than ``A_BITS + B_BITS``), with the enable low at random cycles and the extreme operand
values included. The blocks' own benches check it only inside their arithmetic."""

from __future__ import annotations

import json
import random

import pytest

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from instabnn.hw.blocks.common.axis_tb import CLOCK_PERIOD_NS, read_case, run_bench
from instabnn.hw.blocks.common.rtl_runner import VERILATOR_BUILD_ARGS, lint_output_clean, verilator_lint
from instabnn.hw.blocks.rtl_library import rtl_paths

SOURCES = rtl_paths("split_mult")


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _operands(rnd: random.Random, bits: int):
    """Random signed ``bits``-bit values, the extremes among them."""
    extremes = [-(1 << (bits - 1)), (1 << (bits - 1)) - 1, 0, -1]
    while True:
        yield rnd.choice(extremes) if rnd.random() < 0.2 else rnd.randint(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


@cocotb.test()
async def products(dut):
    case, out = read_case()
    a_bits, b_bits, p_bits = case["a_bits"], case["b_bits"], case["p_bits"]
    rnd = random.Random(case["seed"])
    a_values, b_values = _operands(rnd, a_bits), _operands(rnd, b_bits)
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
    dut.en.value = 0
    dut.a.value = 0
    dut.b.value = 0
    await RisingEdge(dut.clk)

    # the model: the operands taken at the enabled edges; p is the product of the pair taken two enabled edges back
    taken: list[tuple[int, int]] = []
    checked = mismatches = 0
    for _ in range(case["cycles"]):
        en = rnd.random() < 0.7
        a, b = next(a_values), next(b_values)
        await FallingEdge(dut.clk)
        dut.en.value = int(en)
        dut.a.value = a & ((1 << a_bits) - 1)
        dut.b.value = b & ((1 << b_bits) - 1)
        await RisingEdge(dut.clk)
        if en:
            taken.append((a, b))
        await ReadOnly()
        if len(taken) >= 2:
            x, y = taken[-2]
            checked += 1
            got = _signed(int(dut.p.value), p_bits)
            if got != _signed(x * y, p_bits):
                mismatches += 1
                dut._log.error("%d * %d: p = %d, expected %d", x, y, got, _signed(x * y, p_bits))
    (out / "result_products.json").write_text(json.dumps({"checked": checked, "mismatches": mismatches}))
    assert mismatches == 0


CASES = [(25, 18, 43, ""), (23, 23, 46, ""), (48, 40, 60, ""), (3, 60, 63, ""),
         (25, 18, 43, "INSTABNN_MULT18X18"), (48, 40, 60, "INSTABNN_MULT18X18")]


@pytest.mark.parametrize("a_bits,b_bits,p_bits,define", CASES,
                         ids=[f"{a}x{b}_p{p}" + (f"_{d}" if d else "") for a, b, p, d in CASES])
def test_split_mult_products_are_exact(a_bits, b_bits, p_bits, define, tmp_path, verilator_path):
    """Both chunkings: DSP48E1-sized (the default) and MULT18X18D-sized (``INSTABNN_MULT18X18``, the ECP5 flows)."""
    params = {"A_BITS": a_bits, "B_BITS": b_bits, "P_BITS": p_bits}
    defines = [f"-D{define}"] if define else []
    ok, log = lint_output_clean(verilator_lint(SOURCES, "split_mult", params, verilator_path, extra_args=defines))
    assert ok, log
    case = {"a_bits": a_bits, "b_bits": b_bits, "p_bits": p_bits, "cycles": 400, "seed": a_bits * 100 + b_bits}
    run_bench(__file__, case, sources=SOURCES, toplevel="split_mult", parameters=params, directory=tmp_path,
              seed=a_bits, build_args=VERILATOR_BUILD_ARGS + defines)
    result = json.loads((tmp_path / "result_products.json").read_text())
    assert result["mismatches"] == 0 and result["checked"] > 200
