// SPDX-License-Identifier: BSD-3-Clause
/*
 * Sum pooling: the sums of K x K windows at stride K of a C x H x W frame of signed integers (average pooling
 * without the division; the scale takes the 1/K^2).
 *
 * Math (golden function: instabnn.contract.layers.pool_sum; docs/arithmetic.md, "block tail": the average-pool
 * shortcut sums). Per frame, channel c and output pixel (oy, ox), 0 <= oy < H/K, 0 <= ox < W/K:
 *
 *     s[c, oy, ox] = sum_{ky, kx < K} q[c, K*oy + ky, K*ox + kx]
 *
 * Widths: |s| <= K^2 2^(IN_BITS-1), so OUT_BITS = IN_BITS + 2 log2(K) holds every sum exactly.
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only). FINN order: pixel-major (row by row), channel-minor; beat
 * i = pixel*CF + f (CF = C/PE channel folds) carries channels f*PE .. f*PE+PE-1, lane pe = channel f*PE + pe at bits
 * [pe*W +: W] (two's complement):
 *   s_axis: q over the H x W input pixels, W = IN_BITS, H*W*CF beats per frame.
 *   m_axis: s over the (H/K) x (W/K) output pixels, W = OUT_BITS, same order, (H/K)*(W/K)*CF beats per frame.
 *
 * Architecture (partial_sum_memory): a row buffer of partial sums, one entry per (output column ox, channel fold f)
 * = (W/K)*CF entries of PE*OUT_BITS bits (one output row's accumulators; LUT RAM or block RAM), updated by a
 * read-modify-write:
 *   edge e   (handshake): q registered, the entry (ox, f) read (registered read), position flags registered.
 *   edge e+1: s = (first beat of the window ? 0 : partial) + q written back to the entry; on the window's last beat
 *             (kx = ky = K-1) s also goes into the 2-entry output FIFO (m_axis_tvalid).
 *   edge e+2: earliest m_axis handshake.
 * The entry read at edge e misses the write of the beat just before it (same edge); where that beat had the same
 * address (CF = 1, inside a window row) the partial is forwarded from the adder instead.
 * LATENCY = 2 edges from the window's last input beat to its output handshake (output ready); one input beat per
 * clock, so a frame takes H*W*C/PE clocks; output beats only for completed windows.
 * Flow control: s_axis_tready = the output FIFO is not full (a register); m_axis_tvalid comes from a register.
 * Backpressure on m_axis fills the FIFO and stops the unit; nothing is dropped or reordered.
 *
 * Reset: rst (synchronous, active high) returns the unit to the start of a frame and empties the pipeline and the
 * output FIFO. The row buffer needs no reset: the first beat of every window overwrites its entry.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module pool_sum #(
    // channels C
    parameter int CHANNELS = 8,
    // channels per beat (parallel lanes); must divide CHANNELS
    parameter int PE = 4,
    // frame height H and width W; multiples of K
    parameter int HEIGHT = 4,
    parameter int WIDTH = 4,
    // window size and stride: 2 or 4
    parameter int K = 2,
    // signed width of the input lanes (2 .. 32)
    parameter int IN_BITS = 8,
    // log2(K)
    localparam int LOG_K = K == 4 ? 2 : 1,
    // signed width of the output lanes: exact window sums
    localparam int OUT_BITS = IN_BITS + 2 * LOG_K,
    // channel folds: beats per pixel
    localparam int CF = CHANNELS / PE,
    // output columns: row buffer entries per channel fold
    localparam int OUT_WIDTH = WIDTH / K,
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
     * Window sums s
     */
    output wire logic [M_DATA_W-1:0]    m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready
);

localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int OX_W = OUT_WIDTH > 1 ? $clog2(OUT_WIDTH) : 1;
localparam int ENTRIES = OUT_WIDTH * CF;
localparam int ADDR_W = ENTRIES > 1 ? $clog2(ENTRIES) : 1;

// check configuration
if (CHANNELS < 1 || PE < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS and PE must be >= 1 (instance %m)");
end
if (PE >= 1 && CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (K != 2 && K != 4) begin : g_check_k
    $fatal(0, "Error: K (%0d) must be 2 or 4 (instance %m)", K);
end
if (HEIGHT < 1 || WIDTH < 1 || HEIGHT % K != 0 || WIDTH % K != 0) begin : g_check_frame
    $fatal(0, "Error: HEIGHT (%0d) and WIDTH (%0d) must be positive multiples of K (%0d) (instance %m)",
           HEIGHT, WIDTH, K);
end
if (IN_BITS < 2 || IN_BITS > 32) begin : g_check_in_bits
    $fatal(0, "Error: IN_BITS (%0d) must be in 2 .. 32 (instance %m)", IN_BITS);
end

/*
 * Control: position counters (channel fold, column in window, output column, row in window), advanced on accept
 */
wire logic accept;                   // partial_sum_memory takes the beat

logic [CF_W-1:0] fold_reg;
logic [LOG_K-1:0] kx_reg;
logic [OX_W-1:0] ox_reg;
logic [LOG_K-1:0] ky_reg;

wire logic last_fold = fold_reg == CF_W'(CF - 1);
wire logic last_kx = kx_reg == LOG_K'(K - 1);
wire logic last_ox = ox_reg == OX_W'(OUT_WIDTH - 1);
wire logic last_ky = ky_reg == LOG_K'(K - 1);

always_ff @(posedge clk) begin
    if (accept) begin
        fold_reg <= last_fold ? '0 : fold_reg + 1'b1;
        if (last_fold) begin
            kx_reg <= kx_reg + 1'b1;  // K is a power of two: wraps
            if (last_kx) begin
                ox_reg <= last_ox ? '0 : ox_reg + 1'b1;
                if (last_ox) begin
                    ky_reg <= ky_reg + 1'b1;
                end
            end
        end
    end

    if (rst) begin
        fold_reg <= '0;
        kx_reg <= '0;
        ox_reg <= '0;
        ky_reg <= '0;
    end
end

// the row buffer entry of the beat: (output column, channel fold)
wire logic [ADDR_W-1:0] addr = ADDR_W'(ox_reg) * ADDR_W'(CF) + ADDR_W'(fold_reg);

/*
 * Partial sums (read-modify-write) and the output FIFO
 */
partial_sum_memory #(
    .PE(PE),
    .IN_BITS(IN_BITS),
    .OUT_BITS(OUT_BITS),
    .ENTRIES(ENTRIES)
)
sums_inst (
    .clk(clk),
    .rst(rst),
    .s_axis_tdata(s_axis_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
    .addr(addr),
    .first(kx_reg == '0 && ky_reg == '0),
    .last(last_kx && last_ky),
    .accept(accept),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
