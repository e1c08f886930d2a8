// The plain Verilator harness of instabnn.sim.cosim (no cocotb): the speed reference cocotb is measured against.
// Runs cosim_harness until `done` or the cycle limit given as the last argument; prints one JSON line.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include "Vcosim_harness.h"
#include "verilated.h"

int main(int argc, char** argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vcosim_harness>(ctx.get());
    unsigned long long max_cycles = std::strtoull(argv[argc - 1], nullptr, 10);
    top->clk = 0;
    top->rst = 1;
    for (int i = 0; i < 8; ++i) { top->clk = !top->clk; top->eval(); }
    top->rst = 0;
    auto start = std::chrono::steady_clock::now();
    unsigned long long cycles = 0;
    while (!top->done && cycles < max_cycles) {
        top->clk = 0; top->eval();
        top->clk = 1; top->eval();
        ++cycles;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("{\"seconds\": %.6f, \"cycles\": %llu, \"done\": %d, \"tlast_errors\": %u}\n",
                seconds, cycles, (int)top->done, (unsigned)top->tlast_errors);
    top->final();
    return top->done ? 0 : 3;
}
