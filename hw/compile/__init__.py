"""The compiler stage: a lowered graph (``lowered.onnx``, ops of :mod:`instabnn.hw.ops`) and its folding -> one
RTL directory of block instances from the block library (:mod:`instabnn.hw.blocks`).

    folding.py   PE / SIMD per layer for a frame rate, the folding config (folding.json) read and checked
                 (python -m instabnn.hw.compile.folding)
    compiler.py  the netlist of block instances, the generated top level, memory files, the manifest
                 accelerator.json and compile.md (python -m instabnn.hw.compile)
    chain.py     the emitters of plain W1A1 layers (ChainLayer, AffineLogits), a mixin of compiler.Compiler
"""
