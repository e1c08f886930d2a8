// SPDX-License-Identifier: BSD-3-Clause
/*
 * Adder tree: the sum of N signed lanes, as a balanced tree of two-input adders (combinational).
 *
 * sum = sum_i $signed(data[i*IN_W +: IN_W]), as an OUT_W-bit two's-complement integer. The result is exact when
 * OUT_W >= IN_W + ceil(log2(N)); a narrower OUT_W is allowed when the caller knows the sum's range (every adder
 * then works modulo 2^OUT_W, and a sum that fits in OUT_W bits is still exact). The lanes are split in halves that
 * are summed by recursive instances (each at the width its own half needs, capped at OUT_W) and added, giving
 * ceil(log2(N)) adder levels.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module adder_tree #(
    // number of lanes
    parameter int N = 4,
    // bits per lane (two's complement)
    parameter int IN_W = 8,
    // bits of the sum (two's complement)
    parameter int OUT_W = 10
) (
    input  wire logic [N*IN_W-1:0]  data,
    output wire logic [OUT_W-1:0]   sum
);

// check configuration
if (N < 1 || IN_W < 1 || OUT_W < 1) begin : g_check_sizes
    $fatal(0, "Error: N (%0d), IN_W (%0d) and OUT_W (%0d) must be >= 1 (instance %m)", N, IN_W, OUT_W);
end

if (N == 1) begin : g_leaf

    if (OUT_W > IN_W) begin : g_extend
        assign sum = {{(OUT_W-IN_W){data[IN_W-1]}}, data};
    end else begin : g_cut
        // the caller guarantees the value fits in OUT_W bits: the high bits only repeat the sign
        assign sum = data[OUT_W-1:0];
        if (IN_W > OUT_W) begin : g_drop
            wire logic unused_high = ^data[IN_W-1:OUT_W];
        end
    end

end else begin : g_tree

    localparam int LO_N = N / 2;
    localparam int HI_N = N - LO_N;
    // a half's exact width, capped at OUT_W
    localparam int LO_W = IN_W + $clog2(LO_N) < OUT_W ? IN_W + $clog2(LO_N) : OUT_W;
    localparam int HI_W = IN_W + $clog2(HI_N) < OUT_W ? IN_W + $clog2(HI_N) : OUT_W;

    wire logic [LO_W-1:0] lo_sum;
    wire logic [HI_W-1:0] hi_sum;

    adder_tree #(
        .N(LO_N),
        .IN_W(IN_W),
        .OUT_W(LO_W)
    )
    lo_inst (
        .data(data[LO_N*IN_W-1:0]),
        .sum(lo_sum)
    );

    adder_tree #(
        .N(HI_N),
        .IN_W(IN_W),
        .OUT_W(HI_W)
    )
    hi_inst (
        .data(data[N*IN_W-1:LO_N*IN_W]),
        .sum(hi_sum)
    );

    wire logic signed [OUT_W-1:0] lo_ext = OUT_W'($signed(lo_sum));
    wire logic signed [OUT_W-1:0] hi_ext = OUT_W'($signed(hi_sum));

    assign sum = lo_ext + hi_ext;

end

endmodule

`resetall
