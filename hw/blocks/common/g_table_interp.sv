// SPDX-License-Identifier: BSD-3-Clause
/*
 * The INSTA g table with linear interpolation, pipelined: G(z) of a fixed-point value, with a payload carried along.
 *
 * Golden function: instabnn.contract.layers.g_lookup. With G_IN_FRAC = 12 (z's fraction bits), the grid of
 * 2^-3 over [-16, 16] (257 entries) and shift_round(v, n) = (v + 2^(n-1)) >>> n:
 *
 *     zc  = clamp(shift_round(in_value, SHIFT), -2^16, 2^16)       (z with G_IN_FRAC bits)
 *     i   = (zc + 2^16) >> 9,  r = (zc + 2^16) & 511                (i = 0 .. 256)
 *     G   = BASE[i] + shift_round(DELTA[i] * r, 9)                  (G lies between BASE[i] and BASE[i] + DELTA[i])
 *
 * Every step is exact: the rounding, clamp and index use widths that hold the operands with room for the bounds.
 *
 * Pipeline, from the edge E that samples in_valid / in_value / in_side:
 *   INDEX_REG = 0: E [round, clamp, index; registered g ROM read] -> E+1 [the ROM word registered once more]
 *                  -> E+2 [DELTA * r] -> out (combinational G).
 *   INDEX_REG = 1: E [round, clamp, index] -> E+1 [registered g ROM read] -> E+2 [ROM word register]
 *                  -> E+3 [DELTA * r] -> out.
 * So out_valid / out_g / out_side belong to the input sampled LATENCY = 3 + INDEX_REG edges earlier; one value per
 * clock, no stall. The ROM word register keeps the block RAM's clock-to-out (5.8 ns on the ECP5) apart from the
 * multiplier.
 *
 * Memory-init file ($readmemh, "//" comment lines allowed):
 *   G_FILE: 257 lines, line i = BASE | DELTA from the LSB (signed G_BITS, G_DELTA_BITS bits), BASE = g_table[i],
 *           DELTA = g_table[min(i+1, 256)] - g_table[i].
 *
 * Reset: rst (synchronous, active high) clears the valid bits; the data registers are not reset.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module g_table_interp #(
    // signed width of in_value
    parameter int IN_BITS = 32,
    // fraction bits of in_value minus G_IN_FRAC (12): the rounding shift (>= 1)
    parameter int SHIFT = 4,
    // 1: register the index and remainder before the ROM read (one more edge of latency); 0: read at once
    parameter int INDEX_REG = 0,
    // signed widths of the table's BASE and DELTA fields
    parameter int G_BITS = 17,
    parameter int G_DELTA_BITS = 12,
    // width of the payload carried alongside each value (flags, per-channel constants)
    parameter int SIDE_BITS = 1,
    // 1: the g ROM in block RAM (synthesis attribute rom_style = "block"); 0: left to synthesis (rom_style = "auto"; logic in Yosys)
    parameter int G_BRAM = 0,
    // memory-init file, layout above
    parameter G_FILE = "",
    // G, sign-extended by one bit (the value fits G_BITS)
    localparam int OUT_BITS = G_BITS + 1
) (
    input  wire logic                        clk,
    input  wire logic                        rst,

    input  wire logic                        in_valid,
    input  wire logic signed [IN_BITS-1:0]   in_value,
    input  wire logic [SIDE_BITS-1:0]        in_side,

    output wire logic                        out_valid,
    output wire logic signed [OUT_BITS-1:0]  out_g,
    output wire logic [SIDE_BITS-1:0]        out_side
);

// the g table (instabnn.contract.layers)
localparam int G_IN_FRAC = 12;
localparam int G_GRID_FRAC = 3;
localparam int G_RANGE = 16;
localparam int G_ENTRIES = 2 * G_RANGE * (1 << G_GRID_FRAC) + 1;
localparam int LOW_BITS = G_IN_FRAC - G_GRID_FRAC;                 // r: 9 bits
localparam int IDX_BITS = $clog2(2 * G_RANGE) + G_GRID_FRAC + 1;   // i: 0 .. 256, 9 bits
localparam int ZI_BITS = IDX_BITS + LOW_BITS;                      // zc + 2^16 in 0 .. 2^17: 18 bits
localparam int G_W = G_BITS + G_DELTA_BITS;
// rounding: in_value + 2^(SHIFT-1) without overflow, and room for the clamp bounds
localparam int ZW_A = IN_BITS > SHIFT ? IN_BITS : SHIFT;
localparam int ZW = (ZW_A > ZI_BITS ? ZW_A : ZI_BITS) + 2;
// interpolation product DELTA * r (r as a non-negative signed operand) and G before the cast
localparam int IP_W = G_DELTA_BITS + LOW_BITS + 1;
localparam int GS_W = (IP_W > G_BITS ? IP_W : G_BITS) + 2;

// check configuration
if (IN_BITS < 2 || SHIFT < 1) begin : g_check_input
    $fatal(0, "Error: IN_BITS (%0d) must be >= 2 and SHIFT (%0d) >= 1 (instance %m)", IN_BITS, SHIFT);
end
if (G_BRAM != 0 && G_BRAM != 1) begin : g_check_g_bram
    $fatal(0, "Error: G_BRAM (%0d) must be 0 or 1 (instance %m)", G_BRAM);
end
if (INDEX_REG != 0 && INDEX_REG != 1) begin : g_check_index_reg
    $fatal(0, "Error: INDEX_REG (%0d) must be 0 or 1 (instance %m)", INDEX_REG);
end
if (G_BITS < 1 || G_DELTA_BITS < 1 || SIDE_BITS < 1) begin : g_check_widths
    $fatal(0, "Error: G_BITS, G_DELTA_BITS and SIDE_BITS must be >= 1 (instance %m)");
end
if (G_FILE == "") begin : g_check_file
    $fatal(0, "Error: G_FILE must name a $readmemh file (instance %m)");
end

/*
 * Round, clamp to [-2^16, 2^16], offset to 0 .. 2^17: table index i and remainder r (optionally registered)
 */
localparam logic signed [ZW-1:0] Z_TOP = ZW'(G_RANGE) <<< G_IN_FRAC;
localparam logic signed [ZW-1:0] Z_BOTTOM = ZW'(0) - Z_TOP;
wire logic signed [ZW-1:0] z_half = ZW'(1) <<< (SHIFT - 1);
wire logic signed [ZW-1:0] z_round = (ZW'(in_value) + z_half) >>> SHIFT;
wire logic signed [ZW-1:0] z_clamped = z_round > Z_TOP ? Z_TOP : z_round < Z_BOTTOM ? Z_BOTTOM : z_round;
wire logic [ZI_BITS-1:0] z_index = ZI_BITS'(z_clamped + Z_TOP);

wire logic ix_valid;
wire logic [IDX_BITS-1:0] ix_i;
wire logic [LOW_BITS-1:0] ix_r;
wire logic [SIDE_BITS-1:0] ix_side;

if (INDEX_REG == 1) begin : g_index_reg

    logic valid_reg;
    logic [IDX_BITS-1:0] i_reg;
    logic [LOW_BITS-1:0] r_reg;
    logic [SIDE_BITS-1:0] side_reg;

    always_ff @(posedge clk) begin
        valid_reg <= in_valid;
        i_reg <= z_index[LOW_BITS +: IDX_BITS];
        r_reg <= z_index[LOW_BITS-1:0];
        side_reg <= in_side;

        if (rst) begin
            valid_reg <= 1'b0;
        end
    end

    assign ix_valid = valid_reg;
    assign ix_i = i_reg;
    assign ix_r = r_reg;
    assign ix_side = side_reg;

end else begin : g_index_comb

    assign ix_valid = in_valid;
    assign ix_i = z_index[LOW_BITS +: IDX_BITS];
    assign ix_r = z_index[LOW_BITS-1:0];
    assign ix_side = in_side;

end

/*
 * Registered g ROM read: BASE | DELTA at i (G_BRAM = 1: in block RAM)
 */
// read by synthesis only (the attribute below)
/* verilator lint_off UNUSEDPARAM */
localparam ROM_STYLE = G_BRAM != 0 ? "block" : "auto";
/* verilator lint_on UNUSEDPARAM */

(* rom_style = ROM_STYLE *) logic [G_W-1:0] g_mem[G_ENTRIES];

initial begin
    $readmemh(G_FILE, g_mem);
end

logic rd_valid_reg;
logic [G_W-1:0] rd_g_reg;
logic [LOW_BITS-1:0] rd_r_reg;
logic [SIDE_BITS-1:0] rd_side_reg;

always_ff @(posedge clk) begin
    rd_valid_reg <= ix_valid;
    rd_g_reg <= g_mem[ix_i];
    rd_r_reg <= ix_r;
    rd_side_reg <= ix_side;

    if (rst) begin
        rd_valid_reg <= 1'b0;
    end
end

/*
 * The ROM word registered once more
 */
logic wd_valid_reg;
logic [G_W-1:0] wd_g_reg;
logic [LOW_BITS-1:0] wd_r_reg;
logic [SIDE_BITS-1:0] wd_side_reg;

always_ff @(posedge clk) begin
    wd_valid_reg <= rd_valid_reg;
    wd_g_reg <= rd_g_reg;
    wd_r_reg <= rd_r_reg;
    wd_side_reg <= rd_side_reg;

    if (rst) begin
        wd_valid_reg <= 1'b0;
    end
end

/*
 * DELTA * r
 */
wire logic signed [G_DELTA_BITS-1:0] g_delta = $signed(wd_g_reg[G_BITS +: G_DELTA_BITS]);
wire logic signed [IP_W-1:0] r_ext = $signed(IP_W'(wd_r_reg));

logic ip_valid_reg;
logic signed [IP_W-1:0] ip_reg;
logic signed [G_BITS-1:0] ip_base_reg;
logic [SIDE_BITS-1:0] ip_side_reg;

always_ff @(posedge clk) begin
    ip_valid_reg <= wd_valid_reg;
    ip_reg <= IP_W'(g_delta) * r_ext;
    ip_base_reg <= $signed(wd_g_reg[0 +: G_BITS]);
    ip_side_reg <= wd_side_reg;

    if (rst) begin
        ip_valid_reg <= 1'b0;
    end
end

/*
 * G = BASE + shift_round(DELTA * r, 9)
 */
wire logic signed [GS_W-1:0] ip_half = GS_W'(1) <<< (LOW_BITS - 1);

assign out_valid = ip_valid_reg;
assign out_g = OUT_BITS'(GS_W'(ip_base_reg) + ((GS_W'(ip_reg) + ip_half) >>> LOW_BITS));
assign out_side = ip_side_reg;

endmodule

`resetall
