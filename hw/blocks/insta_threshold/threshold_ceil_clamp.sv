// SPDX-License-Identifier: BSD-3-Clause
/*
 * Integer threshold from a fixed-point one: t = clamp(ceil(value / 2^FRAC), q_min, q_max + 1) (combinational).
 *
 * Golden function: instabnn.contract.insta.frame_thresholds (t = -((-T_fx) >> F), then clamped). value is a
 * two's-complement fixed-point number with FRAC fraction bits; q_min = -2^(INPUT_BITS-1), q_max = 2^(INPUT_BITS-1)-1
 * are the ends of the signed INPUT_BITS-bit input range. For every integer q in that range,
 * q >= t  <=>  q * 2^FRAC >= value, so the clamp changes no comparison. t is a signed INPUT_BITS+1-bit integer.
 *
 * ceil is floor + (any fraction bit set): the floor is the arithmetic right shift (wires only). The clamp decisions
 * are taken on the floor, in parallel with the increment (ceil < q_min <=> floor < q_min - nz, ceil > q_max + 1 <=>
 * floor > q_max + 1 - nz, nz the fraction flag: constant compares chosen by nz), so that no compare waits for the
 * increment's carry; only the low INPUT_BITS + 1 bits of the increment are kept.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module threshold_ceil_clamp #(
    // width of the fixed-point input value (two's complement)
    parameter int IN_W = 16,
    // fraction bits of the input value
    parameter int FRAC = 8,
    // signed width of the integers compared with t (t has INPUT_BITS + 1 bits)
    parameter int INPUT_BITS = 8
) (
    input  wire logic [IN_W-1:0]        value,
    output wire logic [INPUT_BITS:0]    t
);

// the integer part gets enough bits for the clamp limits and the +1 of the ceiling
localparam int EXT_W = (IN_W > FRAC + INPUT_BITS + 1 ? IN_W : FRAC + INPUT_BITS + 1) + 1;
localparam int INT_W = EXT_W - FRAC;
localparam int TH_W = INPUT_BITS + 1;

// check configuration
if (IN_W < 1 || FRAC < 0) begin : g_check_widths
    $fatal(0, "Error: IN_W (%0d) must be >= 1 and FRAC (%0d) >= 0 (instance %m)", IN_W, FRAC);
end
if (INPUT_BITS < 2) begin : g_check_input_bits
    $fatal(0, "Error: INPUT_BITS (%0d) must be >= 2 (instance %m)", INPUT_BITS);
end

wire logic signed [EXT_W-1:0] value_ext = EXT_W'($signed(value));
wire logic signed [INT_W-1:0] floor_part = value_ext[EXT_W-1:FRAC];
wire logic frac_nonzero;

if (FRAC > 0) begin : g_frac
    assign frac_nonzero = |value_ext[(FRAC > 0 ? FRAC-1 : 0):0];
end else begin : g_no_frac
    assign frac_nonzero = 1'b0;
end

localparam logic signed [INT_W-1:0] LOW = -(INT_W'(1) <<< (INPUT_BITS - 1));      // q_min
localparam logic signed [INT_W-1:0] HIGH = INT_W'(1) <<< (INPUT_BITS - 1);        // q_max + 1

wire logic below = frac_nonzero ? floor_part < LOW - INT_W'(1) : floor_part < LOW;    // ceil < q_min
wire logic above = frac_nonzero ? floor_part >= HIGH : floor_part > HIGH;             // ceil > q_max + 1
wire logic [TH_W-1:0] ceil_low = TH_W'(floor_part) + TH_W'(frac_nonzero);              // ceil mod 2^TH_W

assign t = below ? TH_W'(LOW) : above ? TH_W'(HIGH) : ceil_low;

endmodule

`resetall
