// SPDX-License-Identifier: BSD-3-Clause
/*
 * Bit max-pooling: the OR of K x K windows at stride K of a C x H x W frame of bits (max-pooling of bipolar values
 * in {-1, +1} coded as bits, 1 <-> +1; the max-pool after BatchNorm + sign of a plain W1A1 layer).
 *
 * Math (golden function: instabnn.contract.network.ChainStage, its pool; instabnn.hw.blocks.maxpool_bits.spec
 * MaxPoolBitsSpec.reference). Per frame, channel c and output pixel (oy, ox), 0 <= oy < H/K, 0 <= ox < W/K
 * (floor division: like the reference, rows y >= (H/K)*K and columns x >= (W/K)*K are cropped, i.e. read and
 * dropped):
 *
 *     b[c, oy, ox] = OR_{ky, kx < K} a[c, K*oy + ky, K*ox + kx]
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only). FINN order: pixel-major (row by row), channel-minor; beat
 * i = pixel*CF + f (CF = C/PE channel folds) carries channels f*PE .. f*PE+PE-1, lane pe = channel f*PE + pe at bit
 * pe:
 *   s_axis: a over the H x W input pixels, PE bits, H*W*CF beats per frame.
 *   m_axis: b over the (H/K) x (W/K) output pixels, PE bits, same order, (H/K)*(W/K)*CF beats per frame.
 *
 * Architecture: a row buffer of partial ORs, one entry per (output column ox, channel fold f) = (W/K)*CF entries
 * of PE bits (one output row), updated by a read-modify-write:
 *   edge e   (handshake): a registered, the entry (ox, f) read (registered read), position flags registered.
 *   edge e+1: b = (first beat of the window ? 0 : partial) | a written back to the entry; on the window's last beat
 *             (kx = ky = K-1) b also goes into the 2-entry output FIFO (m_axis_tvalid).
 *   edge e+2: earliest m_axis handshake.
 * The entry read at edge e misses the write of the beat just before it (same edge); where that beat had the same
 * address (CF = 1, inside a window row) the partial is forwarded instead. Beats in the cropped rows and columns
 * are taken and dropped (no write, no output).
 * LATENCY = 2 edges from the window's last input beat to its output handshake (output ready); one input beat per
 * clock, so a frame takes H*W*C/PE clocks (cropped pixels included); output beats only for completed windows.
 * Flow control: s_axis_tready = the output FIFO is not full (a register); m_axis_tvalid comes from a register.
 * Backpressure on m_axis fills the FIFO and stops the unit; nothing is dropped or reordered.
 *
 * Reset: rst (synchronous, active high) returns the unit to the start of a frame and empties the pipeline and the
 * output FIFO. The row buffer needs no reset: the first beat of every window overwrites its entry.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module maxpool_bits #(
    // channels C
    parameter int CHANNELS = 8,
    // channels per beat (parallel lanes); must divide CHANNELS
    parameter int PE = 4,
    // frame height H and width W; >= K (not necessarily multiples of K: the remainder is cropped)
    parameter int HEIGHT = 4,
    parameter int WIDTH = 4,
    // window size and stride, 2 .. 8
    parameter int K = 2,
    // channel folds: beats per pixel
    localparam int CF = PE >= 1 ? CHANNELS / PE : 1,
    // output frame (floor division)
    localparam int OUT_HEIGHT = K >= 1 ? HEIGHT / K : 1,
    localparam int OUT_WIDTH = K >= 1 ? WIDTH / K : 1,
    // read back by the testbench
    /* verilator lint_off UNUSEDPARAM */
    localparam int LATENCY = 2
    /* verilator lint_on UNUSEDPARAM */
) (
    input  wire logic                   clk,
    input  wire logic                   rst,

    /*
     * Input bit frame a
     */
    input  wire logic [PE-1:0]          s_axis_tdata,
    input  wire logic                   s_axis_tvalid,
    output wire logic                   s_axis_tready,

    /*
     * Pooled bits b
     */
    output wire logic [PE-1:0]          m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready
);

localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int K_W = $clog2(K + 1);
localparam int X_W = $clog2(WIDTH + 1);
localparam int Y_W = $clog2(HEIGHT + 1);
localparam int OX_W = $clog2(OUT_WIDTH + 2);
localparam int OY_W = $clog2(OUT_HEIGHT + 2);
localparam int ENTRIES = OUT_WIDTH * CF > 0 ? OUT_WIDTH * CF : 1;
localparam int ADDR_W = ENTRIES > 1 ? $clog2(ENTRIES) : 1;

// check configuration
if (CHANNELS < 1 || PE < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS and PE must be >= 1 (instance %m)");
end
if (PE >= 1 && CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (K < 2 || K > 8) begin : g_check_k
    $fatal(0, "Error: K (%0d) must be in 2 .. 8 (instance %m)", K);
end
if (HEIGHT < K || WIDTH < K) begin : g_check_frame
    $fatal(0, "Error: HEIGHT (%0d) and WIDTH (%0d) must be >= K (%0d) (instance %m)", HEIGHT, WIDTH, K);
end

/*
 * Control: position counters (channel fold; column x, column in window kx, output column ox; the same for rows)
 */
wire logic full;                     // the output FIFO is full

// the unit moves when the output FIFO can take a result
wire logic advance = !full;
wire logic accept = advance && s_axis_tvalid;

assign s_axis_tready = advance;

logic [CF_W-1:0] fold_reg;
logic [X_W-1:0] x_reg;
logic [K_W-1:0] kx_reg;
logic [OX_W-1:0] ox_reg;             // OUT_WIDTH: the cropped columns
logic [Y_W-1:0] y_reg;
logic [K_W-1:0] ky_reg;
logic [OY_W-1:0] oy_reg;             // OUT_HEIGHT: the cropped rows

wire logic last_fold = fold_reg == CF_W'(CF - 1);
wire logic last_x = x_reg == X_W'(WIDTH - 1);
wire logic last_y = y_reg == Y_W'(HEIGHT - 1);
wire logic last_kx = kx_reg == K_W'(K - 1);
wire logic last_ky = ky_reg == K_W'(K - 1);
wire logic in_crop = ox_reg < OX_W'(OUT_WIDTH) && oy_reg < OY_W'(OUT_HEIGHT);

always_ff @(posedge clk) begin
    if (accept) begin
        fold_reg <= last_fold ? '0 : fold_reg + 1'b1;
        if (last_fold) begin
            x_reg <= last_x ? '0 : x_reg + 1'b1;
            kx_reg <= last_x || last_kx ? '0 : kx_reg + 1'b1;
            ox_reg <= last_x ? '0 : ox_reg + OX_W'(last_kx);
            if (last_x) begin
                y_reg <= last_y ? '0 : y_reg + 1'b1;
                ky_reg <= last_y || last_ky ? '0 : ky_reg + 1'b1;
                oy_reg <= last_y ? '0 : oy_reg + OY_W'(last_ky);
            end
        end
    end

    if (rst) begin
        fold_reg <= '0;
        x_reg <= '0;
        kx_reg <= '0;
        ox_reg <= '0;
        y_reg <= '0;
        ky_reg <= '0;
        oy_reg <= '0;
    end
end

/*
 * Row buffer read-modify-write
 */
logic [PE-1:0] row_mem[ENTRIES];

wire logic [ADDR_W-1:0] addr = ADDR_W'(ox_reg) * ADDR_W'(CF) + ADDR_W'(fold_reg);

logic s1_valid_reg;                  // a beat inside the crop
logic [PE-1:0] s1_data_reg;
logic [ADDR_W-1:0] s1_addr_reg;
logic s1_first_reg;                  // first beat of its window: the partial is 0
logic s1_last_reg;                   // last beat of its window: the OR is complete
logic [PE-1:0] s1_rd_reg;            // the entry as read at the handshake
logic s1_fwd_reg;                    // ... stale: the beat before wrote the same entry at that edge
logic [PE-1:0] s1_fwd_data_reg;

wire logic [PE-1:0] partial = s1_first_reg ? '0 : s1_fwd_reg ? s1_fwd_data_reg : s1_rd_reg;
wire logic [PE-1:0] result = partial | s1_data_reg;

always_ff @(posedge clk) begin
    if (advance) begin
        s1_rd_reg <= row_mem[addr];
        s1_data_reg <= s_axis_tdata;
        s1_addr_reg <= addr;
        s1_first_reg <= kx_reg == '0 && ky_reg == '0;
        s1_last_reg <= last_kx && last_ky;
        s1_fwd_reg <= s1_valid_reg && s1_addr_reg == addr;
        s1_fwd_data_reg <= result;
        s1_valid_reg <= accept && in_crop;
        if (s1_valid_reg) begin
            row_mem[s1_addr_reg] <= result;
        end
    end

    if (rst) begin
        s1_valid_reg <= 1'b0;
    end
end

/*
 * Output FIFO (2 entries): a full FIFO stops the unit; tvalid comes from the occupancy register
 */
wire logic push = advance && s1_valid_reg && s1_last_reg;
output_fifo #(
    .WIDTH(PE)
)
out_fifo_inst (
    .clk(clk),
    .rst(rst),
    .push(push),
    .push_data(result),
    .full(full),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
