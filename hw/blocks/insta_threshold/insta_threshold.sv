// SPDX-License-Identifier: BSD-3-Clause
/*
 * INSTA-Th threshold unit: the binarizer b = (q >= t[frame, c]) of a stream of frames, with the instance-aware
 * threshold t computed from the frame's own power sums (STATIC = 0), or a constant t per channel (STATIC = 1, RSign).
 *
 * Math (golden function: instabnn.contract.insta, the project's algorithm note Sec. 6). A frame is C channels
 * x N = H*W pixels of signed INPUT_BITS-bit integers q. Per channel c and frame, with the exact power sums
 * P_j = sum over the pixels of q^j and the fixed-point coefficients C_j (FRAC_j fraction bits, FRAC = max FRAC_j):
 *
 *     T_fx = sum_{j=0..3} C_j * P_j * 2^(FRAC - FRAC_j)   (P_0 = 1)
 *     t    = clamp(ceil(T_fx / 2^FRAC), q_min, q_max + 1)
 *     b    = (q >= t)     (1 <-> +1, 0 <-> -1; instabnn.contract.packing)
 *
 * STATIC = 1 is the special case C1 = C2 = C3 = 0 (instabnn.contract.insta.static_threshold_constants): t per
 * channel from C0 alone, no power sums, no frame buffer.
 *
 * SE = 1 is INSTA-Th+ (golden function: instabnn.contract.layers.ThresholdPlus.thresholds / binarize): the
 * polynomial gives the statistic s_c, an SE-like MLP across the channels and the g table give t:
 *
 *     s_c  = clamp(shift_round(sum_j C_j P_j 2^(FRAC-FRAC_j), FRAC - 8), 16 bits)        (se_input, SE_S_FRAC = 8)
 *     h_k  = clamp(shift_round(M1[k] sum_c W1[k][c] s_c, H_SHIFT), 0, 2^16 - 1)         (HIDDEN units, SE_H_FRAC = 8)
 *     z_c  = shift_round(M2[c] sum_k W2[c][k] h_k + B[c], Z_SHIFT)                       (G_IN_FRAC = 12)
 *     G_c  = g_lookup(g, z_c): 257-entry table on a 1/8 grid over [-16, 16], linear interpolation (G_OUT_FRAC = 14)
 *     t_c  = clamp(ceil((OFFSET[c] 2^14 + GAIN[c] G_c) / 2^T_FRAC), -2^(IB-1), 2^(IB-1))  (T_FRAC = frac + 14)
 *
 * (shift_round(v, n) = (v + 2^(n-1)) >>> n); se_mlp states every step and width up to G_c, the g_plus branch below
 * the map to t; instabnn.hw.blocks.insta_threshold.spec_plus derives the widths from worst-case bounds (t_fx is
 * TPLUS_BITS wide, exact). Everything else (streams, frame buffer, tokens, output stage) is the same for SE = 0
 * and 1.
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only; a frame has a fixed number of beats, so no tlast). FINN order:
 * pixel-major, channel-minor; beat i = pixel*CF + f (CF = C/PE channel folds) carries channels f*PE .. f*PE+PE-1 of
 * one pixel, lane pe = channel f*PE + pe:
 *   s_axis:   q, lane pe at bits [pe*INPUT_BITS +: INPUT_BITS] (two's complement); FRAME_BEATS = N*CF per frame.
 *   m_axis:   b, lane pe at bit pe, same order.
 *   m_axis_q: (SHORTCUT = 1) the q of the same beat as m_axis, for the block's residual shortcut: the frame buffer
 *             is the shortcut's delay line, so the network needs no second frame FIFO. Both outputs leave the unit
 *             in step (each has a 2-entry FIFO; a full one stops both). SHORTCUT = 0: m_axis_q_tvalid is 0.
 *
 * Architecture (STATIC = 0):
 *   - stats_accumulate: P1, P2, P3 per channel, exact (widths P1_BITS, P2_BITS, P3_BITS below, equal to
 *     InstaThConstants.power_sum_bits), PE lanes per clock, two banks of distributed RAM (frame parity); q^2 and
 *     q^3 on multipliers or (POWER_TABLE = 1) from constant tables in logic.
 *   - insta_threshold_compute: one multiplier, 3*LIMBS steps per channel, S = 3*C*LIMBS clocks per frame after the
 *     frame's sums are complete; writes the frame's thresholds into a two-bank threshold memory. SE = 1: se_mlp
 *     instead: phase A (the statistic, 3 steps per channel), phase B (HIDDEN*C multiply-accumulates, SE_SIMD per
 *     clock), phase C (C*HIDDEN on the same multipliers, then M2 and the g table), then two stages here: +7 [G_c,
 *     t_fx = OFFSET * 2^14 + GAIN * G_c], +8 [ceil, clamp into the lane register; lane_collector writes a fold's
 *     PE thresholds into the two-bank threshold memory]; from its start to its last threshold word COMPUTE_EDGES
 *     = 3C + 2*HIDDEN*C/SE_SIMD + 16 edges (S + 5 for SE = 0).
 *   - frame buffer: one circular buffer (simple dual-port block RAM, registered read) of BUF_DEPTH = FRAME_BEATS +
 *     ISSUE_LATENCY beats. A frame is read out (and compared) once its thresholds exist; meanwhile the next frame
 *     is written behind it. BUF_DEPTH is exactly the occupancy at full rate, so writes never overtake reads and
 *     the input never waits.
 *   - frame tokens (2-bit counters) keep the banks safe: a frame may start at the input only while a stats bank is
 *     free (its earlier user's sums have all been read), the threshold computation of a frame starts only while a
 *     threshold bank is free (the frame two back has been read out), the readout of a frame starts only once its
 *     thresholds are written. No timing assumption is needed for correctness; they only set the rate.
 *   - one comparator per PE lane, INPUT_BITS + 1 bits wide.
 *
 * Cycle count (s_axis always valid, outputs always ready): FRAME_BEATS = N*C/PE clocks per frame, provided
 * FRAME_BEATS >= S + 7 (the threshold computation and the bank hand-over fit in one frame time; SE = 1:
 * FRAME_BEATS >= COMPUTE_EDGES + 2); otherwise the threshold computation sets the rate (about S + 1 clocks per
 * frame; instabnn.hw.blocks.insta_threshold.spec and spec_plus give the exact figures).
 * Latency (STATIC = 0): a frame's first m_axis handshake follows the handshake of its last s_axis beat by
 * LATENCY = S + 15 edges; at full rate every beat leaves FRAME_BEATS - 1 + LATENCY edges after it entered:
 *   edge e: last beat accepted (buffer write, stats stage a) -> e+3 sums complete (stats done) -> e+4 token ->
 *   e+5 computation starts -> e+6 .. e+5+S steps issued -> e+10+S last threshold word written (done) ->
 *   e+11+S token -> e+12+S first read issued (ISSUE_LATENCY = S + 12; block RAM read, thresholds registered) ->
 *   e+13+S both registered once more -> e+14+S compare into the output FIFO (m_axis_tvalid) -> e+15+S earliest
 *   handshake. SE = 1: LATENCY = COMPUTE_EDGES + 10, the same steps with COMPUTE_EDGES in place of S + 5.
 * Latency (STATIC = 1): LATENCY = 2: handshake at edge e (q and the threshold word registered), compare into the
 * output FIFO at e+1, earliest m_axis handshake at e+2. One frame per FRAME_BEATS clocks.
 * Flow control: s_axis_tready, m_axis_tvalid and m_axis_q_tvalid are functions of registers only; backpressure on
 * an output stops the readout (and, once the buffer is full, the input); nothing is dropped or reordered.
 *
 * Memory-init file COEFF_FILE ($readmemh, generated by instabnn.hw.blocks.insta_threshold.spec; "//" comment lines allowed):
 *   C lines, line c = channel c's coefficients, fields C0 | C1 | C2 | C3 from the least significant bit, field j a
 *   two's-complement integer of COEFF_BITS_j bits (InstaThConstants.coeff_bits). STATIC = 1 reads C0 only.
 * SE = 1 also reads (generated by instabnn.hw.blocks.insta_threshold.spec_plus; layouts in se_mlp)
 *   CONST_FILE: C lines, line c = M2 | B | OFFSET | GAIN from the LSB (signed M2_BITS, B_BITS, OFFSET_BITS,
 *   GAIN_BITS bits); M1_FILE (HIDDEN lines), W1_FILE and W2_FILE (SE_SIMD weights a line), G_FILE (257 lines
 *   BASE|DELTA).
 *
 * Reset: rst (synchronous, active high) returns the unit to the start of a frame and empties the buffer, the
 * pipelines and the output FIFOs; partly received or buffered frames are discarded. The memories keep their
 * contents, which are never read before being rewritten.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module insta_threshold #(
    // channels C
    parameter int CHANNELS = 8,
    // channels per beat (parallel lanes); must divide CHANNELS
    parameter int PE = 4,
    // pixels per channel and frame, N = H*W
    parameter int PIXELS = 16,
    // signed width of the input values q (2 .. 16)
    parameter int INPUT_BITS = 8,
    // 0: INSTA-Th (per-frame thresholds); 1: static thresholds (RSign), C1..C3 ignored
    parameter int STATIC = 0,
    // 1: emit the buffered q on m_axis_q for the residual shortcut
    parameter int SHORTCUT = 0,
    // signed widths of the coefficients C0 .. C3 (InstaThConstants.coeff_bits)
    parameter int COEFF_BITS_0 = 16,
    parameter int COEFF_BITS_1 = 16,
    parameter int COEFF_BITS_2 = 16,
    parameter int COEFF_BITS_3 = 16,
    // fraction bits of C0 .. C3 (InstaThConstants.fracs)
    parameter int FRAC_0 = 8,
    parameter int FRAC_1 = 8,
    parameter int FRAC_2 = 8,
    parameter int FRAC_3 = 8,
    // signed width of T_fx (InstaThConstants.threshold_accumulator_bits); STATIC = 0 only
    parameter int TACC_BITS = 48,
    // limbs of the power sums in the threshold computation's multiplier (moment_poly; STATIC = 0 only)
    parameter int LIMBS = 1,
    // q^2 and q^3 of the power sums: 0 = multipliers, 1 = constant tables (stats_accumulate; STATIC = 0 only)
    parameter int POWER_TABLE = 0,
    // 1: INSTA-Th+ (se_mlp; STATIC = 0, LIMBS = 1); 0: the parameters below unused
    parameter int SE = 0,
    // hidden units of the SE-like MLP (C / r) and its multipliers (SE_SIMD divides CHANNELS and HIDDEN)
    parameter int HIDDEN = 1,
    parameter int SE_SIMD = 1,
    // signed widths of the SE weights W1, W2, multipliers M1, M2 and bias B; of its accumulators and products
    parameter int W1_BITS = 8,
    parameter int W2_BITS = 8,
    parameter int M1_BITS = 16,
    parameter int M2_BITS = 16,
    parameter int B_BITS = 24,
    parameter int ACC1_BITS = 27,
    parameter int Y1_BITS = 43,
    parameter int ACC2_BITS = 26,
    parameter int Y2_BITS = 43,
    // requantization shifts: mult_frac1 + SE_S_FRAC - SE_H_FRAC, mult_frac2 + SE_H_FRAC - G_IN_FRAC
    parameter int H_SHIFT = 14,
    parameter int Z_SHIFT = 10,
    // g table entry widths (BASE, DELTA); threshold affine map: widths of OFFSET, GAIN, t_fx, fraction of t_fx
    parameter int G_BITS = 17,
    parameter int G_DELTA_BITS = 12,
    parameter int OFFSET_BITS = 20,
    parameter int GAIN_BITS = 20,
    parameter int TPLUS_BITS = 40,
    parameter int T_FRAC = 24,
    // coefficient memory init file ($readmemh), layout above
    parameter COEFF_FILE = "",
    // SE = 1 only, layouts above
    parameter CONST_FILE = "",
    parameter M1_FILE = "",
    parameter W1_FILE = "",
    parameter W2_FILE = "",
    parameter G_FILE = "",
    // channel folds: beats per pixel
    localparam int CF = CHANNELS / PE,
    // beats per frame
    localparam int FRAME_BEATS = PIXELS * CF,
    // exact power-sum widths (= instabnn.contract.insta.power_sum_bits)
    localparam int P1_BITS = INPUT_BITS + $clog2(PIXELS),
    localparam int P2_BITS = 2 * (INPUT_BITS - 1) + $clog2(PIXELS + 1) + 1,
    localparam int P3_BITS = 3 * (INPUT_BITS - 1) + $clog2(PIXELS) + 1,
    // timing (see above)
    localparam int STATS_LATENCY = 3,
    localparam int COMPUTE_STEPS = 3 * CHANNELS * LIMBS,
    localparam int COMPUTE_PIPELINE = 5,
    localparam int COMPUTE_EDGES = SE != 0 ? 3 * CHANNELS + 2 * HIDDEN * CHANNELS / SE_SIMD + 16
                                           : COMPUTE_STEPS + COMPUTE_PIPELINE,
    localparam int ISSUE_LATENCY = STATS_LATENCY + 2 + COMPUTE_EDGES + 2,
    // read back by the testbench
    /* verilator lint_off UNUSEDPARAM */
    localparam int LATENCY = STATIC != 0 ? 2 : ISSUE_LATENCY + 3,
    /* verilator lint_on UNUSEDPARAM */
    // frame buffer depth in beats (STATIC = 0)
    localparam int BUF_DEPTH = FRAME_BEATS + ISSUE_LATENCY,
    // stream widths
    localparam int S_DATA_W = PE * INPUT_BITS,
    localparam int M_DATA_W = PE
) (
    input  wire logic                 clk,
    input  wire logic                 rst,

    /*
     * Input frames q
     */
    input  wire logic [S_DATA_W-1:0]  s_axis_tdata,
    input  wire logic                 s_axis_tvalid,
    output wire logic                 s_axis_tready,

    /*
     * Output bits b
     */
    output wire logic [M_DATA_W-1:0]  m_axis_tdata,
    output wire logic                 m_axis_tvalid,
    input  wire logic                 m_axis_tready,

    /*
     * Output q for the residual shortcut (SHORTCUT = 1)
     */
    output wire logic [S_DATA_W-1:0]  m_axis_q_tdata,
    output wire logic                 m_axis_q_tvalid,
    input  wire logic                 m_axis_q_tready
);

localparam int IB = INPUT_BITS;
localparam int TH_W = INPUT_BITS + 1;
localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int PIX_W = PIXELS > 1 ? $clog2(PIXELS) : 1;
localparam int CH_W = CHANNELS > 1 ? $clog2(CHANNELS) : 1;
localparam int COEFF_W = COEFF_BITS_0 + COEFF_BITS_1 + COEFF_BITS_2 + COEFF_BITS_3;

// check configuration
if (CHANNELS < 1 || PE < 1 || PIXELS < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS, PE and PIXELS must be >= 1 (instance %m)");
end
if (CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (INPUT_BITS < 2 || INPUT_BITS > 16) begin : g_check_input_bits
    $fatal(0, "Error: INPUT_BITS (%0d) must be in 2 .. 16 (instance %m)", INPUT_BITS);
end
if (STATIC != 0 && STATIC != 1) begin : g_check_static
    $fatal(0, "Error: STATIC (%0d) must be 0 or 1 (instance %m)", STATIC);
end
if (SE != 0 && SE != 1) begin : g_check_se
    $fatal(0, "Error: SE (%0d) must be 0 or 1 (instance %m)", SE);
end
if (SE != 0 && (STATIC != 0 || LIMBS != 1)) begin : g_check_se_mode
    $fatal(0, "Error: SE = 1 takes STATIC = 0 and LIMBS = 1, not %0d and %0d (instance %m)", STATIC, LIMBS);
end
if (SHORTCUT != 0 && SHORTCUT != 1) begin : g_check_shortcut
    $fatal(0, "Error: SHORTCUT (%0d) must be 0 or 1 (instance %m)", SHORTCUT);
end
if (COEFF_BITS_0 < 1 || COEFF_BITS_1 < 1 || COEFF_BITS_2 < 1 || COEFF_BITS_3 < 1) begin : g_check_coeff_bits
    $fatal(0, "Error: COEFF_BITS_0..3 must be >= 1 (instance %m)");
end
if (FRAC_0 < 0 || FRAC_1 < 0 || FRAC_2 < 0 || FRAC_3 < 0) begin : g_check_fracs
    $fatal(0, "Error: FRAC_0..3 must be >= 0 (instance %m)");
end
if (STATIC == 0 && TACC_BITS < P3_BITS) begin : g_check_tacc
    $fatal(0, "Error: TACC_BITS (%0d) narrower than P3 (%0d bits): see threshold_accumulator_bits (instance %m)",
           TACC_BITS, P3_BITS);
end
if (COEFF_FILE == "") begin : g_check_coeff_file
    $fatal(0, "Error: COEFF_FILE must name a $readmemh file (instance %m)");
end

/*
 * Output stage (both modes): stage 1 holds a beat's q and its PE thresholds; the compare goes into the output FIFO
 */
wire logic bits_full;                // the m_axis FIFO is full
wire logic q_full;                   // the m_axis_q FIFO is full (SHORTCUT = 1)

// pipeline enable: every output FIFO can take a beat
wire logic advance = !bits_full && (SHORTCUT == 0 || !q_full);

logic s1_valid_reg;
logic [S_DATA_W-1:0] s1_q_reg;
logic [PE*TH_W-1:0] s1_thr_reg;

wire logic [M_DATA_W-1:0] out_bits;

for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_cmp
    wire logic signed [TH_W-1:0] q_ext = TH_W'($signed(s1_q_reg[pe*IB +: IB]));
    wire logic signed [TH_W-1:0] thresh = $signed(s1_thr_reg[pe*TH_W +: TH_W]);
    assign out_bits[pe] = q_ext >= thresh;
end

wire logic out_push = advance && s1_valid_reg;

if (STATIC == 0) begin : g_insta

    /*
     * Input side: position in the frame, buffer write, frame start gated by a free stats bank
     */
    localparam int BUF_W = $clog2(BUF_DEPTH);
    localparam int COUNT_W = $clog2(BUF_DEPTH + 1);

    logic [CF_W-1:0] in_fold_reg;
    logic [PIX_W-1:0] in_pix_reg;
    logic in_bank_reg;
    logic [BUF_W-1:0] wr_ptr_reg;
    logic [COUNT_W-1:0] count_reg;       // beats in the buffer, written and not yet read
    logic [1:0] stats_used_reg;          // frames holding a stats bank: started at the input, sums not all read
    logic [1:0] stats_full_reg;          // frames with complete sums whose threshold computation has not started
    logic [1:0] thr_used_reg;            // frames holding a threshold bank: computation started, readout not done
    logic [1:0] thr_full_reg;            // frames with complete thresholds, readout not done
    // the ready's terms as registers, so that s_axis_tready is one LUT of registers
    logic in_frame_start_reg;            // in_pix_reg == 0 && in_fold_reg == 0
    logic buf_full_reg;                  // count_reg == BUF_DEPTH

    wire logic in_first_pixel = in_pix_reg == '0;
    wire logic in_frame_start = in_frame_start_reg;
    wire logic in_last_fold = in_fold_reg == CF_W'(CF-1);
    wire logic in_last_pixel = in_pix_reg == PIX_W'(PIXELS-1);
    wire logic in_last = in_last_pixel && in_last_fold;

    wire logic in_ready = !buf_full_reg && !(in_frame_start && stats_used_reg == 2'd2);
    wire logic accept = s_axis_tvalid && in_ready;

    assign s_axis_tready = in_ready;

    always_ff @(posedge clk) begin
        if (accept) begin
            in_fold_reg <= in_last_fold ? '0 : in_fold_reg + 1'b1;
            if (in_last_fold) begin
                in_pix_reg <= in_last_pixel ? '0 : in_pix_reg + 1'b1;
            end
            if (in_last) begin
                in_bank_reg <= !in_bank_reg;
            end
            in_frame_start_reg <= in_last;
            wr_ptr_reg <= wr_ptr_reg == BUF_W'(BUF_DEPTH-1) ? '0 : wr_ptr_reg + 1'b1;
        end

        if (rst) begin
            in_fold_reg <= '0;
            in_pix_reg <= '0;
            in_bank_reg <= 1'b0;
            in_frame_start_reg <= 1'b1;
            wr_ptr_reg <= '0;
        end
    end

    /*
     * Frame buffer: simple dual-port RAM, registered read (block RAM)
     */
    logic [S_DATA_W-1:0] buf_mem[BUF_DEPTH];

    always_ff @(posedge clk) begin
        if (accept) begin
            buf_mem[wr_ptr_reg] <= s_axis_tdata;
        end
    end

    /*
     * Power sums and threshold computation
     */
    localparam int SUM_W = P1_BITS + P2_BITS + P3_BITS;

    wire logic stats_done;
    wire logic sums_bank;
    wire logic [CF_W-1:0] sums_fold;
    wire logic [PE*SUM_W-1:0] sums;

    stats_accumulate #(
        .PE(PE),
        .CF(CF),
        .INPUT_BITS(INPUT_BITS),
        .P1_BITS(P1_BITS),
        .P2_BITS(P2_BITS),
        .P3_BITS(P3_BITS),
        .POWER_TABLE(POWER_TABLE)
    )
    stats_inst (
        .clk(clk),
        .rst(rst),
        .in_valid(accept),
        .in_data(s_axis_tdata),
        .in_fold(in_fold_reg),
        .in_first(in_first_pixel),
        .in_last(in_last),
        .in_bank(in_bank_reg),
        .done(stats_done),
        .rd_bank(sums_bank),
        .rd_fold(sums_fold),
        .rd_sums(sums)
    );

    wire logic compute_busy;
    wire logic compute_release;
    wire logic compute_done;
    wire logic compute_start = !compute_busy && stats_full_reg != 2'd0 && thr_used_reg != 2'd2;

    logic [CF_W-1:0] out_fold_reg;
    logic [PIX_W-1:0] out_pix_reg;
    logic out_bank_reg;
    wire logic [PE*TH_W-1:0] thr_word;

    if (SE == 0) begin : g_plain

        insta_threshold_compute #(
            .CHANNELS(CHANNELS),
            .PE(PE),
            .INPUT_BITS(INPUT_BITS),
            .P1_BITS(P1_BITS),
            .P2_BITS(P2_BITS),
            .P3_BITS(P3_BITS),
            .COEFF_BITS_0(COEFF_BITS_0),
            .COEFF_BITS_1(COEFF_BITS_1),
            .COEFF_BITS_2(COEFF_BITS_2),
            .COEFF_BITS_3(COEFF_BITS_3),
            .FRAC_0(FRAC_0),
            .FRAC_1(FRAC_1),
            .FRAC_2(FRAC_2),
            .FRAC_3(FRAC_3),
            .TACC_BITS(TACC_BITS),
            .LIMBS(LIMBS),
            .COEFF_FILE(COEFF_FILE)
        )
        compute_inst (
            .clk(clk),
            .rst(rst),
            .start(compute_start),
            .busy(compute_busy),
            .release_stats(compute_release),
            .done(compute_done),
            .sums_bank(sums_bank),
            .sums_fold(sums_fold),
            .sums(sums),
            .thr_rd_bank(out_bank_reg),
            .thr_rd_fold(out_fold_reg),
            .thr_rd_data(thr_word)
        );

    end else begin : g_plus

        /*
         * INSTA-Th+: phases A, B, C up to G_c (se_mlp); OFFSET | GAIN of the channel: the CONST_FILE bits above
         * M2 | B, carried with the channel's G_c
         */
        localparam int AFF_W = OFFSET_BITS + GAIN_BITS;
        localparam int G_OUT_FRAC = 14;

        wire logic [AFF_W-1:0] c_affine;
        wire logic c6_valid;
        wire logic signed [G_BITS:0] g_value;
        wire logic [AFF_W-1:0] c6_affine;
        wire logic c6_bank;
        wire logic [CF_W-1:0] c6_fold;
        wire logic c6_last_lane;
        wire logic c6_last_fold;

        se_mlp #(
            .CHANNELS(CHANNELS),
            .PE(PE),
            .HIDDEN(HIDDEN),
            .SE_SIMD(SE_SIMD),
            .P1_BITS(P1_BITS),
            .P2_BITS(P2_BITS),
            .P3_BITS(P3_BITS),
            .COEFF_BITS_0(COEFF_BITS_0),
            .COEFF_BITS_1(COEFF_BITS_1),
            .COEFF_BITS_2(COEFF_BITS_2),
            .COEFF_BITS_3(COEFF_BITS_3),
            .FRAC_0(FRAC_0),
            .FRAC_1(FRAC_1),
            .FRAC_2(FRAC_2),
            .FRAC_3(FRAC_3),
            .COEFF_EXTRA_BITS(0),
            .ACC_BITS(TACC_BITS),
            .W1_BITS(W1_BITS),
            .W2_BITS(W2_BITS),
            .M1_BITS(M1_BITS),
            .M2_BITS(M2_BITS),
            .B_BITS(B_BITS),
            .CONST_EXTRA_BITS(AFF_W),
            .ACC1_BITS(ACC1_BITS),
            .Y1_BITS(Y1_BITS),
            .ACC2_BITS(ACC2_BITS),
            .Y2_BITS(Y2_BITS),
            .H_SHIFT(H_SHIFT),
            .Z_SHIFT(Z_SHIFT),
            .G_BITS(G_BITS),
            .G_DELTA_BITS(G_DELTA_BITS),
            .SIDE_BITS(AFF_W),
            .COEFF_FILE(COEFF_FILE),
            .CONST_FILE(CONST_FILE),
            .M1_FILE(M1_FILE),
            .W1_FILE(W1_FILE),
            .W2_FILE(W2_FILE),
            .G_FILE(G_FILE)
        )
        se_inst (
            .clk(clk),
            .rst(rst),
            .start(compute_start),
            .busy(compute_busy),
            .release_stats(compute_release),
            .sums_bank(sums_bank),
            .sums_fold(sums_fold),
            .sums(sums),
            /* verilator lint_off PINCONNECTEMPTY */
            .row(),
            /* verilator lint_on PINCONNECTEMPTY */
            .row_const_extra(c_affine),
            .row_side(c_affine),
            .out_valid(c6_valid),
            .out_g(g_value),
            .out_side(c6_affine),
            .out_bank(c6_bank),
            .out_fold(c6_fold),
            .out_last_lane(c6_last_lane),
            .out_last_fold(c6_last_fold)
        );

        /*
         * Phase C, stage 7: t_fx = OFFSET * 2^14 + GAIN * G
         */
        wire logic signed [OFFSET_BITS-1:0] offset = $signed(c6_affine[0 +: OFFSET_BITS]);
        wire logic signed [GAIN_BITS-1:0] gain = $signed(c6_affine[OFFSET_BITS +: GAIN_BITS]);

        logic c7_valid_reg;
        logic c7_bank_reg;
        logic [CF_W-1:0] c7_fold_reg;
        logic c7_last_lane_reg;
        logic c7_last_fold_reg;
        logic signed [TPLUS_BITS-1:0] c7_t_reg;

        always_ff @(posedge clk) begin
            c7_valid_reg <= c6_valid;
            c7_bank_reg <= c6_bank;
            c7_fold_reg <= c6_fold;
            c7_last_lane_reg <= c6_last_lane;
            c7_last_fold_reg <= c6_last_fold;
            c7_t_reg <= (TPLUS_BITS'(offset) <<< G_OUT_FRAC) + TPLUS_BITS'(gain) * TPLUS_BITS'(g_value);

            if (rst) begin
                c7_valid_reg <= 1'b0;
            end
        end

        /*
         * Stage 8: t = clamp(ceil(t_fx / 2^T_FRAC)); the lanes of a fold are collected, then written as one word
         * into the two-bank threshold memory (done pulses after the frame's last word)
         */
        wire logic [TH_W-1:0] t;

        threshold_ceil_clamp #(
            .IN_W(TPLUS_BITS),
            .FRAC(T_FRAC),
            .INPUT_BITS(INPUT_BITS)
        )
        ceil_clamp_inst (
            .value(c7_t_reg),
            .t(t)
        );

        lane_collector #(
            .PE(PE),
            .CF(CF),
            .LANE_BITS(TH_W)
        )
        collect_inst (
            .clk(clk),
            .rst(rst),
            .in_valid(c7_valid_reg),
            .in_value(t),
            .in_bank(c7_bank_reg),
            .in_fold(c7_fold_reg),
            .in_last_lane(c7_last_lane_reg),
            .in_last_fold(c7_last_fold_reg),
            .done(compute_done),
            .rd_bank(out_bank_reg),
            .rd_fold(out_fold_reg),
            .rd_data(thr_word)
        );

    end

    /*
     * Readout: once a frame's thresholds exist, one beat per clock (while the output FIFOs take them)
     */
    logic [BUF_W-1:0] rd_ptr_reg;
    // the buffer's read register (block RAM) and the thresholds, registered once more into s1_* so that only a
    // register follows the block RAM's clock-to-out
    logic r_valid_reg;
    logic [S_DATA_W-1:0] r_q_reg;
    logic [PE*TH_W-1:0] r_thr_reg;

    wire logic out_last_fold = out_fold_reg == CF_W'(CF-1);
    wire logic out_last_pixel = out_pix_reg == PIX_W'(PIXELS-1);
    wire logic issue = advance && thr_full_reg != 2'd0;
    wire logic out_frame_end = issue && out_last_fold && out_last_pixel;

    always_ff @(posedge clk) begin
        if (issue) begin
            out_fold_reg <= out_last_fold ? '0 : out_fold_reg + 1'b1;
            if (out_last_fold) begin
                out_pix_reg <= out_last_pixel ? '0 : out_pix_reg + 1'b1;
            end
            if (out_frame_end) begin
                out_bank_reg <= !out_bank_reg;
            end
            rd_ptr_reg <= rd_ptr_reg == BUF_W'(BUF_DEPTH-1) ? '0 : rd_ptr_reg + 1'b1;
        end
        if (advance) begin
            r_valid_reg <= issue;
            r_q_reg <= buf_mem[rd_ptr_reg];
            r_thr_reg <= thr_word;
            s1_valid_reg <= r_valid_reg;
            s1_q_reg <= r_q_reg;
            s1_thr_reg <= r_thr_reg;
        end

        count_reg <= count_reg + COUNT_W'(accept) - COUNT_W'(issue);
        // count_reg + accept - issue == BUF_DEPTH, without the adder (a full buffer accepts nothing)
        buf_full_reg <= !issue && (accept ? count_reg == COUNT_W'(BUF_DEPTH - 1) : buf_full_reg);
        stats_used_reg <= stats_used_reg + 2'(accept && in_frame_start) - 2'(compute_release);
        stats_full_reg <= stats_full_reg + 2'(stats_done) - 2'(compute_start);
        thr_used_reg <= thr_used_reg + 2'(compute_start) - 2'(out_frame_end);
        thr_full_reg <= thr_full_reg + 2'(compute_done) - 2'(out_frame_end);

        if (rst) begin
            out_fold_reg <= '0;
            out_pix_reg <= '0;
            out_bank_reg <= 1'b0;
            rd_ptr_reg <= '0;
            r_valid_reg <= 1'b0;
            s1_valid_reg <= 1'b0;
            count_reg <= '0;
            buf_full_reg <= 1'b0;
            stats_used_reg <= '0;
            stats_full_reg <= '0;
            thr_used_reg <= '0;
            thr_full_reg <= '0;
        end
    end

end else begin : g_static

    /*
     * Static thresholds: t of the beat's PE channels from C0 (asynchronous ROM reads), registered with q
     */
    logic [COEFF_W-1:0] coeff_mem[CHANNELS];

    initial begin
        $readmemh(COEFF_FILE, coeff_mem);
    end

    logic [CF_W-1:0] in_fold_reg;
    wire logic in_last_fold = in_fold_reg == CF_W'(CF-1);
    wire logic accept = s_axis_tvalid && advance;
    wire logic [PE*TH_W-1:0] thr_word;

    assign s_axis_tready = advance;

    for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_lane
        wire logic [CH_W-1:0] chan = CH_W'(in_fold_reg * PE + pe);
        wire logic [COEFF_BITS_0-1:0] coeff_0 = coeff_mem[chan][COEFF_BITS_0-1:0];

        threshold_ceil_clamp #(
            .IN_W(COEFF_BITS_0),
            .FRAC(FRAC_0),
            .INPUT_BITS(INPUT_BITS)
        )
        ceil_clamp_inst (
            .value(coeff_0),
            .t(thr_word[pe*TH_W +: TH_W])
        );
    end

    always_ff @(posedge clk) begin
        if (accept) begin
            in_fold_reg <= in_last_fold ? '0 : in_fold_reg + 1'b1;
        end
        if (advance) begin
            s1_valid_reg <= accept;
            s1_q_reg <= s_axis_tdata;
            s1_thr_reg <= thr_word;
        end

        if (rst) begin
            in_fold_reg <= '0;
            s1_valid_reg <= 1'b0;
        end
    end

end

/*
 * Output FIFOs (2 entries each): a full FIFO stops the pipeline; tvalid comes from the occupancy register
 */
output_fifo #(
    .WIDTH(M_DATA_W)
)
bits_fifo_inst (
    .clk(clk),
    .rst(rst),
    .push(out_push),
    .push_data(out_bits),
    .full(bits_full),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

if (SHORTCUT != 0) begin : g_shortcut

    output_fifo #(
        .WIDTH(S_DATA_W)
    )
    q_fifo_inst (
        .clk(clk),
        .rst(rst),
        .push(out_push),
        .push_data(s1_q_reg),
        .full(q_full),
        .m_axis_tdata(m_axis_q_tdata),
        .m_axis_tvalid(m_axis_q_tvalid),
        .m_axis_tready(m_axis_q_tready)
    );

end else begin : g_no_shortcut

    wire logic unused_q_tready = m_axis_q_tready;

    assign q_full = 1'b0;

    assign m_axis_q_tdata = '0;
    assign m_axis_q_tvalid = 1'b0;

end

endmodule

`resetall
