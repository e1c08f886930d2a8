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
 * IN_REG = 1 registers the inputs first: everything above then happens one edge later.
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
    // 1: register the inputs once before they are collected (one edge more, the producer's logic kept apart from
    // the distributed RAM's write port); 0: collect them as they come
    parameter int IN_REG = 0,
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

if (IN_REG != 0 && IN_REG != 1) begin : g_check_in_reg
    $fatal(0, "Error: IN_REG (%0d) must be 0 or 1 (instance %m)", IN_REG);
end

// the inputs as collected: registered once (IN_REG = 1) or as they come
wire logic c_valid;
wire logic [LANE_BITS-1:0] c_value;
wire logic c_bank;
wire logic [CF_W-1:0] c_fold;
wire logic c_last_lane;
wire logic c_last_fold;

if (IN_REG == 1) begin : g_in_reg

    logic valid_reg;
    logic [LANE_BITS-1:0] value_reg;
    logic bank_reg;
    logic [CF_W-1:0] fold_reg;
    logic last_lane_reg;
    logic last_fold_reg;

    always_ff @(posedge clk) begin
        valid_reg <= in_valid;
        value_reg <= in_value;
        bank_reg <= in_bank;
        fold_reg <= in_fold;
        last_lane_reg <= in_last_lane;
        last_fold_reg <= in_last_fold;

        if (rst) begin
            valid_reg <= 1'b0;
        end
    end

    assign {c_valid, c_value, c_bank, c_fold, c_last_lane, c_last_fold} =
        {valid_reg, value_reg, bank_reg, fold_reg, last_lane_reg, last_fold_reg};

end else begin : g_in_direct

    assign {c_valid, c_value, c_bank, c_fold, c_last_lane, c_last_fold} =
        {in_valid, in_value, in_bank, in_fold, in_last_lane, in_last_fold};

end

logic [PE*LANE_BITS-1:0] mem[2**(CF_W+1)];
wire logic [PE*LANE_BITS-1:0] word;
logic done_reg;

if (PE > 2) begin : g_collect

    // lanes 0 .. PE-2 of the fold, shifted in from the top: lane pe ends at bits [pe*LANE_BITS +: LANE_BITS]
    logic [(PE-1)*LANE_BITS-1:0] lanes_reg;

    always_ff @(posedge clk) begin
        if (c_valid) begin
            lanes_reg <= {c_value, lanes_reg[(PE-1)*LANE_BITS-1:LANE_BITS]};
        end
    end

    assign word = {c_value, lanes_reg};

end else if (PE == 2) begin : g_collect_one

    logic [LANE_BITS-1:0] lane0_reg;

    always_ff @(posedge clk) begin
        if (c_valid) begin
            lane0_reg <= c_value;
        end
    end

    assign word = {c_value, lane0_reg};

end else begin : g_single

    assign word = c_value;

end

always_ff @(posedge clk) begin
    if (c_valid && c_last_lane) begin
        mem[{c_bank, c_fold}] <= word;
    end
    done_reg <= c_valid && c_last_lane && c_last_fold;

    if (rst) begin
        done_reg <= 1'b0;
    end
end

assign done = done_reg;
assign rd_data = mem[{rd_bank, rd_fold}];

endmodule

`resetall
