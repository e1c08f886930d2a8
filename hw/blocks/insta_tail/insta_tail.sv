// SPDX-License-Identifier: BSD-3-Clause
/*
 * Residual block tail with INSTA-PReLU: the binary conv's accumulator, scaled and shifted, plus the shortcut, minus
 * an instance-aware shift T[frame, c], through a PReLU, requantized to the residual stream.
 *
 * Math (golden function: instabnn.contract.layers.ResidualActivation, act = "insta", se = None, shortcut =
 * "shift" or "proj", stat_source = "own" or "reuse"; docs/arithmetic.md, "INSTA-PReLU"). Per channel c, with
 * constants fixed at F fraction bits:
 *
 *     Y = MULT[c] * acc + BIAS[c] + SC
 *     SC = sc << SHORTCUT_SHIFT                   (SHORTCUT_PROJ = 0: identity or average-pool shortcut)
 *          SHORTCUT_MULT[c] * sc                  (SHORTCUT_PROJ = 1: sc = acc_p of a 1x1 projection)
 *     v  = clamp((Y + 2^(OUT_SHIFT-1)) >> OUT_SHIFT, STAT_BITS)    (STAT_REUSE = 0: own statistic, STAT_BITS =
 *                                                                    OUT_BITS + 2, STAT_PIXELS = PIXELS)
 *          the block input q from s_axis_stat                       (STAT_REUSE = 1: STAT_PIXELS, STAT_BITS of q)
 *     P_j = sum over the frame's pixels of v^j (j = 1, 2, 3; exact)
 *     Z = C0 2^(FRAC-FRAC_0) + sum_j C_j P_j 2^(FRAC-FRAC_j);  G = g table at Z (interpolated);
 *     T[frame, c] = MEAN[c] + ((GAIN[c] * G + 2^13) >> 14)        (insta_shift_compute)
 *   SE = 1 (INSTA-PReLU+, golden se not None; se_mlp, then the map below): the polynomial gives the statistic s
 *     (rounded to SE_S_FRAC = 8 bits, clamped to 16 bits), the SE-like MLP across the channels gives
 *     z = shift_round(M2 W2 clip(shift_round(M1 W1 s)) + B) with G_IN_FRAC bits, G = g table at z, T as above.
 *     D = Y - T
 *     P = D                                       if D >= 0
 *         floor(SLOPE[c] * D / 2^SLOPE_FRAC)      otherwise   (SLOPE_FRAC = 16: arithmetic shift)
 *     q = clamp((P + 2^(OUT_SHIFT-1)) >> OUT_SHIFT, OUT_BITS)  (round half up; OUT_SHIFT = F + e_out >= 1)
 *
 * Widths (all from instabnn.hw.blocks.insta_tail.spec.InstaTailSpec): D_BITS holds Y, T and D
 * (ResidualActivation.pre_activation_bits); Y_BITS <= D_BITS holds Y alone (the frame buffer's lanes); Y and D are
 * computed modulo 2^D_BITS (exact, as they fit). P_BITS = max(D_BITS, SLOPE_BITS + D_BITS - SLOPE_FRAC), O_BITS =
 * max(P_BITS, OUT_SHIFT) + 2. The power sums have the exact widths P1_BITS, P2_BITS, P3_BITS of STAT_BITS-bit values
 * over STAT_PIXELS pixels (instabnn.contract.insta.power_sum_bits).
 *
 * Streams (AXI4-Stream, tdata/tvalid/tready only; frames have fixed lengths, no tlast). FINN order: pixel-major,
 * channel-minor; beat i = pixel*CF + f (CF = C/PE channel folds; PE must divide C) carries channels f*PE ..
 * f*PE+PE-1, lane pe = channel f*PE + pe at bits [pe*W +: W] (two's complement):
 *   s_axis_acc:  acc, W = ACC_BITS, FRAME_BEATS = PIXELS*CF beats per frame.
 *   s_axis_sc:   the shortcut integer (proj: acc_p), W = SC_BITS, same order. Joined with s_axis_acc beat by beat
 *                (s_axis_acc_tready = ready && s_axis_sc_tvalid and the other way round).
 *   s_axis_stat: STAT_REUSE = 1: the block input q, W = STAT_BITS, STAT_BEATS = STAT_PIXELS*CF beats per frame
 *                (STAT_PIXELS = 4 PIXELS after a stride-2 convolution); frame n's statistic precedes nothing in
 *                particular: the acc/sc beats of frame n wait until T of frame n exist. STAT_REUSE = 0: unused,
 *                s_axis_stat_tready = 0.
 *   m_axis:      q, W = OUT_BITS, same order as acc.
 *
 * Architecture:
 *   - stats_accumulate (P1..P3, two banks; q^2 and q^3 on multipliers or, POWER_TABLE = 1, from tables) and
 *     insta_shift_compute (one multiplier, S = 3*C*LIMBS steps per frame, the g ROM, two multipliers for the
 *     interpolation and the gain; two banks of T in distributed RAM). G_BRAM = 1 puts the g ROM into block RAM
 *     (a synthesis attribute; the spec decides per unit, InstaTailSpec.g_bram).
 *   - own (STAT_REUSE = 0): a front pipeline computes Y of every accepted beat (one multiplier per lane, a second
 *     in proj mode) and writes Y into the frame buffer and v into the power sums, FRONT_LATENCY = 5 edges after the
 *     handshake, without stalls. The frame buffer (simple dual-port block RAM, registered read) holds BUF_DEPTH =
 *     FRAME_BEATS + ISSUE_LATENCY beats of Y, exactly the occupancy at full rate; the input is taken only while the
 *     buffer has room (counting the beats in the front pipeline), so writes never overtake reads. A frame is read
 *     out once its T exist: D = Y - T, the slope product (one multiplier per lane), round, clamp.
 *   - reuse (STAT_REUSE = 1): no frame buffer. The statistic stream feeds the power sums as it arrives; an acc/sc
 *     beat is taken once its frame's T exist and goes through the residual_tail pipeline with GAMMA = T.
 *   - frame tokens (2-bit counters) keep the banks safe as in insta_threshold: a statistic frame starts (own: at
 *     the acc/sc input) only while a stats bank is free, the shift computation of a frame starts only while a T
 *     bank is free (the frame two back has been consumed), a frame is consumed only once its T are written.
 *   - the back pipeline stalls as a whole under one enable (the 2-entry output FIFO is not full).
 *
 * Cycle count (inputs always valid, output always ready): the period P of instabnn.hw.blocks.insta_tail.spec
 * (InstaTailSpec.cycles_per_frame): FRAME_BEATS clocks per frame where FRAME_BEATS >= S + 14 (own; reuse also
 * needs STAT_BEATS <= FRAME_BEATS and STAT_BEATS >= S + 6), otherwise set by the shift computation or the
 * statistic stream.
 * Latency (own): a frame's first m_axis handshake follows the handshake of its last acc/sc beat by LATENCY =
 * S + 31 edges; at full rate every beat leaves FRAME_BEATS - 1 + LATENCY edges after it entered:
 *   edge e: last beat accepted -> e+5 Y into the buffer, v into the sums -> e+8 sums complete -> e+9 token ->
 *   e+10 computation starts -> e+11 .. e+10+S steps -> e+22+S last T word written -> e+23+S token -> e+24+S
 *   first readout issued (ISSUE_LATENCY = S + 24; buffer read, T and SLOPE registered) -> e+25+S the same
 *   registered once more -> e+26+S D -> e+27+S slope chunk products -> e+28+S slope product -> e+29+S round ->
 *   e+30+S clamp into the output FIFO -> e+31+S earliest handshake.
 * Latency (reuse): LATENCY = 8 edges from an acc/sc handshake to its m_axis handshake (constants and T registered,
 *   chunk products, products, D, slope chunk products, slope product, round, clamp into the FIFO, handshake); the
 *   acc/sc beats of frame n can be taken
 *   from STAT_LATENCY = S + 19 edges after the handshake of frame n's last statistic beat.
 * Flow control: every tready depends on registers and on the other joined input's tvalid only; m_axis_tvalid
 * comes from a register; nothing is dropped or reordered.
 *
 * Memory-init files ($readmemh, generated by instabnn.hw.blocks.insta_tail.spec; "//" comment lines allowed):
 *   CONST_FILE: CF lines, line f holds all PE lanes of channel fold f; lane pe at bits [pe*CONST_W +: CONST_W]
 *               holds channel f*PE + pe's MULT | BIAS | SLOPE from the least significant bit (MULT_BITS, BIAS_BITS,
 *               SLOPE_BITS), in proj mode a fourth field SHORTCUT_MULT (SHORTCUT_MULT_BITS) above SLOPE.
 *   COEFF_FILE: C lines, line c = C0 | C1 | C2 | C3 | MEAN | GAIN of channel c (insta_shift_compute).
 *   G_FILE:     257 lines, line i = BASE | DELTA of the g table (insta_shift_compute).
 *   SE = 1 only (layouts in se_mlp): SE_CONST_FILE (C lines M2 | B from the LSB, M2_BITS and B_BITS), M1_FILE,
 *               W1_FILE, W2_FILE; se_mlp's phase A reads C0 .. C3 of COEFF_FILE, its phase C MEAN | GAIN.
 * Timing with SE = 1 (LIMBS = 1): se_mlp's phases A, B, C (MEAN and GAIN read at phase C's +3 stage, with M2 * o_c
 * + B), then two stages in the g_se branch: +7 [G_c, GAIN * G_c], +8 [T = MEAN + shift_round(GAIN * G_c, 14) into
 * the lane register; lane_collector writes a fold's PE shifts into the two-bank T memory]. The shift computation
 * takes COMPUTE_EDGES = 3*C + 2*HIDDEN*C/SE_SIMD + 16 edges from its start to its last T word (instead of 3*C + 12)
 * and may restart 3*C + 2*HIDDEN*C/SE_SIMD + 9 edges after a start (instead of 3*C + 1); ISSUE_LATENCY and LATENCY
 * grow by the difference (InstaTailSpec).
 *
 * Reset: rst (synchronous, active high) returns the unit to the start of a frame on every stream and empties the
 * pipelines, the frame buffer and the output FIFO; partly received frames are discarded. The memories keep their
 * contents, which are never read before being rewritten.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module insta_tail #(
    // channels C
    parameter int CHANNELS = 8,
    // channels per beat (parallel lanes); must divide CHANNELS
    parameter int PE = 4,
    // pixels per output frame H*W
    parameter int PIXELS = 16,
    // signed width of the accumulator lanes (2 .. 32)
    parameter int ACC_BITS = 8,
    // signed width of the shortcut lanes (2 .. 32)
    parameter int SC_BITS = 8,
    // signed width of the output lanes q (2 .. 32)
    parameter int OUT_BITS = 8,
    // signed widths of the per-channel constants MULT, BIAS, SLOPE (1 .. 48 each)
    parameter int MULT_BITS = 16,
    parameter int BIAS_BITS = 16,
    parameter int SLOPE_BITS = 18,
    // shortcut alignment: SC = sc << SHORTCUT_SHIFT (>= 0; shift mode only)
    parameter int SHORTCUT_SHIFT = 4,
    // output rounding shift F + e_out (>= 1)
    parameter int OUT_SHIFT = 8,
    // signed width of Y, T and D (ResidualActivation.pre_activation_bits; 2 .. 64)
    parameter int D_BITS = 32,
    // signed width of Y (2 .. D_BITS)
    parameter int Y_BITS = 30,
    // statistic source: 0 = own (v from Y), 1 = reuse (s_axis_stat)
    parameter int STAT_REUSE = 0,
    // pixels per statistic frame (own: PIXELS)
    parameter int STAT_PIXELS = 16,
    // signed width of the statistic values (2 .. 16; own: OUT_BITS + 2)
    parameter int STAT_BITS = 10,
    // the polynomial: signed coefficient widths and fraction bits (MomentPolynomial), Z's width
    parameter int COEFF_BITS_0 = 16,
    parameter int COEFF_BITS_1 = 16,
    parameter int COEFF_BITS_2 = 16,
    parameter int COEFF_BITS_3 = 16,
    parameter int FRAC_0 = 24,
    parameter int FRAC_1 = 24,
    parameter int FRAC_2 = 24,
    parameter int FRAC_3 = 24,
    parameter int ZACC_BITS = 48,
    // limbs of the power sums in the shift computation's multiplier (moment_poly; SE = 0 only)
    parameter int LIMBS = 1,
    // q^2 and q^3 of the power sums: 0 = multipliers, 1 = constant tables (stats_accumulate; STAT_BITS <= 8)
    parameter int POWER_TABLE = 0,
    // signed widths of shift_mean, shift_gain, the g table's BASE and DELTA, and T (1 .. D_BITS)
    parameter int MEAN_BITS = 16,
    parameter int GAIN_BITS = 16,
    parameter int G_BITS = 17,
    parameter int G_DELTA_BITS = 12,
    parameter int T_BITS = 20,
    // shortcut mode: 0 = shift, 1 = 1x1 projection (SC = SHORTCUT_MULT[c] * sc)
    parameter int SHORTCUT_PROJ = 0,
    // signed width of SHORTCUT_MULT (1 .. 48; proj mode only)
    parameter int SHORTCUT_MULT_BITS = 16,
    // 1: the g ROM in block RAM (g_table_interp; SE = 0 only: se_mlp keeps its table in logic)
    parameter int G_BRAM = 0,
    // memory init files ($readmemh), layouts above
    parameter CONST_FILE = "",
    parameter COEFF_FILE = "",
    parameter G_FILE = "",
    // INSTA-PReLU+ (SE = 1): the SE-like MLP between the statistic and the g table (se_mlp);
    // SE = 0: INSTA-PReLU, the parameters below unused
    parameter int SE = 0,
    // hidden units of the SE MLP, its multipliers (SE_SIMD divides CHANNELS and HIDDEN)
    parameter int HIDDEN = 1,
    parameter int SE_SIMD = 1,
    // signed widths of the SE weights, multipliers and bias; of a_k, M1*a_k, o_c, M2*o_c + B
    parameter int W1_BITS = 8,
    parameter int W2_BITS = 8,
    parameter int M1_BITS = 16,
    parameter int M2_BITS = 16,
    parameter int B_BITS = 24,
    parameter int ACC1_BITS = 27,
    parameter int Y1_BITS = 43,
    parameter int ACC2_BITS = 26,
    parameter int Y2_BITS = 43,
    // requantization shifts of h and z (>= 1)
    parameter int H_SHIFT = 14,
    parameter int Z_SHIFT = 10,
    // SE memory init files (se_mlp)
    parameter SE_CONST_FILE = "",
    parameter M1_FILE = "",
    parameter W1_FILE = "",
    parameter W2_FILE = "",
    // fraction bits of the slopes (instabnn.contract.layers.SLOPE_FRAC)
    localparam int SLOPE_FRAC = 16,
    // channel folds: beats per pixel
    localparam int CF = CHANNELS / PE,
    // beats per frame (acc, sc, m_axis) and per statistic frame
    localparam int FRAME_BEATS = PIXELS * CF,
    /* verilator lint_off UNUSEDPARAM */
    localparam int STAT_BEATS = STAT_PIXELS * CF,
    /* verilator lint_on UNUSEDPARAM */
    // width of P = D or the shifted slope product, and of P + 2^(OUT_SHIFT-1), as prelu_requant derives them (read
    // back by the testbench against the spec)
    /* verilator lint_off UNUSEDPARAM */
    localparam int P_BITS = D_BITS > SLOPE_BITS + D_BITS - SLOPE_FRAC ? D_BITS : SLOPE_BITS + D_BITS - SLOPE_FRAC,
    localparam int O_BITS = (P_BITS > OUT_SHIFT ? P_BITS : OUT_SHIFT) + 2,
    /* verilator lint_on UNUSEDPARAM */
    // one constant lane
    localparam int CONST_W = MULT_BITS + BIAS_BITS + SLOPE_BITS + (SHORTCUT_PROJ != 0 ? SHORTCUT_MULT_BITS : 0),
    // exact power-sum widths (= instabnn.contract.insta.power_sum_bits)
    localparam int P1_BITS = STAT_BITS + $clog2(STAT_PIXELS),
    localparam int P2_BITS = 2 * (STAT_BITS - 1) + $clog2(STAT_PIXELS + 1) + 1,
    localparam int P3_BITS = 3 * (STAT_BITS - 1) + $clog2(STAT_PIXELS) + 1,
    // timing (see above)
    localparam int FRONT_LATENCY = STAT_REUSE != 0 ? 0 : 5,
    localparam int STATS_LATENCY = 3,
    localparam int COMPUTE_STEPS = 3 * CHANNELS * LIMBS,
    localparam int COMPUTE_PIPELINE = 12,
    // SE: the SE MLP's 2*HIDDEN*C/SE_SIMD steps, waits and pipeline (se_mlp and the g_se stages)
    localparam int COMPUTE_EDGES = SE != 0 ? COMPUTE_STEPS + 2 * HIDDEN * CHANNELS / SE_SIMD + 16
                                           : COMPUTE_STEPS + COMPUTE_PIPELINE,
    localparam int ISSUE_LATENCY = FRONT_LATENCY + STATS_LATENCY + 2 + COMPUTE_EDGES + 2,
    // read back by the testbench
    /* verilator lint_off UNUSEDPARAM */
    localparam int LATENCY = STAT_REUSE != 0 ? 8 : ISSUE_LATENCY + 7,
    localparam int STAT_LATENCY = ISSUE_LATENCY,
    /* verilator lint_on UNUSEDPARAM */
    // frame buffer depth in beats (own)
    localparam int BUF_DEPTH = STAT_REUSE != 0 ? 1 : FRAME_BEATS + ISSUE_LATENCY,
    // stream widths
    localparam int ACC_DATA_W = PE * ACC_BITS,
    localparam int SC_DATA_W = PE * SC_BITS,
    localparam int STAT_DATA_W = PE * STAT_BITS,
    localparam int M_DATA_W = PE * OUT_BITS
) (
    input  wire logic                   clk,
    input  wire logic                   rst,

    /*
     * Accumulators of the block's binary convolution
     */
    input  wire logic [ACC_DATA_W-1:0]  s_axis_acc_tdata,
    input  wire logic                   s_axis_acc_tvalid,
    output wire logic                   s_axis_acc_tready,

    /*
     * Shortcut integers (identity or pooled; proj: the projection's accumulator), same order
     */
    input  wire logic [SC_DATA_W-1:0]   s_axis_sc_tdata,
    input  wire logic                   s_axis_sc_tvalid,
    output wire logic                   s_axis_sc_tready,

    /*
     * Statistic input (STAT_REUSE = 1): the block input q
     */
    input  wire logic [STAT_DATA_W-1:0] s_axis_stat_tdata,
    input  wire logic                   s_axis_stat_tvalid,
    output wire logic                   s_axis_stat_tready,

    /*
     * Output residual stream q
     */
    output wire logic [M_DATA_W-1:0]    m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready
);

localparam int CF_W = CF > 1 ? $clog2(CF) : 1;
localparam int PIX_W = PIXELS > 1 ? $clog2(PIXELS) : 1;
localparam int SPIX_W = STAT_PIXELS > 1 ? $clog2(STAT_PIXELS) : 1;
localparam int MA_BITS = MULT_BITS + ACC_BITS;
localparam int PR_BITS = MA_BITS < D_BITS ? MA_BITS : D_BITS;
localparam int SM_BITS = SHORTCUT_MULT_BITS + SC_BITS;
localparam int SR_BITS = SM_BITS < D_BITS ? SM_BITS : D_BITS;
localparam int SLOPE_BASE = MULT_BITS + BIAS_BITS;
localparam int SMULT_BASE = MULT_BITS + BIAS_BITS + SLOPE_BITS;
localparam int SUM_W = P1_BITS + P2_BITS + P3_BITS;
// Y + 2^(OUT_SHIFT-1) for the own statistic
localparam int YH_BITS = (Y_BITS > OUT_SHIFT ? Y_BITS : OUT_SHIFT) + 2;

// check configuration
if (CHANNELS < 1 || PE < 1 || PIXELS < 1 || STAT_PIXELS < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS, PE, PIXELS and STAT_PIXELS must be >= 1 (instance %m)");
end
if (PE >= 1 && CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (ACC_BITS < 2 || ACC_BITS > 32 || SC_BITS < 2 || SC_BITS > 32 || OUT_BITS < 2 || OUT_BITS > 32)
begin : g_check_lane_bits
    $fatal(0, "Error: ACC_BITS (%0d), SC_BITS (%0d), OUT_BITS (%0d) must be in 2 .. 32 (instance %m)",
           ACC_BITS, SC_BITS, OUT_BITS);
end
if (MULT_BITS < 1 || BIAS_BITS < 1 || SLOPE_BITS < 1 || MULT_BITS > 48 || BIAS_BITS > 48 || SLOPE_BITS > 48)
begin : g_check_const_bits
    $fatal(0, "Error: MULT_BITS, BIAS_BITS, SLOPE_BITS must be in 1 .. 48 (instance %m)");
end
if (SHORTCUT_PROJ != 0 && SHORTCUT_PROJ != 1) begin : g_check_shortcut_proj
    $fatal(0, "Error: SHORTCUT_PROJ (%0d) must be 0 or 1 (instance %m)", SHORTCUT_PROJ);
end
if (SHORTCUT_MULT_BITS < 1 || SHORTCUT_MULT_BITS > 48) begin : g_check_shortcut_mult_bits
    $fatal(0, "Error: SHORTCUT_MULT_BITS (%0d) must be in 1 .. 48 (instance %m)", SHORTCUT_MULT_BITS);
end
if (SHORTCUT_SHIFT < 0) begin : g_check_shortcut_shift
    $fatal(0, "Error: SHORTCUT_SHIFT (%0d) must be >= 0 (instance %m)", SHORTCUT_SHIFT);
end
if (OUT_SHIFT < 1) begin : g_check_out_shift
    $fatal(0, "Error: OUT_SHIFT (%0d) must be >= 1 (instance %m)", OUT_SHIFT);
end
if (D_BITS > 64 || Y_BITS > D_BITS || (SHORTCUT_PROJ == 0 && Y_BITS < SC_BITS + SHORTCUT_SHIFT) || Y_BITS < 2)
begin : g_check_d_bits
    $fatal(0,
           "Error: need 2 (shift mode: SC_BITS + SHORTCUT_SHIFT) <= Y_BITS (%0d) <= D_BITS (%0d) <= 64 (instance %m)",
           Y_BITS, D_BITS);
end
if (STAT_REUSE != 0 && STAT_REUSE != 1) begin : g_check_stat_reuse
    $fatal(0, "Error: STAT_REUSE (%0d) must be 0 or 1 (instance %m)", STAT_REUSE);
end
if (STAT_BITS < 2 || STAT_BITS > 16) begin : g_check_stat_bits
    $fatal(0, "Error: STAT_BITS (%0d) must be in 2 .. 16 (instance %m)", STAT_BITS);
end
if (STAT_REUSE == 0 && (STAT_PIXELS != PIXELS || STAT_BITS != OUT_BITS + 2)) begin : g_check_own_stat
    $fatal(0,
           "Error: own statistics need STAT_PIXELS (%0d) = PIXELS (%0d), STAT_BITS (%0d) = OUT_BITS + 2 (instance %m)",
           STAT_PIXELS, PIXELS, STAT_BITS);
end
if (ZACC_BITS < P3_BITS || ZACC_BITS > 128) begin : g_check_zacc
    $fatal(0, "Error: ZACC_BITS (%0d) must be in P3's width (%0d) .. 128 (instance %m)", ZACC_BITS, P3_BITS);
end
if (T_BITS < 1 || T_BITS > D_BITS) begin : g_check_t_bits
    $fatal(0, "Error: T_BITS (%0d) must be in 1 .. D_BITS (%0d) (instance %m)", T_BITS, D_BITS);
end
if (SE != 0 && LIMBS != 1) begin : g_check_se_limbs
    $fatal(0, "Error: LIMBS (%0d) must be 1 with SE = 1 (instance %m)", LIMBS);
end
if (G_BRAM != 0 && (SE != 0 || G_BRAM != 1)) begin : g_check_g_bram
    $fatal(0, "Error: G_BRAM (%0d) must be 0, or 1 with SE = 0 (instance %m)", G_BRAM);
end
if (SE != 0 && SE != 1) begin : g_check_se
    $fatal(0, "Error: SE (%0d) must be 0 or 1 (instance %m)", SE);
end
if (CONST_FILE == "") begin : g_check_const_file
    $fatal(0, "Error: CONST_FILE must name a $readmemh file (instance %m)");
end

/*
 * Output FIFO occupancy and the back-pipeline enable
 */
wire logic full;                     // the output FIFO is full
wire logic advance = !full;

/*
 * Frame tokens, shared by both modes
 */
logic [1:0] stats_used_reg;          // frames holding a stats bank: started, sums not all read
logic [1:0] stats_full_reg;          // frames with complete sums whose shift computation has not started
logic [1:0] thr_used_reg;            // frames holding a T bank: computation started, not all consumed
logic [1:0] thr_full_reg;            // frames with complete T, not all consumed

/*
 * Statistic input of stats_accumulate (driven by the mode below)
 */
logic st_valid;
logic [STAT_DATA_W-1:0] st_data;
logic [CF_W-1:0] st_fold;
logic st_first;
logic st_last;
logic st_bank;
logic st_frame_start;                // a statistic frame starts at this edge (takes a stats bank)

wire logic stats_done;
wire logic sums_bank;
wire logic [CF_W-1:0] sums_fold;
wire logic [PE*SUM_W-1:0] sums;

stats_accumulate #(
    .PE(PE),
    .CF(CF),
    .INPUT_BITS(STAT_BITS),
    .P1_BITS(P1_BITS),
    .P2_BITS(P2_BITS),
    .P3_BITS(P3_BITS),
    .POWER_TABLE(POWER_TABLE)
)
stats_inst (
    .clk(clk),
    .rst(rst),
    .in_valid(st_valid),
    .in_data(st_data),
    .in_fold(st_fold),
    .in_first(st_first),
    .in_last(st_last),
    .in_bank(st_bank),
    .done(stats_done),
    .rd_bank(sums_bank),
    .rd_fold(sums_fold),
    .rd_sums(sums)
);

wire logic compute_busy;
wire logic compute_release;
wire logic compute_done;
wire logic compute_start = !compute_busy && stats_full_reg != 2'd0 && thr_used_reg != 2'd2;

// the consumer of T (own: the readout; reuse: the acc/sc input) and its position in the frame
logic consume;
logic [CF_W-1:0] cons_fold_reg;
logic [PIX_W-1:0] cons_pix_reg;
logic cons_bank_reg;
wire logic [PE*T_BITS-1:0] thr_word;

if (SE == 0) begin : g_plain

    insta_shift_compute #(
        .CHANNELS(CHANNELS),
        .PE(PE),
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
        .ZACC_BITS(ZACC_BITS),
        .LIMBS(LIMBS),
        .MEAN_BITS(MEAN_BITS),
        .GAIN_BITS(GAIN_BITS),
        .G_BITS(G_BITS),
        .G_DELTA_BITS(G_DELTA_BITS),
        .T_BITS(T_BITS),
        .G_BRAM(G_BRAM),
        .COEFF_FILE(COEFF_FILE),
        .G_FILE(G_FILE)
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
        .thr_rd_bank(cons_bank_reg),
        .thr_rd_fold(cons_fold_reg),
        .thr_rd_data(thr_word)
    );

end else begin : g_se

    /*
     * INSTA-PReLU+: phases A, B, C up to G_c (se_mlp); MEAN | GAIN of the channel: an asynchronous read of the
     * coefficient ROM (se_mlp's moment_poly reads C0 .. C3 of the same file; synthesis keeps only the columns each
     * reads), carried with the channel's G_c
     */
    localparam int CH_W = CHANNELS > 1 ? $clog2(CHANNELS) : 1;
    localparam int AFF_W = MEAN_BITS + GAIN_BITS;
    localparam int MEAN_BASE = COEFF_BITS_0 + COEFF_BITS_1 + COEFF_BITS_2 + COEFF_BITS_3;
    localparam int COEFF_W = MEAN_BASE + AFF_W;
    localparam int G_OUT_FRAC = 14;

    logic [COEFF_W-1:0] coeff_mem[CHANNELS];

    initial begin
        $readmemh(COEFF_FILE, coeff_mem);
    end

    wire logic [CH_W-1:0] c_row;
    wire logic [COEFF_W-1:0] c_coeff_word = coeff_mem[c_row];
    wire logic [AFF_W-1:0] c_affine = c_coeff_word[MEAN_BASE +: AFF_W];
    wire logic unused_c_coeff = ^c_coeff_word[MEAN_BASE-1:0];  // phase C reads MEAN and GAIN only

    wire logic c6_valid;
    /* verilator lint_off UNUSEDSIGNAL */
    wire logic signed [G_BITS:0] g_wide;  // G sign-extended by one bit: G fits G_BITS
    /* verilator lint_on UNUSEDSIGNAL */
    wire logic [AFF_W-1:0] c6_affine;     // {GAIN, MEAN} of the channel
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
        .COEFF_EXTRA_BITS(AFF_W),
        .ACC_BITS(ZACC_BITS),
        .W1_BITS(W1_BITS),
        .W2_BITS(W2_BITS),
        .M1_BITS(M1_BITS),
        .M2_BITS(M2_BITS),
        .B_BITS(B_BITS),
        .CONST_EXTRA_BITS(0),
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
        .CONST_FILE(SE_CONST_FILE),
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
        .row(c_row),
        /* verilator lint_off PINCONNECTEMPTY */
        .row_const_extra(),
        /* verilator lint_on PINCONNECTEMPTY */
        .row_side(c_affine),
        .out_valid(c6_valid),
        .out_g(g_wide),
        .out_side(c6_affine),
        .out_bank(c6_bank),
        .out_fold(c6_fold),
        .out_last_lane(c6_last_lane),
        .out_last_fold(c6_last_fold)
    );

    /*
     * Phase C, stage 7: GAIN * G (G lies between BASE and BASE + DELTA: fits G_BITS)
     */
    localparam int GP_W = GAIN_BITS + G_BITS;
    wire logic signed [G_BITS-1:0] g_value = G_BITS'(g_wide);
    wire logic signed [GAIN_BITS-1:0] gain = $signed(c6_affine[MEAN_BITS +: GAIN_BITS]);

    logic c7_valid_reg;
    logic c7_bank_reg;
    logic [CF_W-1:0] c7_fold_reg;
    logic c7_last_lane_reg;
    logic c7_last_fold_reg;
    logic signed [GP_W-1:0] c7_gp_reg;
    logic signed [MEAN_BITS-1:0] c7_mean_reg;

    always_ff @(posedge clk) begin
        c7_valid_reg <= c6_valid;
        c7_bank_reg <= c6_bank;
        c7_fold_reg <= c6_fold;
        c7_last_lane_reg <= c6_last_lane;
        c7_last_fold_reg <= c6_last_fold;
        c7_gp_reg <= GP_W'(gain) * GP_W'(g_value);
        c7_mean_reg <= $signed(c6_affine[0 +: MEAN_BITS]);

        if (rst) begin
            c7_valid_reg <= 1'b0;
        end
    end

    /*
     * Stage 8: T = MEAN + shift_round(GAIN * G, G_OUT_FRAC); the lanes of a fold are collected, then written as one
     * word into the two-bank T memory (done pulses after the frame's last word)
     */
    localparam int TT_W = (MEAN_BITS > GP_W ? MEAN_BITS : GP_W) + 2;
    wire logic signed [TT_W-1:0] gp_half = TT_W'(1) <<< (G_OUT_FRAC - 1);
    wire logic [T_BITS-1:0] t = T_BITS'(TT_W'(c7_mean_reg) + ((TT_W'(c7_gp_reg) + gp_half) >>> G_OUT_FRAC));

    lane_collector #(
        .PE(PE),
        .CF(CF),
        .LANE_BITS(T_BITS)
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
        .rd_bank(cons_bank_reg),
        .rd_fold(cons_fold_reg),
        .rd_data(thr_word)
    );

end

wire logic cons_last_fold = cons_fold_reg == CF_W'(CF-1);
wire logic cons_last_pixel = cons_pix_reg == PIX_W'(PIXELS-1);
wire logic cons_frame_end = consume && cons_last_fold && cons_last_pixel;

always_ff @(posedge clk) begin
    if (consume) begin
        cons_fold_reg <= cons_last_fold ? '0 : cons_fold_reg + 1'b1;
        if (cons_last_fold) begin
            cons_pix_reg <= cons_last_pixel ? '0 : cons_pix_reg + 1'b1;
        end
        if (cons_frame_end) begin
            cons_bank_reg <= !cons_bank_reg;
        end
    end

    stats_used_reg <= stats_used_reg + 2'(st_frame_start) - 2'(compute_release);
    stats_full_reg <= stats_full_reg + 2'(stats_done) - 2'(compute_start);
    thr_used_reg <= thr_used_reg + 2'(compute_start) - 2'(cons_frame_end);
    thr_full_reg <= thr_full_reg + 2'(compute_done) - 2'(cons_frame_end);

    if (rst) begin
        cons_fold_reg <= '0;
        cons_pix_reg <= '0;
        cons_bank_reg <= 1'b0;
        stats_used_reg <= '0;
        stats_full_reg <= '0;
        thr_used_reg <= '0;
        thr_full_reg <= '0;
    end
end

/*
 * Constant memory: one word (all PE lanes) per channel fold
 */
logic [PE*CONST_W-1:0] const_mem[CF];

initial begin
    $readmemh(CONST_FILE, const_mem);
end

/*
 * Pre pipeline (per lane): p1 = operands (registered), p2 = chunk products and offset, p3 = products (split_mult),
 * p4 = their sum. own: Y, never stalls (enable 1); reuse: D = Y - T, stalls with the back pipeline (enable advance).
 */
logic pre_en;
logic [ACC_DATA_W-1:0] p1_acc_reg;
logic [SC_DATA_W-1:0] p1_sc_reg;
logic [PE*CONST_W-1:0] p1_const_reg;
logic [PE*T_BITS-1:0] p1_thr_reg;    // reuse: the frame's T of the fold (own: 0)

// tail input (per lane): D and SLOPE, valid in d_valid
logic d_valid;
logic [PE*D_BITS-1:0] d_lanes;
logic [PE*SLOPE_BITS-1:0] d_slopes;
// own: Y from p4 (the buffer write and the statistic)
wire logic [PE*D_BITS-1:0] p4_sums;
wire logic [PE*SLOPE_BITS-1:0] p4_slopes;

/*
 * Back pipeline valid bits: m (slope chunk products), n (slope product), o (rounded), push into the FIFO
 */
logic m_valid_reg;
logic n_valid_reg;
logic o_valid_reg;

always_ff @(posedge clk) begin
    if (advance) begin
        m_valid_reg <= d_valid;
        n_valid_reg <= m_valid_reg;
        o_valid_reg <= n_valid_reg;
    end

    if (rst) begin
        m_valid_reg <= 1'b0;
        n_valid_reg <= 1'b0;
        o_valid_reg <= 1'b0;
    end
end

wire logic [M_DATA_W-1:0] out_data;

if (STAT_REUSE == 0) begin : g_own

    /*
     * Input side: join, position in the frame, a statistic frame starts with the acc/sc frame
     */
    localparam int BUF_W = BUF_DEPTH > 1 ? $clog2(BUF_DEPTH) : 1;
    localparam int COUNT_W = $clog2(BUF_DEPTH + 1);

    logic [CF_W-1:0] in_fold_reg;
    logic [PIX_W-1:0] in_pix_reg;
    logic in_bank_reg;
    logic [COUNT_W-1:0] buf_count_reg;   // beats accepted (in the front pipeline or the buffer), not yet issued
    // the ready's terms as registers, so that the join's tready (into the FIFO in front) is one LUT of registers
    logic in_frame_start_reg;            // in_pix_reg == 0 && in_fold_reg == 0
    logic buf_full_reg;                  // buf_count_reg == BUF_DEPTH

    wire logic in_first_pixel = in_pix_reg == '0;
    wire logic in_frame_start = in_frame_start_reg;
    wire logic in_last_fold = in_fold_reg == CF_W'(CF-1);
    wire logic in_last_pixel = in_pix_reg == PIX_W'(PIXELS-1);
    wire logic in_last = in_last_pixel && in_last_fold;

    wire logic in_ready = !buf_full_reg && !(in_frame_start && stats_used_reg == 2'd2);
    wire logic accept = s_axis_acc_tvalid && s_axis_sc_tvalid && in_ready;

    assign s_axis_acc_tready = in_ready && s_axis_sc_tvalid;
    assign s_axis_sc_tready = in_ready && s_axis_acc_tvalid;
    assign s_axis_stat_tready = 1'b0;
    assign pre_en = 1'b1;
    assign st_frame_start = accept && in_frame_start;

    wire logic unused_stat = ^{s_axis_stat_tdata, s_axis_stat_tvalid};

    // front pipeline control: stages 1 .. 5 (stage 5 writes the buffer and enters the sums)
    logic [4:0] f_valid_reg;
    logic [CF_W-1:0] f_fold_reg[5];
    logic [4:0] f_first_reg;
    logic [4:0] f_last_reg;
    logic [4:0] f_bank_reg;

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
        end
        f_valid_reg <= {f_valid_reg[3:0], accept};
        f_fold_reg[0] <= in_fold_reg;
        f_first_reg <= {f_first_reg[3:0], in_first_pixel};
        f_last_reg <= {f_last_reg[3:0], in_last};
        f_bank_reg <= {f_bank_reg[3:0], in_bank_reg};
        for (int k = 1; k < 5; k = k + 1) begin
            f_fold_reg[k] <= f_fold_reg[k-1];
        end

        p1_acc_reg <= s_axis_acc_tdata;
        p1_sc_reg <= s_axis_sc_tdata;
        p1_const_reg <= const_mem[in_fold_reg];

        if (rst) begin
            in_fold_reg <= '0;
            in_pix_reg <= '0;
            in_bank_reg <= 1'b0;
            in_frame_start_reg <= 1'b1;
            f_valid_reg <= '0;
        end
    end

    assign p1_thr_reg = '0;

    /*
     * Stage 5: Y and Y + 2^(OUT_SHIFT-1); v = clamp(round(Y / 2^OUT_SHIFT), STAT_BITS) into the sums, Y into the buffer
     */
    logic [PE*Y_BITS-1:0] f4_y_reg;
    logic [PE*YH_BITS-1:0] f4_yh_reg;

    localparam logic signed [YH_BITS-1:0] V_MAX = YH_BITS'((64'sd1 <<< (STAT_BITS - 1)) - 1);
    localparam logic signed [YH_BITS-1:0] V_MIN = YH_BITS'(-(64'sd1 <<< (STAT_BITS - 1)));

    for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_stat_lane
        wire logic signed [Y_BITS-1:0] y = $signed(p4_sums[pe*D_BITS +: Y_BITS]);  // Y fits Y_BITS
        wire logic signed [YH_BITS-1:0] y_half = YH_BITS'(1) <<< (OUT_SHIFT - 1);
        wire logic signed [YH_BITS-1:0] yh = $signed(f4_yh_reg[pe*YH_BITS +: YH_BITS]);
        wire logic signed [YH_BITS-1:0] v_round = yh >>> OUT_SHIFT;

        always_ff @(posedge clk) begin
            f4_y_reg[pe*Y_BITS +: Y_BITS] <= y;
            f4_yh_reg[pe*YH_BITS +: YH_BITS] <= YH_BITS'(y) + y_half;
        end

        assign st_data[pe*STAT_BITS +: STAT_BITS] = v_round > V_MAX ? STAT_BITS'(V_MAX)
                                                    : v_round < V_MIN ? STAT_BITS'(V_MIN) : STAT_BITS'(v_round);
    end

    wire logic unused_p4 = ^{p4_slopes, p4_sums};  // own: only Y's low Y_BITS are read

    assign st_valid = f_valid_reg[4];
    assign st_fold = f_fold_reg[4];
    assign st_first = f_first_reg[4];
    assign st_last = f_last_reg[4];
    assign st_bank = f_bank_reg[4];

    /*
     * Frame buffer: simple dual-port RAM, registered read (block RAM)
     */
    logic [PE*Y_BITS-1:0] buf_mem[BUF_DEPTH];
    logic [BUF_W-1:0] wr_ptr_reg;
    logic [BUF_W-1:0] rd_ptr_reg;

    always_ff @(posedge clk) begin
        if (st_valid) begin
            buf_mem[wr_ptr_reg] <= f4_y_reg;
            wr_ptr_reg <= wr_ptr_reg == BUF_W'(BUF_DEPTH-1) ? '0 : wr_ptr_reg + 1'b1;
        end
        if (rst) begin
            wr_ptr_reg <= '0;
        end
    end

    /*
     * Readout: once a frame's T exist, one beat per clock while the output FIFO takes them
     */
    wire logic issue = advance && thr_full_reg != 2'd0;
    assign consume = issue;

    // r1: the buffer's read register (block RAM), T and the constants; r2: the same registered once more, so that
    // only a register follows the block RAM's clock-to-out
    logic r1_valid_reg;
    logic [PE*Y_BITS-1:0] r1_y_reg;
    logic [PE*T_BITS-1:0] r1_thr_reg;
    logic [PE*CONST_W-1:0] r1_const_reg;
    logic r2_valid_reg;
    logic [PE*Y_BITS-1:0] r2_y_reg;
    logic [PE*T_BITS-1:0] r2_thr_reg;
    logic [PE*SLOPE_BITS-1:0] r2_slope_reg;
    logic d_valid_reg;
    logic [PE*D_BITS-1:0] d_reg;
    logic [PE*SLOPE_BITS-1:0] d_slope_reg;

    always_ff @(posedge clk) begin
        if (issue) begin
            rd_ptr_reg <= rd_ptr_reg == BUF_W'(BUF_DEPTH-1) ? '0 : rd_ptr_reg + 1'b1;
        end
        if (advance) begin
            r1_valid_reg <= issue;
            r1_y_reg <= buf_mem[rd_ptr_reg];
            r1_thr_reg <= thr_word;
            r1_const_reg <= const_mem[cons_fold_reg];
            r2_valid_reg <= r1_valid_reg;
            r2_y_reg <= r1_y_reg;
            r2_thr_reg <= r1_thr_reg;
            d_valid_reg <= r2_valid_reg;
        end
        buf_count_reg <= buf_count_reg + COUNT_W'(accept) - COUNT_W'(issue);
        // buf_count_reg + accept - issue == BUF_DEPTH, without the adder (a full buffer accepts nothing)
        buf_full_reg <= !issue && (accept ? buf_count_reg == COUNT_W'(BUF_DEPTH - 1) : buf_full_reg);

        if (rst) begin
            rd_ptr_reg <= '0;
            r1_valid_reg <= 1'b0;
            r2_valid_reg <= 1'b0;
            d_valid_reg <= 1'b0;
            buf_count_reg <= '0;
            buf_full_reg <= 1'b0;
        end
    end

    for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_d_lane
        wire logic signed [Y_BITS-1:0] y = $signed(r2_y_reg[pe*Y_BITS +: Y_BITS]);
        wire logic signed [T_BITS-1:0] t = $signed(r2_thr_reg[pe*T_BITS +: T_BITS]);

        always_ff @(posedge clk) begin
            if (advance) begin
                r2_slope_reg[pe*SLOPE_BITS +: SLOPE_BITS] <= r1_const_reg[pe*CONST_W + SLOPE_BASE +: SLOPE_BITS];
                d_reg[pe*D_BITS +: D_BITS] <= D_BITS'(y) - D_BITS'(t);
                d_slope_reg[pe*SLOPE_BITS +: SLOPE_BITS] <= r2_slope_reg[pe*SLOPE_BITS +: SLOPE_BITS];
            end
        end

    end

    wire logic unused_r1_const = ^r1_const_reg;  // only SLOPE is read here

    assign d_valid = d_valid_reg;
    assign d_lanes = d_reg;
    assign d_slopes = d_slope_reg;

end else begin : g_reuse

    /*
     * Statistic input: position in the statistic frame, a frame starts only while a stats bank is free
     */
    logic [CF_W-1:0] st_fold_reg;
    logic [SPIX_W-1:0] st_pix_reg;
    logic st_bank_reg;

    wire logic st_first_pixel = st_pix_reg == '0;
    wire logic st_start = st_first_pixel && st_fold_reg == '0;
    wire logic st_last_fold = st_fold_reg == CF_W'(CF-1);
    wire logic st_last_pixel = st_pix_reg == SPIX_W'(STAT_PIXELS-1);
    wire logic st_ready = !(st_start && stats_used_reg == 2'd2);
    wire logic st_accept = s_axis_stat_tvalid && st_ready;

    assign s_axis_stat_tready = st_ready;
    assign st_frame_start = st_accept && st_start;
    assign st_valid = st_accept;
    assign st_data = s_axis_stat_tdata;
    assign st_fold = st_fold_reg;
    assign st_first = st_first_pixel;
    assign st_last = st_last_pixel && st_last_fold;
    assign st_bank = st_bank_reg;

    always_ff @(posedge clk) begin
        if (st_accept) begin
            st_fold_reg <= st_last_fold ? '0 : st_fold_reg + 1'b1;
            if (st_last_fold) begin
                st_pix_reg <= st_last_pixel ? '0 : st_pix_reg + 1'b1;
            end
            if (st_last_pixel && st_last_fold) begin
                st_bank_reg <= !st_bank_reg;
            end
        end
        if (rst) begin
            st_fold_reg <= '0;
            st_pix_reg <= '0;
            st_bank_reg <= 1'b0;
        end
    end

    /*
     * acc/sc input: taken once the frame's T exist, into the stalling pipeline
     */
    wire logic in_ready = advance && thr_full_reg != 2'd0;
    wire logic accept = s_axis_acc_tvalid && s_axis_sc_tvalid && in_ready;

    assign s_axis_acc_tready = in_ready && s_axis_sc_tvalid;
    assign s_axis_sc_tready = in_ready && s_axis_acc_tvalid;
    assign consume = accept;
    assign pre_en = advance;

    logic p1_valid_reg;
    logic p2_valid_reg;
    logic p3_valid_reg;
    logic p4_valid_reg;

    always_ff @(posedge clk) begin
        if (advance) begin
            p1_valid_reg <= accept;
            p2_valid_reg <= p1_valid_reg;
            p3_valid_reg <= p2_valid_reg;
            p4_valid_reg <= p3_valid_reg;
            p1_acc_reg <= s_axis_acc_tdata;
            p1_sc_reg <= s_axis_sc_tdata;
            p1_const_reg <= const_mem[cons_fold_reg];
            p1_thr_reg <= thr_word;
        end
        if (rst) begin
            p1_valid_reg <= 1'b0;
            p2_valid_reg <= 1'b0;
            p3_valid_reg <= 1'b0;
            p4_valid_reg <= 1'b0;
        end
    end

    assign d_valid = p4_valid_reg;
    assign d_lanes = p4_sums;
    assign d_slopes = p4_slopes;

end

/*
 * Lanes: pre pipeline (Y or D) and the back pipeline's arithmetic
 */
for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_lane
    localparam int BASE = pe * CONST_W;

    wire logic signed [MULT_BITS-1:0] mult = $signed(p1_const_reg[BASE +: MULT_BITS]);
    wire logic signed [BIAS_BITS-1:0] bias = $signed(p1_const_reg[BASE + MULT_BITS +: BIAS_BITS]);
    wire logic signed [SLOPE_BITS-1:0] slope_1 = $signed(p1_const_reg[BASE + SLOPE_BASE +: SLOPE_BITS]);
    wire logic signed [ACC_BITS-1:0] acc = $signed(p1_acc_reg[pe*ACC_BITS +: ACC_BITS]);
    wire logic signed [SC_BITS-1:0] sc = $signed(p1_sc_reg[pe*SC_BITS +: SC_BITS]);
    wire logic signed [T_BITS-1:0] t_1 = $signed(p1_thr_reg[pe*T_BITS +: T_BITS]);

    // p2 / p3: MULT * acc (split_mult: chunk products, product), the offset and SLOPE alongside; p4: the sum
    wire logic signed [PR_BITS-1:0] p3_prod;
    logic signed [D_BITS-1:0] p2_offset_reg, p3_offset_reg;
    logic signed [SLOPE_BITS-1:0] p2_slope_reg, p3_slope_reg;
    logic signed [D_BITS-1:0] p4_sum_reg;
    logic signed [SLOPE_BITS-1:0] p4_slope_reg;

    split_mult #(
        .A_BITS(MULT_BITS),
        .B_BITS(ACC_BITS),
        .P_BITS(PR_BITS)
    )
    mult_inst (
        .clk(clk),
        .en(pre_en),
        .a(mult),
        .b(acc),
        .p(p3_prod)
    );

    // the shortcut on the common grid, bias and T folded in (modulo 2^D_BITS: the sum fits); sum_next is Y or D
    wire logic signed [D_BITS-1:0] offset;
    wire logic signed [D_BITS-1:0] sum_next;

    if (SHORTCUT_PROJ == 0) begin : g_shift
        wire logic signed [D_BITS-1:0] sc_shifted = D_BITS'(sc) <<< SHORTCUT_SHIFT;
        assign offset = sc_shifted + D_BITS'(bias) - D_BITS'(t_1);
        assign sum_next = D_BITS'(p3_prod) + p3_offset_reg;
    end else begin : g_proj
        wire logic signed [SHORTCUT_MULT_BITS-1:0] smult =
            $signed(p1_const_reg[BASE + SMULT_BASE +: SHORTCUT_MULT_BITS]);
        wire logic signed [SR_BITS-1:0] p3_sc_prod;

        split_mult #(
            .A_BITS(SHORTCUT_MULT_BITS),
            .B_BITS(SC_BITS),
            .P_BITS(SR_BITS)
        )
        sc_mult_inst (
            .clk(clk),
            .en(pre_en),
            .a(smult),
            .b(sc),
            .p(p3_sc_prod)
        );

        assign offset = D_BITS'(bias) - D_BITS'(t_1);
        assign sum_next = D_BITS'(p3_prod) + D_BITS'(p3_sc_prod) + p3_offset_reg;
    end

    always_ff @(posedge clk) begin
        if (pre_en) begin
            p2_offset_reg <= offset;
            p2_slope_reg <= slope_1;
            p3_offset_reg <= p2_offset_reg;
            p3_slope_reg <= p2_slope_reg;
            p4_sum_reg <= sum_next;
            p4_slope_reg <= p3_slope_reg;
        end
    end

    assign p4_sums[pe*D_BITS +: D_BITS] = p4_sum_reg;
    assign p4_slopes[pe*SLOPE_BITS +: SLOPE_BITS] = p4_slope_reg;

    /*
     * Back pipeline (prelu_requant): slope product (chunk products m, product n), P + half (o), shift and clamp
     * into the FIFO
     */
    wire logic signed [D_BITS-1:0] d = $signed(d_lanes[pe*D_BITS +: D_BITS]);
    wire logic signed [SLOPE_BITS-1:0] slope = $signed(d_slopes[pe*SLOPE_BITS +: SLOPE_BITS]);
    wire logic signed [0:0] no_add = 1'sb0;

    prelu_requant #(
        .D_BITS(D_BITS),
        .SLOPE_BITS(SLOPE_BITS),
        .SLOPE_FRAC(SLOPE_FRAC),
        .ADD_BITS(1),
        .OUT_SHIFT(OUT_SHIFT),
        .OUT_BITS(OUT_BITS)
    )
    prelu_inst (
        .clk(clk),
        .en(advance),
        .d(d),
        .slope(slope),
        .add(no_add),
        .q(out_data[pe*OUT_BITS +: OUT_BITS])
    );
end

/*
 * Output FIFO (2 entries): a full FIFO stops the back pipeline; tvalid comes from the occupancy register
 */
wire logic push = advance && o_valid_reg;
output_fifo #(
    .WIDTH(M_DATA_W)
)
out_fifo_inst (
    .clk(clk),
    .rst(rst),
    .push(push),
    .push_data(out_data),
    .full(full),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
