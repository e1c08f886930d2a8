// SPDX-License-Identifier: BSD-3-Clause
/*
 * Population count: the number of set bits of a word, as a balanced adder tree (combinational).
 *
 * count = sum_i data[i], in $clog2(IN_W+1) bits (0 .. IN_W). Words of up to LEAF_W bits are summed directly
 * (one LUT level on 6-input-LUT devices); wider words are split in halves that are counted by recursive
 * instances and added, giving ceil(log2(IN_W / LEAF_W)) adder levels.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module popcount #(
    // input word width
    parameter int IN_W = 8,
    // widest word summed without splitting
    parameter int LEAF_W = 6
) (
    input  wire logic [IN_W-1:0]            data,
    output wire logic [$clog2(IN_W+1)-1:0]  count
);

localparam int OUT_W = $clog2(IN_W+1);

// check configuration
if (IN_W < 1) begin : g_check_in_w
    $fatal(0, "Error: IN_W (%0d) must be >= 1 (instance %m)", IN_W);
end
if (LEAF_W < 1) begin : g_check_leaf_w
    $fatal(0, "Error: LEAF_W (%0d) must be >= 1 (instance %m)", LEAF_W);
end

if (IN_W <= LEAF_W) begin : g_leaf

    function automatic logic [OUT_W-1:0] leaf_count(input logic [IN_W-1:0] word);
        leaf_count = '0;
        for (int i = 0; i < IN_W; i = i + 1) begin
            leaf_count = leaf_count + OUT_W'(word[i]);
        end
    endfunction

    assign count = leaf_count(data);

end else begin : g_tree

    localparam int LO_W = IN_W / 2;
    localparam int HI_W = IN_W - LO_W;

    wire logic [$clog2(LO_W+1)-1:0] lo_count;
    wire logic [$clog2(HI_W+1)-1:0] hi_count;

    popcount #(
        .IN_W(LO_W),
        .LEAF_W(LEAF_W)
    )
    lo_inst (
        .data(data[LO_W-1:0]),
        .count(lo_count)
    );

    popcount #(
        .IN_W(HI_W),
        .LEAF_W(LEAF_W)
    )
    hi_inst (
        .data(data[IN_W-1:LO_W]),
        .count(hi_count)
    );

    assign count = OUT_W'(lo_count) + OUT_W'(hi_count);

end

endmodule

`resetall
