"""The hardware block library: one folder per block, holding its spec (``spec.py``), its SystemVerilog
(``<block>.sv`` and private submodules) and its testbench (``test_<block>.py``); shared RTL and bench helpers in
``common/``. ``BLOCKS`` registers each block: name -> its spec module. See docs/adding-a-block.md."""

BLOCKS = {
    "binary_mvu": "instabnn.hw.blocks.binary_mvu.spec",
    "int_mvu": "instabnn.hw.blocks.int_mvu.spec",
    "sliding_window": "instabnn.hw.blocks.sliding_window.spec",
    "insta_threshold": "instabnn.hw.blocks.insta_threshold.spec",
    "insta_tail": "instabnn.hw.blocks.insta_tail.spec",
    "residual_tail": "instabnn.hw.blocks.residual_tail.spec",
    "channel_affine": "instabnn.hw.blocks.channel_affine.spec",
    "pool": "instabnn.hw.blocks.pool.spec",
    "stream": "instabnn.hw.blocks.stream.spec",
    "maxpool_bits": "instabnn.hw.blocks.maxpool_bits.spec",
}
