"""cocotb testbench of the board host interfaces that ``instabnn.hw.bitstream`` generates around an accelerator.

The pytest entries (``tests/test_bitstream.py``) build, with Verilator, either the ULX3S top
(``instabnn_ulx3s_top``: UART in, UART out) or the PYNQ-Z2 DMA adapter (``instabnn_dma_wrapper``: AXI-Stream at the
DMA's widths) around the stand-in accelerator of the tests, whose logits are ``sum of the image's pixels (low 8
bits of each pixel word) + bias[k]`` (wrapped to ``out_width`` bits, two's complement). The case file (named by
``INSTABNN_HOSTS_CASE``) gives the widths, the biases, the clocks per UART bit and the number of images.

* ``ulx3s_uart_images``: images sent over the UART (random pixels, random gaps between bytes), one answer read per
  image and decoded (little-endian, signed); every logit must equal the golden value, the LEDs must show no overrun
  and no framing error, and led[2] must have toggled once per image.
* ``pynq_dma_stream``: images streamed at the DMA width with random idle and backpressure; logits must arrive
  sign-extended to the S2MM width, tkeep all ones, tlast exactly on each image's last class.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from instabnn.hw.blocks.common.axis_tb import case_from_env

CASE_ENV = "INSTABNN_HOSTS_CASE"


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def golden_logits(case: dict, pixels: list[int]) -> list[int]:
    total = sum(p & 0xFF for p in pixels)
    w = case["out_width"]
    return [_signed(total + b, w) for b in case["biases"]]


def random_images(case: dict, seed: int) -> list[list[int]]:
    rnd = random.Random(seed)
    in_bits = case["in_width"]
    images = [[rnd.getrandbits(in_bits) for _ in range(case["pixels"])] for _ in range(case["images"] - 1)]
    images.append([(1 << in_bits) - 1] * case["pixels"])  # the largest sum
    return images


@cocotb.test()
async def ulx3s_uart_images(dut):
    case, _ = case_from_env(CASE_ENV, "tests/test_bitstream.py")
    if case["board"] != "ulx3s-85f":
        return
    div = case["div"]
    cocotb.start_soon(Clock(dut.clk_25mhz, 40, unit="ns").start())
    dut.ftdi_txd.value = 1
    dut.btn.value = 0
    await ClockCycles(dut.clk_25mhz, 40)  # power-on reset
    rnd = random.Random(case["seed"])
    in_bytes, out_bytes = case["in_width"] // 8, case["out_width"] // 8

    async def send_byte(byte: int):
        for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            dut.ftdi_txd.value = bit
            await ClockCycles(dut.clk_25mhz, div)
        await ClockCycles(dut.clk_25mhz, rnd.choice([0, 0, 1, 3, 2 * div]))

    async def recv_byte(timeout_cycles: int) -> int:
        for _ in range(timeout_cycles):
            await RisingEdge(dut.clk_25mhz)
            if not dut.ftdi_rxd.value:
                break
        else:
            raise AssertionError(f"no UART start bit within {timeout_cycles} cycles")
        await ClockCycles(dut.clk_25mhz, div // 2)
        assert not dut.ftdi_rxd.value, "start bit not low in its middle"
        byte = 0
        for i in range(8):
            await ClockCycles(dut.clk_25mhz, div)
            byte |= int(dut.ftdi_rxd.value) << i
        await ClockCycles(dut.clk_25mhz, div)
        assert dut.ftdi_rxd.value, "stop bit not high"
        return byte

    images = random_images(case, case["seed"])
    for n, image in enumerate(images):
        received = []

        async def receiver():
            for _ in range(case["classes"] * out_bytes):
                received.append(await recv_byte(200 * div * (case["pixels"] * in_bytes + 20)))

        rx = cocotb.start_soon(receiver())
        for pixel in image:
            for i in range(in_bytes):
                await send_byte((pixel >> (8 * i)) & 0xFF)
        await rx
        got = [_signed(int.from_bytes(bytes(received[k * out_bytes:(k + 1) * out_bytes]), "little"),
                       case["out_width"]) for k in range(case["classes"])]
        assert got == golden_logits(case, image), f"image {n}: logits {got}, expected {golden_logits(case, image)}"
    await ClockCycles(dut.clk_25mhz, 4)
    led = int(dut.led.value)
    assert led & 1 == 0, "input overrun LED lit"
    assert led & 2 == 0, "UART framing error LED lit"
    assert (led >> 2) & 1 == len(images) % 2, "led[2] does not toggle once per image"


@cocotb.test()
async def pynq_dma_stream(dut):
    case, _ = case_from_env(CASE_ENV, "tests/test_bitstream.py")
    if case["board"] != "pynq-z2":
        return
    cocotb.start_soon(Clock(dut.aclk, 10, unit="ns").start())
    rnd = random.Random(case["seed"])
    dut.aresetn.value = 0
    dut.s_axis_tvalid.value = 0
    dut.s_axis_tlast.value = 0
    dut.m_axis_tready.value = 0
    await ClockCycles(dut.aclk, 5)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 3)
    images = random_images(case, case["seed"])
    dma_in, dma_out = case["dma_in"], case["dma_out"]
    expected = []
    for image in images:
        logits = golden_logits(case, image)
        expected += [(v & ((1 << dma_out) - 1), k == len(logits) - 1) for k, v in enumerate(logits)]
    got = []

    async def sink():
        while len(got) < len(expected):
            dut.m_axis_tready.value = int(rnd.random() < 0.6)
            await RisingEdge(dut.aclk)
            if dut.m_axis_tvalid.value and dut.m_axis_tready.value:
                assert int(dut.m_axis_tkeep.value) == (1 << (dma_out // 8)) - 1, "tkeep not all ones"
                got.append((int(dut.m_axis_tdata.value), bool(dut.m_axis_tlast.value)))
            await FallingEdge(dut.aclk)

    task = cocotb.start_soon(sink())
    words = [p | (rnd.getrandbits(dma_in - case["in_width"]) << case["in_width"] if dma_in > case["in_width"] else p)
             for image in images for p in image]
    for i, word in enumerate(words):
        while rnd.random() < 0.3:
            dut.s_axis_tvalid.value = 0
            await RisingEdge(dut.aclk)
            await FallingEdge(dut.aclk)
        dut.s_axis_tdata.value = word
        dut.s_axis_tvalid.value = 1
        dut.s_axis_tlast.value = int((i + 1) % case["pixels"] == 0)
        while True:
            await RisingEdge(dut.aclk)
            accepted = bool(dut.s_axis_tready.value)
            await FallingEdge(dut.aclk)
            if accepted:
                break
    dut.s_axis_tvalid.value = 0
    for _ in range(2000):
        if task.done():
            break
        await RisingEdge(dut.aclk)
    assert task.done(), f"{len(got)} of {len(expected)} logits arrived"
    assert got == expected, f"logits (data, tlast) {got}, expected {expected}"
