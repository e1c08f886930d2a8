// SPDX-License-Identifier: BSD-3-Clause
/*
 * The last stages of a residual tail's lane, shared by residual_tail (RPReLU) and insta_tail (INSTA-PReLU): a PReLU
 * on the pre-activation D, an addend, and the requantization to the output lanes.
 *
 * Golden function: instabnn.contract.layers.ResidualActivation (the slope, the zeta shift, the output rounding):
 *
 *     P = D                                      if D >= 0
 *         floor(SLOPE * D / 2^SLOPE_FRAC)        otherwise (arithmetic shift)
 *     q = clamp((P + ADD + 2^(OUT_SHIFT-1)) >> OUT_SHIFT, OUT_BITS)   (round half up; OUT_SHIFT >= 1)
 *
 * ADD is RPReLU's zeta on the output grid (residual_tail); insta_tail ties it to 0 (ADD_BITS = 1). Widths: the slope
 * product SLOPE_BITS + D_BITS bits (split_mult), P P_BITS = max(D_BITS, SLOPE_BITS + D_BITS - SLOPE_FRAC), the
 * rounding sum O_BITS = max(P_BITS, ADD_BITS, OUT_SHIFT) + 2; all exact.
 *
 * Timing: d, slope and add sampled at an enabled edge e (en, the parent's pipeline enable) give q after the third
 * enabled edge from e (LATENCY = 3: the slope product's two split_mult stages, then P + ADD + half); q is the
 * shift and clamp of that register (combinational), ready for the parent's output FIFO.
 *
 * No reset: data registers only (the parent's valid bits run alongside).
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module prelu_requant #(
    // signed width of D
    parameter int D_BITS = 16,
    // signed width of the slope
    parameter int SLOPE_BITS = 18,
    // fraction bits of the slope
    parameter int SLOPE_FRAC = 16,
    // signed width of the addend (1 with add tied to 0: none)
    parameter int ADD_BITS = 1,
    // the requantization's right shift (>= 1)
    parameter int OUT_SHIFT = 4,
    // signed width of the output lanes q
    parameter int OUT_BITS = 8,
    // derived
    localparam int PM_BITS = SLOPE_BITS + D_BITS,
    localparam int PN_BITS = PM_BITS > SLOPE_FRAC ? PM_BITS - SLOPE_FRAC : 1,
    localparam int P_BITS = D_BITS > PN_BITS ? D_BITS : PN_BITS,
    localparam int O_MAX_PA = P_BITS > ADD_BITS ? P_BITS : ADD_BITS,
    localparam int O_BITS = (O_MAX_PA > OUT_SHIFT ? O_MAX_PA : OUT_SHIFT) + 2
) (
    input  wire logic                         clk,
    input  wire logic                         en,
    input  wire logic signed [D_BITS-1:0]     d,
    input  wire logic signed [SLOPE_BITS-1:0] slope,
    input  wire logic signed [ADD_BITS-1:0]   add,
    output wire logic signed [OUT_BITS-1:0]   q
);

// check configuration
if (OUT_SHIFT < 1) begin : g_check_shift
    $fatal(0, "Error: OUT_SHIFT (%0d) must be >= 1 (instance %m)", OUT_SHIFT);
end

/*
 * Stages 1 and 2: SLOPE * D (split_mult); D and the addend alongside
 */
wire logic signed [PM_BITS-1:0] n_prod;
logic signed [D_BITS-1:0] m_d_reg, n_d_reg;
logic signed [ADD_BITS-1:0] m_add_reg, n_add_reg;

split_mult #(
    .A_BITS(SLOPE_BITS),
    .B_BITS(D_BITS),
    .P_BITS(PM_BITS)
)
slope_mult_inst (
    .clk(clk),
    .en(en),
    .a(slope),
    .b(d),
    .p(n_prod)
);

/*
 * Stage 3: P + ADD + 2^(OUT_SHIFT-1)
 */
wire logic signed [PN_BITS-1:0] n_neg = PN_BITS'(n_prod >>> SLOPE_FRAC);
wire logic signed [P_BITS-1:0] p = n_d_reg[D_BITS-1] ? P_BITS'(n_neg) : P_BITS'(n_d_reg);
wire logic signed [O_BITS-1:0] half = O_BITS'(1) <<< (OUT_SHIFT - 1);
logic signed [O_BITS-1:0] o_reg;

always_ff @(posedge clk) begin
    if (en) begin
        m_d_reg <= d;
        m_add_reg <= add;
        n_d_reg <= m_d_reg;
        n_add_reg <= m_add_reg;
        o_reg <= O_BITS'(p) + O_BITS'(n_add_reg) + half;
    end
end

/*
 * Shift and clamp
 */
localparam logic signed [O_BITS-1:0] Q_MAX = O_BITS'((64'sd1 <<< (OUT_BITS - 1)) - 1);
localparam logic signed [O_BITS-1:0] Q_MIN = O_BITS'(-(64'sd1 <<< (OUT_BITS - 1)));
wire logic signed [O_BITS-1:0] rounded = o_reg >>> OUT_SHIFT;

assign q = rounded > Q_MAX ? OUT_BITS'(Q_MAX) : rounded < Q_MIN ? OUT_BITS'(Q_MIN) : OUT_BITS'(rounded);

endmodule

`resetall
