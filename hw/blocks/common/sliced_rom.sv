// SPDX-License-Identifier: BSD-3-Clause
/*
 * A small, wide ROM with a registered address and a registered output, cut into slices of at most SLICE_BITS bits
 * that each have their own copy of the address register.
 *
 * Behaviour (the same as one address register and one read register): at every clock edge the address register
 * takes next_addr (0 under rst) and the output register takes the word at the address register's old value:
 *
 *     data(edge e+1) = ROM[next_addr(edge e-1)]       (rst at edge e-1: ROM[0])
 *
 * Why slices: a ROM this shallow becomes LUTs, one (or a few) per output bit, all driven by the address. With one
 * address register its fan-out is the whole width, and on the ECP5 that fan-out alone cost 8.5 ns of routing on a
 * 155-bit word. Each slice's address copy drives only its slice's LUTs. The copies must differ for synthesis to keep
 * them (Yosys merges identical registers, whatever their attributes): copy k holds next_addr ^ TAG_k (TAG_k = k
 * modulo the address range) and its slice reads ROM[addr_k ^ TAG_k]; the XOR folds into the ROM's LUTs. Slices
 * whose tags coincide (an address range smaller than the number of slices) may share a register, which is
 * harmless.
 *
 * Memory-init file FILE ($readmemh; "//" comment lines allowed): DEPTH lines of WIDTH bits.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module sliced_rom #(
    // word width
    parameter int WIDTH = 8,
    // words
    parameter int DEPTH = 4,
    // the widest slice (bits of the word behind one address register copy)
    parameter int SLICE_BITS = 36,
    // memory init file ($readmemh)
    parameter FILE = "",
    // derived
    localparam int ADDR_W = DEPTH > 1 ? $clog2(DEPTH) : 1
) (
    input  wire logic              clk,
    input  wire logic              rst,
    input  wire logic [ADDR_W-1:0] next_addr,
    output wire logic [WIDTH-1:0]  data
);

localparam int SLICES = SLICE_BITS > 0 ? (WIDTH + SLICE_BITS - 1) / SLICE_BITS : 1;

// check configuration
if (WIDTH < 1 || DEPTH < 1 || SLICE_BITS < 1) begin : g_check_sizes
    $fatal(0, "Error: WIDTH (%0d), DEPTH (%0d) and SLICE_BITS (%0d) must be >= 1 (instance %m)", WIDTH, DEPTH,
           SLICE_BITS);
end
if (FILE == "") begin : g_check_file
    $fatal(0, "Error: FILE must name a $readmemh file (instance %m)");
end

logic [WIDTH-1:0] mem[DEPTH];

initial begin
    $readmemh(FILE, mem);
end

for (genvar k = 0; k < SLICES; k = k + 1) begin : g_slice

    localparam int LO = k * SLICE_BITS;
    localparam int W = WIDTH - LO < SLICE_BITS ? WIDTH - LO : SLICE_BITS;
    localparam logic [ADDR_W-1:0] TAG = ADDR_W'(k);

    logic [ADDR_W-1:0] addr_reg;     // next_addr ^ TAG
    logic [W-1:0] data_reg;

    always_ff @(posedge clk) begin
        addr_reg <= next_addr ^ TAG;
        data_reg <= mem[addr_reg ^ TAG][LO +: W];

        if (rst) begin
            addr_reg <= TAG;
        end
    end

    assign data[LO +: W] = data_reg;

end

endmodule

`resetall
