// SPDX-License-Identifier: BSD-3-Clause
/*
 * Global sum pooling: the per-channel sum over all H*W pixels of a C x H x W frame of signed integers (the global
 * average pool without the division; the classifier's common scale takes the 1/N).
 *
 * Math (golden: the first step of instabnn.contract.layers.Classifier, sum_{h,w} q; docs/arithmetic.md,
 * "classifier"). Per frame and channel c, with N = H*W:
 *
 *     s[c] = sum_{h < H, w < W} q[c, h, w]
 *
 * Widths: |s| <= N 2^(IN_BITS-1), so OUT_BITS = IN_BITS + ceil(log2 N) holds every sum exactly.
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only). FINN order: pixel-major, channel-minor; beat i = pixel*CF + f
 * (CF = C/PE channel folds) carries channels f*PE .. f*PE+PE-1, lane pe = channel f*PE + pe at bits [pe*W +: W]
 * (two's complement):
 *   s_axis: q over the N pixels, W = IN_BITS, N*CF beats per frame.
 *   m_axis: s, W = OUT_BITS, CF beats per frame (one output pixel).
 *
 * Architecture (partial_sum_memory): one accumulator entry per channel fold (CF entries of PE*OUT_BITS bits),
 * updated by a read-modify-write:
 *   edge e   (handshake): q registered, the fold's entry read (registered read), first / last pixel flags.
 *   edge e+1: s = (first pixel ? 0 : partial) + q written back; on the last pixel s also goes into the 2-entry
 *             output FIFO (m_axis_tvalid).
 *   edge e+2: earliest m_axis handshake.
 * The entry read at edge e misses the write of the beat just before it (same edge); where that beat had the same
 * fold (CF = 1) the partial is forwarded from the adder instead.
 * LATENCY = 2 edges from the last pixel's beat of a fold to its output handshake (output ready); one input beat per
 * clock, so a frame takes H*W*C/PE clocks.
 * Flow control: s_axis_tready = the output FIFO is not full (a register); m_axis_tvalid comes from a register.
 * Backpressure on m_axis fills the FIFO and stops the unit; nothing is dropped or reordered.
 *
 * Reset: rst (synchronous, active high) returns the unit to the start of a frame and empties the pipeline and the
 * output FIFO. The accumulators need no reset: the first pixel overwrites them.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module global_sum #(
    // channels C
    parameter int CHANNELS = 8,
    // channels per beat (parallel lanes); must divide CHANNELS
    parameter int PE = 4,
    // frame height H and width W (>= 1)
    parameter int HEIGHT = 4,
    parameter int WIDTH = 4,
    // signed width of the input lanes (2 .. 32)
    parameter int IN_BITS = 8,
    // pixels per frame N
    localparam int PIXELS = HEIGHT * WIDTH,
    // signed width of the output lanes: exact sums
    localparam int OUT_BITS = IN_BITS + $clog2(PIXELS),
    // channel folds: beats per pixel
    localparam int CF = CHANNELS / PE,
    // read back by the testbench
    /* verilator lint_off UNUSEDPARAM */
    localparam int LATENCY = 2,
    /* verilator lint_on UNUSEDPARAM */
    // stream widths
    localparam int S_DATA_W = PE * IN_BITS,
    localparam int M_DATA_W = PE * OUT_BITS
) (
    input  wire logic                   clk,
    input  wire logic                   rst,

    /*
     * Input frame q
     */
    input  wire logic [S_DATA_W-1:0]    s_axis_tdata,
    input  wire logic                   s_axis_tvalid,
    output wire logic                   s_axis_tready,

    /*
     * Per-channel sums s
     */
    output wire logic [M_DATA_W-1:0]    m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready
);

localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int PIX_W = PIXELS > 1 ? $clog2(PIXELS) : 1;

// check configuration
if (CHANNELS < 1 || PE < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS and PE must be >= 1 (instance %m)");
end
if (PE >= 1 && CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (HEIGHT < 1 || WIDTH < 1) begin : g_check_frame
    $fatal(0, "Error: HEIGHT (%0d) and WIDTH (%0d) must be >= 1 (instance %m)", HEIGHT, WIDTH);
end
if (IN_BITS < 2 || IN_BITS > 32) begin : g_check_in_bits
    $fatal(0, "Error: IN_BITS (%0d) must be in 2 .. 32 (instance %m)", IN_BITS);
end

/*
 * Control: position counters (channel fold, pixel), advanced on accept
 */
wire logic accept;                   // partial_sum_memory takes the beat

logic [CF_W-1:0] fold_reg;
logic [PIX_W-1:0] pixel_reg;

wire logic last_fold = fold_reg == CF_W'(CF - 1);
wire logic last_pixel = pixel_reg == PIX_W'(PIXELS - 1);

always_ff @(posedge clk) begin
    if (accept) begin
        fold_reg <= last_fold ? '0 : fold_reg + 1'b1;
        if (last_fold) begin
            pixel_reg <= last_pixel ? '0 : pixel_reg + 1'b1;
        end
    end

    if (rst) begin
        fold_reg <= '0;
        pixel_reg <= '0;
    end
end

/*
 * Partial sums (read-modify-write) and the output FIFO
 */
partial_sum_memory #(
    .PE(PE),
    .IN_BITS(IN_BITS),
    .OUT_BITS(OUT_BITS),
    .ENTRIES(CF)
)
sums_inst (
    .clk(clk),
    .rst(rst),
    .s_axis_tdata(s_axis_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
    .addr(fold_reg),
    .first(pixel_reg == '0),
    .last(last_pixel),
    .accept(accept),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
