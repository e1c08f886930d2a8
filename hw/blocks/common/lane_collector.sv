// SPDX-License-Identifier: BSD-3-Clause
/*
 * Collects a fold's PE per-channel results, one per clock, into one word of a two-bank memory read asynchronously.
 *
 * The values of a fold arrive in lane order pe = 0 .. PE-1 (in_valid high, not necessarily on consecutive clocks);
 * the edge that samples lane PE-1 (in_last_lane) writes the word {in_value of lane PE-1, .., lane 0} to address
 * {in_bank, in_fold}: lane pe at bits [pe*LANE_BITS +: LANE_BITS]. Lanes 0 .. PE-2 wait in a shift register
 * (PE-1 registers of LANE_BITS; none for PE = 1). done pulses one edge after the write of a lane with in_last_fold
 * (the frame's last word is in memory). Memory: 2^(CF_W+1) words of PE*LANE_BITS bits, word {bank, fold}.
 *
 * Reset: rst (synchronous, active high) clears done; the memory and the lane registers keep their contents.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module lane_collector #(
    // channels per word (lanes)
    parameter int PE = 4,
    // folds per bank (words of a frame)
    parameter int CF = 2,
    // width of one lane's value
    parameter int LANE_BITS = 9,
    // derived
    localparam int CF_W = CF > 1 ? $clog2(CF) : 1
) (
    input  wire logic                      clk,
    input  wire logic                      rst,

    /*
     * Values in lane order
     */
    input  wire logic                      in_valid,
    input  wire logic [LANE_BITS-1:0]      in_value,
    input  wire logic                      in_bank,
    input  wire logic [CF_W-1:0]           in_fold,
    input  wire logic                      in_last_lane,
    input  wire logic                      in_last_fold,
    output wire logic                      done,       // pulse: the frame's last word is written

    /*
     * Read port (asynchronous)
     */
    input  wire logic                      rd_bank,
    input  wire logic [CF_W-1:0]           rd_fold,
    output wire logic [PE*LANE_BITS-1:0]   rd_data
);

// check configuration
if (PE < 1 || CF < 1 || LANE_BITS < 1) begin : g_check_sizes
    $fatal(0, "Error: PE (%0d), CF (%0d) and LANE_BITS (%0d) must be >= 1 (instance %m)", PE, CF, LANE_BITS);
end

logic [PE*LANE_BITS-1:0] mem[2**(CF_W+1)];
wire logic [PE*LANE_BITS-1:0] word;
logic done_reg;

if (PE > 2) begin : g_collect

    // lanes 0 .. PE-2 of the fold, shifted in from the top: lane pe ends at bits [pe*LANE_BITS +: LANE_BITS]
    logic [(PE-1)*LANE_BITS-1:0] lanes_reg;

    always_ff @(posedge clk) begin
        if (in_valid) begin
            lanes_reg <= {in_value, lanes_reg[(PE-1)*LANE_BITS-1:LANE_BITS]};
        end
    end

    assign word = {in_value, lanes_reg};

end else if (PE == 2) begin : g_collect_one

    logic [LANE_BITS-1:0] lane0_reg;

    always_ff @(posedge clk) begin
        if (in_valid) begin
            lane0_reg <= in_value;
        end
    end

    assign word = {in_value, lane0_reg};

end else begin : g_single

    assign word = in_value;

end

always_ff @(posedge clk) begin
    if (in_valid && in_last_lane) begin
        mem[{in_bank, in_fold}] <= word;
    end
    done_reg <= in_valid && in_last_lane && in_last_fold;

    if (rst) begin
        done_reg <= 1'b0;
    end
end

assign done = done_reg;
assign rd_data = mem[{rd_bank, rd_fold}];

endmodule

`resetall
