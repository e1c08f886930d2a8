// SPDX-License-Identifier: BSD-3-Clause
/*
 * A two-stage signed product for operands wider than one multiplier: p = a * b modulo 2^P_BITS.
 *
 * The operands are cut into chunks as Yosys cuts a wide product for DSP48E1 slices (25 x 18 bits;
 * instabnn.hw.blocks.common.resources.multiplier_dsp): the wider operand into 24-bit chunks, the narrower into 17-bit
 * ones, the low chunks unsigned and the top one signed (an operand that fits its port, 25 or 18 bits, is one signed
 * chunk). With the macro INSTABNN_MULT18X18 defined (the ECP5 flows define it: the MULT18X18D is 18 x 18 bits) both
 * operands are cut into 17-bit chunks, so that every chunk product is one multiplier there too, without the adder
 * that joins two. Stage 1 registers every chunk product; stage 2 registers their sum, each chunk product shifted by
 * its chunks' offsets. Exact either way: the sum of the shifted chunk products is a * b, taken modulo 2^P_BITS
 * (P_BITS >= A_BITS + B_BITS keeps all of it).
 *
 * Timing: en (a pipeline enable) gates both stages; a and b sampled at an enabled edge e give p after the next
 * enabled edge (LATENCY = 2 enabled edges). On the ECP5 a single-stage product of several multipliers and the adders
 * that join them took 10-12 ns; here the multipliers and the final adders are in different stages.
 *
 * No reset: the data registers carry no control state (the caller's valid bits run alongside).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module split_mult #(
    // signed operand widths
    parameter int A_BITS = 18,
    parameter int B_BITS = 18,
    // width of the product kept (modulo 2^P_BITS)
    parameter int P_BITS = 36
) (
    input  wire logic                      clk,
    input  wire logic                      en,
    input  wire logic signed [A_BITS-1:0]  a,
    input  wire logic signed [B_BITS-1:0]  b,
    output wire logic signed [P_BITS-1:0]  p
);

// X: the wider operand (25-bit port, 24-bit chunks; 18 / 17 with INSTABNN_MULT18X18), Y: the narrower (18-bit
// port, 17-bit chunks)
localparam int X_BITS = A_BITS >= B_BITS ? A_BITS : B_BITS;
localparam int Y_BITS = A_BITS >= B_BITS ? B_BITS : A_BITS;
`ifdef INSTABNN_MULT18X18
localparam int X_CHUNK = 17;
`else
localparam int X_CHUNK = 24;
`endif
localparam int Y_CHUNK = 17;
localparam int NX = X_BITS <= X_CHUNK + 1 ? 1 : (X_BITS - 1 + X_CHUNK - 1) / X_CHUNK;
localparam int NY = Y_BITS <= Y_CHUNK + 1 ? 1 : (Y_BITS - 1 + Y_CHUNK - 1) / Y_CHUNK;
localparam int PART_W = X_CHUNK + Y_CHUNK + 2;                       // one chunk product

// check configuration
if (A_BITS < 1 || B_BITS < 1 || P_BITS < 1) begin : g_check_widths
    $fatal(0, "Error: A_BITS (%0d), B_BITS (%0d) and P_BITS (%0d) must be >= 1 (instance %m)", A_BITS, B_BITS,
           P_BITS);
end

wire logic signed [X_BITS-1:0] x;
wire logic signed [Y_BITS-1:0] y;

if (A_BITS >= B_BITS) begin : g_a_wide
    assign x = a;
    assign y = b;
end else begin : g_b_wide
    assign x = b;
    assign y = a;
end

// chunk i of an operand as a signed value: low chunks zero-extended, the top chunk sign-extended
wire logic signed [X_CHUNK:0] x_chunks[NX];
wire logic signed [Y_CHUNK:0] y_chunks[NY];

for (genvar i = 0; i < NX; i = i + 1) begin : g_x_chunk
    if (i < NX - 1) begin : g_low
        assign x_chunks[i] = $signed({1'b0, x[i*X_CHUNK +: X_CHUNK]});
    end else begin : g_top
        assign x_chunks[i] = (X_CHUNK+1)'($signed(x[X_BITS-1:i*X_CHUNK]));
    end
end

for (genvar j = 0; j < NY; j = j + 1) begin : g_y_chunk
    if (j < NY - 1) begin : g_low
        assign y_chunks[j] = $signed({1'b0, y[j*Y_CHUNK +: Y_CHUNK]});
    end else begin : g_top
        assign y_chunks[j] = (Y_CHUNK+1)'($signed(y[Y_BITS-1:j*Y_CHUNK]));
    end
end

/*
 * Stage 1: the chunk products, registered
 */
logic signed [PART_W-1:0] part_reg[NX*NY];

for (genvar i = 0; i < NX; i = i + 1) begin : g_part_x
    for (genvar j = 0; j < NY; j = j + 1) begin : g_part_y
        always_ff @(posedge clk) begin
            if (en) begin
                part_reg[i*NY + j] <= PART_W'(x_chunks[i]) * PART_W'(y_chunks[j]);
            end
        end
    end
end

/*
 * Stage 2: their shifted sum, registered
 */
logic signed [P_BITS-1:0] sum;

always_comb begin
    sum = '0;
    for (int i = 0; i < NX; i = i + 1) begin
        for (int j = 0; j < NY; j = j + 1) begin
            sum = sum + (P_BITS'(part_reg[i*NY + j]) <<< (X_CHUNK * i + Y_CHUNK * j));
        end
    end
end

logic signed [P_BITS-1:0] p_reg;

always_ff @(posedge clk) begin
    if (en) begin
        p_reg <= sum;
    end
end

assign p = p_reg;

endmodule

`resetall
