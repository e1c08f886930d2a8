// SPDX-License-Identifier: BSD-3-Clause
/*
 * Sliding-window generator: streams the K x K windows of a C x H x W feature map (stride STRIDE, padding PAD with
 * a constant pad value) in the order a matrix-vector unit with MW = K*K*C consumes them (FINN's
 * ConvolutionInputGenerator order).
 *
 * Math (golden function: instabnn.contract.window.window_beats). With x~ the map padded with PAD_VALUE,
 * OH = (H + 2*PAD - K)/STRIDE + 1 and OW = (W + 2*PAD - K)/STRIDE + 1 (integer division):
 *
 *     window(oy, ox)[(ky*K + kx)*C + c] = x~[oy*STRIDE + ky - PAD, ox*STRIDE + kx - PAD, c]
 *
 * Paired with the weight matrix whose row o, column (ky*K + kx)*C + c holds kernel w[o, c, ky, kx]
 * (instabnn.contract.window.conv_weight_matrix), the MVU computes the convolution.
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only; frames have a fixed number of beats, so no tlast). Elements are
 * ELEM_BITS-bit codes, element i of a beat at bits [i*ELEM_BITS +: ELEM_BITS] (instabnn.contract.packing):
 *   s_axis: H*W*CF beats per frame (CF = C/SIMD): pixel-major, row by row, channels minor; beat (h*W + w)*CF + cf
 *           carries channels cf*SIMD .. cf*SIMD + SIMD-1 of pixel (h, w).
 *   m_axis: OH*OW*K*K*CF beats per frame: for each output pixel (oy, ox) row by row, for each kernel position
 *           (ky, kx) (ky major), the CF channel beats; a position outside the map gives SIMD copies of PAD_VALUE.
 * Pad values: the binary network pads with -1 (code 0, ELEM_BITS = 1), the integer network with 0.
 *
 * Line buffer: a ring of ROWS full input rows (W*CF words of SIMD*ELEM_BITS bits each; one simple dual-port RAM
 * of ROWS*W*CF words with a registered read, which synthesis maps to BRAM or LUTRAM), with
 *     ROWS = max(K + STRIDE + 1, H - LO_LAST + K - PAD + 1),   LO_LAST = max(0, (OH-1)*STRIDE - PAD):
 * K rows for the current windows, STRIDE rows the writer fills for the next output row and one row of slack, so
 * that the writer and the reader never wait for each other at row boundaries when their rates are equal; and at a
 * frame boundary the rows from the last output row's first row to the end of the frame plus the K - PAD rows the
 * next frame's first output row needs, plus the row of slack. (For the 3x3 pad-1 layers: 5 rows at stride 1,
 * 6 at stride 2; 1x1 stride 2: 4 rows.) Full rows instead of (K-1) rows + K pixels keep the addressing a few
 * adders; the buffer is small for this network (e.g. 3x3, 16 binary channels, W = 32: 5 rows = 2.5 kbit).
 * The writer stores the input rows one after the other, across frames, and never looks at their contents; the
 * reader produces output row oy only when all input rows it needs, max(0, oy*S - P) .. min(H-1, oy*S - P + K - 1),
 * are complete, and releases rows it no longer needs at the end of each output row (at the end of a frame: all of
 * the frame's remaining rows, including rows no window uses, e.g. the last row of an even map with K = 1,
 * STRIDE = 2, which the writer may not even have received yet). Two counters of complete, unreleased rows: the
 * reader's (released when the last beat of an output row is issued) and the writer's (released one stage later,
 * when that beat has been read from the RAM, so a row is never overwritten before its last read).
 *
 * Cycle count: with s_axis always valid and m_axis always ready, the steady state takes exactly
 * max(H*W*CF, OH*OW*K*K*CF) cycles per frame (the input or the output side runs at one beat per clock without a
 * stall; the other side waits). The first frame after reset adds the fill of the first rows.
 * Latency: 4 cycles. If the reader waits for input rows, and the s_axis handshake at edge t completes the last row
 * that the next output row needs, that output row's first beat is issued at edge t+1 (the complete-row count is a
 * register), its address registered at t+1, the RAM read at t+2, the 2-entry output FIFO at t+3
 * (m_axis_tvalid high from here) and the earliest m_axis handshake is at edge t+4.
 * Flow control: a global pipeline enable, high while the output FIFO is not full. s_axis_tready and m_axis_tvalid
 * come from registers only (no combinational path between the two streams).
 *
 * Reset: rst (synchronous, active high) empties the line buffer, the pipeline and the output FIFO and restarts
 * both sides at the start of a frame; a partly received frame is discarded.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module sliding_window #(
    // channels
    parameter int C = 4,
    // input rows
    parameter int H = 6,
    // input columns
    parameter int W = 6,
    // kernel size (K x K)
    parameter int K = 3,
    // stride (rows and columns)
    parameter int STRIDE = 1,
    // padding on each side, 0 .. K-1
    parameter int PAD = 1,
    // channels per beat; must divide C
    parameter int SIMD = 2,
    // bits per element
    parameter int ELEM_BITS = 1,
    // code of the pad element, 0 .. 2^ELEM_BITS - 1 (bipolar -1 <-> 0)
    parameter int PAD_VALUE = 0,
    // stream data width
    localparam int DATA_W = SIMD * ELEM_BITS
) (
    input  wire logic               clk,
    input  wire logic               rst,

    /*
     * Input feature map
     */
    input  wire logic [DATA_W-1:0]  s_axis_tdata,
    input  wire logic               s_axis_tvalid,
    output wire logic               s_axis_tready,

    /*
     * Output windows
     */
    output wire logic [DATA_W-1:0]  m_axis_tdata,
    output wire logic               m_axis_tvalid,
    input  wire logic               m_axis_tready
);

// (illegal zero divisors are replaced by 1 here, so that elaboration reaches the $fatal checks below)
localparam int SIMD_D = SIMD > 0 ? SIMD : 1;
localparam int STRIDE_D = STRIDE > 0 ? STRIDE : 1;
localparam int ELEM_W = ELEM_BITS > 0 ? ELEM_BITS : 1;
localparam int CF = C / SIMD_D;                                    // channel folds: beats per pixel
localparam int OH = (H + 2*PAD - K) / STRIDE_D + 1;                // output rows
localparam int OW = (W + 2*PAD - K) / STRIDE_D + 1;                // output columns
localparam int ROW_WORDS = W * CF;                                 // RAM words per input row
localparam int LO_LAST = (OH-1)*STRIDE - PAD > 0 ? (OH-1)*STRIDE - PAD : 0;  // first row of the last output row
localparam int ROWS_STREAM = K + STRIDE + 1;
localparam int ROWS_FRAME = H - LO_LAST + K - PAD + 1;
localparam int ROWS = ROWS_STREAM > ROWS_FRAME ? ROWS_STREAM : ROWS_FRAME;  // line buffer rows
localparam int DEPTH = ROWS * ROW_WORDS;                           // line buffer words
localparam int ADDR_W = DEPTH > 1 ? $clog2(DEPTH) : 1;
localparam int SLOT_W = $clog2(ROWS);                              // ROWS >= 3
localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int K_W = K > 1 ? $clog2(K) : 1;
localparam int OX_W = OW > 1 ? $clog2(OW) : 1;
localparam int OY_W = OH > 1 ? $clog2(OH) : 1;
localparam int WPOS_W = ROW_WORDS > 1 ? $clog2(ROW_WORDS) : 1;
// signed input coordinates: -PAD .. max(H, W) + K
localparam int COORD_W = $clog2((H > W ? H : W) + 2*K + 2*STRIDE + 1) + 1;
// signed row counts: -H .. ROWS (at least COORD_W, so that row numbers extend into it)
localparam int RC_W = $clog2(H + ROWS + 1) + 1 > COORD_W ? $clog2(H + ROWS + 1) + 1 : COORD_W;

// check configuration
if (C < 1 || H < 1 || W < 1 || K < 1 || STRIDE < 1 || SIMD < 1) begin : g_check_sizes
    $fatal(0, "Error: C, H, W, K, STRIDE and SIMD must be >= 1 (instance %m)");
end
if (C % SIMD != 0) begin : g_check_simd
    $fatal(0, "Error: SIMD (%0d) must divide C (%0d) (instance %m)", SIMD, C);
end
if (PAD < 0 || PAD >= K) begin : g_check_pad
    $fatal(0, "Error: PAD (%0d) must be in [0, K-1] = [0, %0d] (instance %m)", PAD, K - 1);
end
if (H + 2*PAD < K || W + 2*PAD < K) begin : g_check_fit
    $fatal(0, "Error: the %0dx%0d kernel does not fit the padded %0dx%0d map (instance %m)", K, K, H + 2*PAD,
           W + 2*PAD);
end
if (ELEM_BITS < 1 || ELEM_BITS > 30) begin : g_check_elem_bits
    $fatal(0, "Error: ELEM_BITS (%0d) must be in [1, 30] (instance %m)", ELEM_BITS);
end
if (PAD_VALUE < 0 || (ELEM_BITS <= 30 && PAD_VALUE >= 2**ELEM_BITS)) begin : g_check_pad_value
    $fatal(0, "Error: PAD_VALUE (%0d) must be an ELEM_BITS-bit code in [0, %0d] (instance %m)", PAD_VALUE,
           2**ELEM_BITS - 1);
end

/*
 * Line buffer RAM (simple dual port, registered read)
 */
logic [DATA_W-1:0] line_mem[DEPTH];

/*
 * Row bookkeeping
 */
logic signed [RC_W-1:0] ready_rows_reg;   // reader's view: complete rows from its first row on
logic signed [RC_W-1:0] used_rows_reg;    // writer's view: complete rows not yet released after their last read

/*
 * Writer: input rows into the ring, one after the other
 */
logic [ADDR_W-1:0] waddr_reg;
logic [WPOS_W-1:0] wpos_reg;

// registers: there is room for a row (used_rows < ROWS, computed from the next count), the next word ends a row
logic tready_reg;
logic last_word_reg;

assign s_axis_tready = tready_reg;

wire logic write = s_axis_tvalid && s_axis_tready;
wire logic row_written = write && last_word_reg;
wire logic [WPOS_W-1:0] wpos_next = row_written ? '0 : wpos_reg + 1'b1;

always_ff @(posedge clk) begin
    if (write) begin
        line_mem[waddr_reg] <= s_axis_tdata;
        waddr_reg <= waddr_reg == ADDR_W'(DEPTH-1) ? '0 : waddr_reg + 1'b1;
        wpos_reg <= wpos_next;
        last_word_reg <= wpos_next == WPOS_W'(ROW_WORDS-1);
    end

    if (rst) begin
        waddr_reg <= '0;
        wpos_reg <= '0;
        last_word_reg <= ROW_WORDS == 1;
    end
end

/*
 * Reader: output position counters and the global pipeline enable
 */
logic [CF_W-1:0] cf_reg;
logic [K_W-1:0] kx_reg;
logic [K_W-1:0] ky_reg;
logic [OX_W-1:0] ox_reg;
logic [OY_W-1:0] oy_reg;
logic signed [COORD_W-1:0] ix0_reg;       // ox*STRIDE - PAD
logic signed [COORD_W-1:0] iy0_reg;       // oy*STRIDE - PAD
logic [SLOT_W-1:0] base_slot_reg;         // ring slot of row max(0, iy0)
wire logic out_full;                 // the output FIFO is full

wire logic advance = !out_full;

wire logic last_cf = cf_reg == CF_W'(CF-1);
wire logic last_kx = kx_reg == K_W'(K-1);
wire logic last_ky = ky_reg == K_W'(K-1);
wire logic last_ox = ox_reg == OX_W'(OW-1);
wire logic last_oy = oy_reg == OY_W'(OH-1);
wire logic first_of_row = ox_reg == '0 && ky_reg == '0 && kx_reg == '0 && cf_reg == '0;
wire logic last_of_row = last_cf && last_kx && last_ky && last_ox;

// the current output row's first input row lo = max(0, iy0). The rows it needs (need: rows lo .. min(H-1, iy0 + K-1))
// and releases once done (release_rows: up to the next output row's first row, or at the frame's last output row
// the frame's end) are registers, loaded from constant tables indexed by the next output row when the row changes,
// so that the issue decision starts from registers
wire logic signed [COORD_W-1:0] lo = iy0_reg < 0 ? '0 : iy0_reg;
wire logic signed [COORD_W-1:0] iy0_next = iy0_reg + COORD_W'(STRIDE);
wire logic [OY_W-1:0] oy_after = last_oy ? '0 : oy_reg + 1'b1;
wire logic signed [COORD_W-1:0] need_table[OH];
wire logic signed [COORD_W-1:0] release_table[OH];

for (genvar o = 0; o < OH; o = o + 1) begin : g_row_table
    localparam int Y0 = o * STRIDE - PAD;
    localparam int LO = Y0 > 0 ? Y0 : 0;
    localparam int HI = Y0 + K - 1 < H - 1 ? Y0 + K - 1 : H - 1;
    localparam int LO_NEXT = Y0 + STRIDE > 0 ? Y0 + STRIDE : 0;
    assign need_table[o] = COORD_W'(HI - LO + 1);
    assign release_table[o] = COORD_W'(o == OH - 1 ? H - LO : LO_NEXT - LO);
end

logic signed [COORD_W-1:0] need_reg;
logic signed [COORD_W-1:0] release_rows_reg;
wire logic signed [COORD_W-1:0] release_rows = release_rows_reg;

wire logic rows_ok = !first_of_row || ready_rows_reg >= RC_W'(need_reg);
wire logic issue = advance && rows_ok;
wire logic release_now = issue && last_of_row;

// slot after the release (release_rows <= ROWS)
wire logic [SLOT_W:0] base_slot_sum = {1'b0, base_slot_reg} + (SLOT_W+1)'(release_rows);
wire logic [SLOT_W-1:0] base_slot_next =
    base_slot_sum >= (SLOT_W+1)'(ROWS) ? SLOT_W'(base_slot_sum - (SLOT_W+1)'(ROWS)) : base_slot_sum[SLOT_W-1:0];

always_ff @(posedge clk) begin
    if (issue) begin
        cf_reg <= last_cf ? '0 : cf_reg + 1'b1;
        if (last_cf) begin
            kx_reg <= last_kx ? '0 : kx_reg + 1'b1;
            if (last_kx) begin
                ky_reg <= last_ky ? '0 : ky_reg + 1'b1;
                if (last_ky) begin
                    ox_reg <= last_ox ? '0 : ox_reg + 1'b1;
                    ix0_reg <= last_ox ? COORD_W'(-PAD) : ix0_reg + COORD_W'(STRIDE);
                    if (last_ox) begin
                        oy_reg <= last_oy ? '0 : oy_reg + 1'b1;
                        iy0_reg <= last_oy ? COORD_W'(-PAD) : iy0_next;
                        need_reg <= need_table[oy_after];
                        release_rows_reg <= release_table[oy_after];
                        base_slot_reg <= base_slot_next;
                    end
                end
            end
        end
    end

    if (rst) begin
        cf_reg <= '0;
        kx_reg <= '0;
        ky_reg <= '0;
        ox_reg <= '0;
        oy_reg <= '0;
        ix0_reg <= COORD_W'(-PAD);
        iy0_reg <= COORD_W'(-PAD);
        need_reg <= need_table[0];
        release_rows_reg <= release_table[0];
        base_slot_reg <= '0;
    end
end

/*
 * Stage A: input coordinates -> pad flag and RAM address (registered)
 */
wire logic signed [COORD_W-1:0] iy = iy0_reg + COORD_W'(ky_reg);
wire logic signed [COORD_W-1:0] ix = ix0_reg + COORD_W'(kx_reg);
wire logic is_pad = iy < 0 || iy > COORD_W'(H-1) || ix < 0 || ix > COORD_W'(W-1);
// ring slot of row iy: base slot + (iy - lo), modulo ROWS (iy - lo <= K-1 < ROWS)
wire logic [SLOT_W:0] slot_sum = {1'b0, base_slot_reg} + (SLOT_W+1)'(iy - lo);
wire logic [SLOT_W-1:0] slot =
    slot_sum >= (SLOT_W+1)'(ROWS) ? SLOT_W'(slot_sum - (SLOT_W+1)'(ROWS)) : slot_sum[SLOT_W-1:0];
wire logic [ADDR_W-1:0] raddr =
    ADDR_W'(slot) * ADDR_W'(ROW_WORDS) + ADDR_W'(ix) * ADDR_W'(CF) + ADDR_W'(cf_reg);

logic a_valid_reg;
logic a_pad_reg;
logic [ADDR_W-1:0] a_addr_reg;
logic signed [COORD_W-1:0] a_release_reg;   // rows released once this beat has been read (last beat of a row)

always_ff @(posedge clk) begin
    if (advance) begin
        a_valid_reg <= issue;
        a_pad_reg <= is_pad;
        a_addr_reg <= is_pad ? '0 : raddr;
        a_release_reg <= release_now ? release_rows : '0;
    end

    if (rst) begin
        a_valid_reg <= 1'b0;
        a_release_reg <= '0;
    end
end

/*
 * Stage B: RAM read (registered, enabled by the pipeline)
 */
logic b_valid_reg;
logic b_pad_reg;
logic [DATA_W-1:0] b_data_reg;

always_ff @(posedge clk) begin
    if (advance) begin
        b_valid_reg <= a_valid_reg;
        b_pad_reg <= a_pad_reg;
        b_data_reg <= line_mem[a_addr_reg];
    end

    if (rst) begin
        b_valid_reg <= 1'b0;
    end
end

/*
 * Row counters: +1 per written row; the reader's view -release at issue, the writer's once the beat is read
 */
wire logic signed [RC_W-1:0] written = RC_W'(row_written);
wire logic signed [RC_W-1:0] used_release = advance ? RC_W'(a_release_reg) : '0;

wire logic signed [RC_W-1:0] used_rows_next = used_rows_reg + written - used_release;

// both outcomes of the issue decision computed beside it (it only selects one)
wire logic signed [RC_W-1:0] ready_kept = ready_rows_reg + written;
wire logic signed [RC_W-1:0] ready_released = ready_kept - RC_W'(release_rows_reg);

always_ff @(posedge clk) begin
    ready_rows_reg <= release_now ? ready_released : ready_kept;
    used_rows_reg <= used_rows_next;
    tready_reg <= used_rows_next < RC_W'(ROWS);

    if (rst) begin
        ready_rows_reg <= '0;
        used_rows_reg <= '0;
        tready_reg <= 1'b1;
    end
end

/*
 * Output FIFO (2 entries): a full FIFO stops the reader pipeline
 */
localparam logic [DATA_W-1:0] PAD_WORD = DATA_W'({SIMD{ELEM_W'(PAD_VALUE)}});

wire logic out_push = advance && b_valid_reg;
output_fifo #(
    .WIDTH(DATA_W)
)
out_fifo_inst (
    .clk(clk),
    .rst(rst),
    .push(out_push),
    .push_data(b_pad_reg ? PAD_WORD : b_data_reg),
    .full(out_full),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
