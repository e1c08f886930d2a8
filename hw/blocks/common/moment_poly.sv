// SPDX-License-Identifier: BSD-3-Clause
/*
 * The per-channel cubic polynomial of a frame's power sums, on one multiplier time-multiplexed over the channels,
 * the terms and (LIMBS > 1) limbs of the power sums: the common front of insta_threshold_compute and
 * insta_shift_compute.
 *
 * Golden function: instabnn.contract.insta (InstaThConstants.thresholds before the ceil) and
 * instabnn.contract.layers.MomentPolynomial.evaluate. For channel c with power sums P1, P2, P3 and the
 * fixed-point coefficients C_j (fraction bits FRAC_j, FRAC = max_j FRAC_j):
 *
 *     V = C0 * 2^(FRAC-FRAC_0) + sum_{j=1..3} C_j * P_j * 2^(FRAC-FRAC_j)        (exact, ACC_BITS bits)
 *
 * ACC_BITS must hold V and every partial sum for the worst case (the caller's accumulator_bits); the arithmetic is
 * modulo 2^ACC_BITS, exact because the final value fits.
 *
 * Limbs: P_j, sign-extended to LIMBS * LIMB_W bits (LIMB_W = ceil(PW / LIMBS), PW the widest power sum), is split
 * into LIMBS limbs of LIMB_W bits, the low ones unsigned and the top one signed, and C_j * P_j is the sum of
 * C_j * limb_k * 2^(k*LIMB_W). The multiplier is CW x OP_W bits (CW the widest C_j; OP_W = LIMB_W + 1, or PW when
 * LIMBS = 1): with LIMB_W <= 17 and CW <= 25 it is one DSP48E1 (instabnn.hw.blocks.insta_threshold.spec.sequencer_limbs picks the
 * number), at the price of LIMBS steps per term.
 *
 * Schedule: start (accepted while idle) begins a frame; the unit then issues one step (channel c, term j, limb k)
 * per clock, c = 0 .. C-1 (fold f = c / PE, lane pe = c mod PE), j = 1, 2, 3, k = 0 .. LIMBS-1: STEPS = 3*C*LIMBS
 * steps per frame. Pipeline from the issue edge I of a step: I [lane / term / limb select of the sums (the stats
 * memory read one edge ahead, below); C_j of the step's term from the coefficient word] -> I+1 [chunk products] -> I+2
 * [product: split_mult] -> I+3 [shift and accumulate; the channel's first step starts from C0 * 2^(FRAC-FRAC_0)].
 * The coefficient ROM is read one edge ahead of the issue (at I-1, at the channel of the step issued at I, held in an
 * address register loaded at I-2; channel 0 while idle), so that only registers feed and follow the ROM; the product takes two stages because
 * its operands are wider than an 18 x 18 multiplier. out_valid is high for one cycle after the edge that accumulates a
 * channel's last step (3 edges after its issue), with V, the channel's EXTRA field, its bank, fold and lane flags.
 * release_stats pulses after the edge that issues a frame's last step (the stats bank may be reused from then on).
 * A new start may follow right after the last issue: frames overlap in the pipeline.
 *
 * Banks: frame n reads stats bank n mod 2 (the unit counts frames itself; out_bank says which).
 *
 * Memory-init file COEFF_FILE ($readmemh; "//" comment lines allowed): C lines, line c = channel c's
 * C0 | C1 | C2 | C3 | EXTRA from the least significant bit, two's-complement fields of COEFF_BITS_0..3 bits and
 * EXTRA_BITS bits the caller interprets (insta_shift_compute: MEAN | GAIN).
 *
 * Reset: rst (synchronous, active high) stops the frame in progress and empties the pipeline; bank 0 is next.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module moment_poly #(
    // channels
    parameter int CHANNELS = 8,
    // channels per beat (lanes of the stats word); divides CHANNELS
    parameter int PE = 4,
    // signed widths of the power sums P1, P2, P3
    parameter int P1_BITS = 14,
    parameter int P2_BITS = 22,
    parameter int P3_BITS = 28,
    // signed widths of the coefficients C0 .. C3
    parameter int COEFF_BITS_0 = 16,
    parameter int COEFF_BITS_1 = 16,
    parameter int COEFF_BITS_2 = 16,
    parameter int COEFF_BITS_3 = 16,
    // fraction bits of the coefficients C0 .. C3
    parameter int FRAC_0 = 8,
    parameter int FRAC_1 = 8,
    parameter int FRAC_2 = 8,
    parameter int FRAC_3 = 8,
    // signed width of the accumulator V
    parameter int ACC_BITS = 48,
    // per-channel bits of the coefficient word above C3, passed through to out_extra (0: none)
    parameter int EXTRA_BITS = 0,
    // limbs of the power sums (1 .. the widest power sum's width)
    parameter int LIMBS = 1,
    // coefficient memory init file ($readmemh), layout above
    parameter COEFF_FILE = "",
    // derived
    localparam int CF = CHANNELS / PE,
    localparam int CF_W = CF > 1 ? $clog2(CF) : 1,
    localparam int SUM_W = P1_BITS + P2_BITS + P3_BITS,
    localparam int EXTRA_W = EXTRA_BITS > 0 ? EXTRA_BITS : 1
) (
    input  wire logic                       clk,
    input  wire logic                       rst,

    /*
     * Frame control
     */
    input  wire logic                       start,          // a frame's sums are ready in the next bank; taken while !busy
    output wire logic                       busy,           // issuing steps
    output wire logic                       release_stats,  // pulse: the frame's sums have all been read

    /*
     * Stats read port (stats_accumulate's asynchronous read; the address and the data are registered here)
     */
    output wire logic                       sums_bank,
    output wire logic [CF_W-1:0]            sums_fold,
    input  wire logic [PE*SUM_W-1:0]        sums,

    /*
     * One channel's value per out_valid pulse, channels in order
     */
    output wire logic                       out_valid,
    output wire logic signed [ACC_BITS-1:0] out_value,
    output wire logic [EXTRA_W-1:0]         out_extra,
    output wire logic                       out_bank,
    output wire logic [CF_W-1:0]            out_fold,
    output wire logic                       out_last_lane,  // the last channel of its fold
    output wire logic                       out_last_fold   // a channel of the frame's last fold
);

localparam int CB0 = COEFF_BITS_0;
localparam int CB1 = COEFF_BITS_1;
localparam int CB2 = COEFF_BITS_2;
localparam int CB3 = COEFF_BITS_3;
localparam int CB_SUM = CB0 + CB1 + CB2 + CB3;
localparam int COEFF_W = CB_SUM + EXTRA_BITS;
localparam int FRAC_01 = FRAC_0 > FRAC_1 ? FRAC_0 : FRAC_1;
localparam int FRAC_23 = FRAC_2 > FRAC_3 ? FRAC_2 : FRAC_3;
localparam int FRAC = FRAC_01 > FRAC_23 ? FRAC_01 : FRAC_23;
localparam int CW_12 = CB1 > CB2 ? CB1 : CB2;
localparam int CW = CW_12 > CB3 ? CW_12 : CB3;              // multiplier coefficient operand
localparam int PW_12 = P1_BITS > P2_BITS ? P1_BITS : P2_BITS;
localparam int PW = PW_12 > P3_BITS ? PW_12 : P3_BITS;      // the widest power sum
localparam int LIMB_W = (PW + LIMBS - 1) / LIMBS;
localparam int PX_W = LIMB_W * LIMBS;                       // P sign-extended to whole limbs
localparam int OP_W = LIMBS > 1 ? LIMB_W + 1 : PW;          // a limb as a signed multiplier operand
localparam int PROD_W = CW + OP_W < ACC_BITS ? CW + OP_W : ACC_BITS;  // the product modulo 2^ACC_BITS is enough
localparam int CH_W = CHANNELS > 1 ? $clog2(CHANNELS) : 1;
localparam int PE_W = PE > 1 ? $clog2(PE) : 1;
localparam int LIMB_IW = LIMBS > 1 ? $clog2(LIMBS) : 1;
localparam int ROM_SLICE_BITS = 36;                         // bits of the coefficient word per address copy

// check configuration
if (CHANNELS < 1 || PE < 1) begin : g_check_sizes
    $fatal(0, "Error: CHANNELS (%0d) and PE (%0d) must be >= 1 (instance %m)", CHANNELS, PE);
end
if (PE >= 1 && CHANNELS % PE != 0) begin : g_check_pe
    $fatal(0, "Error: PE (%0d) must divide CHANNELS (%0d) (instance %m)", PE, CHANNELS);
end
if (CB0 < 1 || CB1 < 1 || CB2 < 1 || CB3 < 1) begin : g_check_coeff_bits
    $fatal(0, "Error: COEFF_BITS_0..3 must be >= 1 (instance %m)");
end
if (FRAC_0 < 0 || FRAC_1 < 0 || FRAC_2 < 0 || FRAC_3 < 0) begin : g_check_fracs
    $fatal(0, "Error: FRAC_0..3 must be >= 0 (instance %m)");
end
if (ACC_BITS < 2) begin : g_check_acc
    $fatal(0, "Error: ACC_BITS (%0d) must be >= 2 (instance %m)", ACC_BITS);
end
if (EXTRA_BITS < 0) begin : g_check_extra
    $fatal(0, "Error: EXTRA_BITS (%0d) must be >= 0 (instance %m)", EXTRA_BITS);
end
if (LIMBS < 1 || LIMBS > PW) begin : g_check_limbs
    $fatal(0, "Error: LIMBS (%0d) must lie in 1 .. %0d (instance %m)", LIMBS, PW);
end
if (COEFF_FILE == "") begin : g_check_coeff_file
    $fatal(0, "Error: COEFF_FILE must name a $readmemh file (instance %m)");
end

/*
 * Step counters: channel (fold, lane), term j = 1..3 as 0..2, limb k
 */
logic busy_reg;
logic bank_reg;
logic [CF_W-1:0] fold_reg;
logic [PE_W-1:0] lane_reg;
logic [CH_W-1:0] chan_reg;
logic [1:0] term_reg;
logic [LIMB_IW-1:0] limb_reg;
logic release_reg;

wire logic last_limb = limb_reg == LIMB_IW'(LIMBS-1);
wire logic last_term = term_reg == 2'd2;
wire logic last_lane = lane_reg == PE_W'(PE-1);
wire logic last_fold = fold_reg == CF_W'(CF-1);
wire logic last_of_channel = last_limb && last_term;
wire logic last_step = last_of_channel && last_lane && last_fold;

always_ff @(posedge clk) begin
    release_reg <= 1'b0;
    if (busy_reg) begin
        limb_reg <= last_limb ? '0 : limb_reg + 1'b1;
        if (last_limb) begin
            term_reg <= last_term ? 2'd0 : term_reg + 2'd1;
        end
        if (last_of_channel) begin
            lane_reg <= last_lane ? '0 : lane_reg + 1'b1;
            chan_reg <= chan_reg + 1'b1;
            if (last_lane) begin
                fold_reg <= fold_reg + 1'b1;
            end
        end
        if (last_step) begin
            busy_reg <= 1'b0;
            bank_reg <= !bank_reg;
            release_reg <= 1'b1;
        end
    end else if (start) begin
        busy_reg <= 1'b1;
        limb_reg <= '0;
        term_reg <= 2'd0;
        lane_reg <= '0;
        fold_reg <= '0;
        chan_reg <= '0;
    end

    if (rst) begin
        busy_reg <= 1'b0;
        bank_reg <= 1'b0;
        release_reg <= 1'b0;
    end
end

assign busy = busy_reg;
assign release_stats = release_reg;

/*
 * Stage 0: the coefficient ROM, read one edge ahead of the issue at an address register loaded one more edge ahead:
 * at the edge that issues step s, the address register takes the channel of step s+2 (the next channel where step s
 * is one of its channel's last two; 0 past the frame's end or while idle, where the next step can only be a frame's
 * first) and the ROM's read register the word of step s+1's channel. Both the ROM's address and its output are
 * registers (sliced_rom: one address register copy per slice of the wide word).
 */

// step s is one of the last two of its channel (3*LIMBS >= 3 steps a channel)
wire logic near_channel_end;

if (LIMBS == 1) begin : g_near_one_limb
    assign near_channel_end = term_reg != 2'd0;
end else if (LIMBS == 2) begin : g_near_two_limbs
    assign near_channel_end = last_term;
end else begin : g_near_limbs
    assign near_channel_end = last_term && limb_reg >= LIMB_IW'(LIMBS-2);
end
wire logic last_channel = chan_reg == CH_W'(CHANNELS-1);
wire logic [CH_W-1:0] rom_next_addr = !busy_reg || (near_channel_end && last_channel) ? '0
                                     : near_channel_end ? chan_reg + 1'b1 : chan_reg;
wire logic [COEFF_W-1:0] rom_coeff;       // the ROM's read register

sliced_rom #(
    .WIDTH(COEFF_W),
    .DEPTH(CHANNELS),
    .SLICE_BITS(ROM_SLICE_BITS),
    .FILE(COEFF_FILE)
)
coeff_rom_inst (
    .clk(clk),
    .rst(rst),
    .next_addr(rom_next_addr),
    .data(rom_coeff)
);

/*
 * Stage 0, power sums: the stats memory (read asynchronously) is read one edge ahead of the issue, like the ROM: at
 * the edge that issues step s, the read address (sums_bank, sums_fold) takes step s+2's bank and fold, and sums_reg
 * the word of step s+1's. So the stats memory's address is a register and its output goes into a register only.
 * A frame's first word is read in the cycle that ends at the edge taking start (its first step issues one edge
 * later): the parent asserts start only after an edge that saw the stats' done, when the last sums are written.
 */
logic sums_bank_reg;
logic [CF_W-1:0] sums_fold_reg;
logic [PE*SUM_W-1:0] sums_reg;

always_ff @(posedge clk) begin
    if (!busy_reg) begin
        sums_bank_reg <= bank_reg;
        sums_fold_reg <= '0;
    end else if (near_channel_end && last_channel) begin
        sums_bank_reg <= !bank_reg;
        sums_fold_reg <= '0;
    end else begin
        sums_bank_reg <= bank_reg;
        sums_fold_reg <= near_channel_end && last_lane ? fold_reg + 1'b1 : fold_reg;
    end
    sums_reg <= sums;

    if (rst) begin
        sums_bank_reg <= 1'b0;
        sums_fold_reg <= '0;
    end
end

assign sums_bank = sums_bank_reg;
assign sums_fold = sums_fold_reg;

/*
 * Stage 1: operands. Limb k of P_j of the lane (lane, term and limb select of sums_reg); the channel's coefficient
 * word (from the ROM's read register)
 */

// lane and limb selects as array indices (plain muxes; a variable part-select would become a barrel shifter)
wire logic [SUM_W-1:0] sums_lanes[PE];

for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_sums_lane
    assign sums_lanes[pe] = sums_reg[pe*SUM_W +: SUM_W];
end

wire logic [SUM_W-1:0] lane_sums = sums_lanes[lane_reg];
logic signed [PX_W-1:0] p_sel;

always_comb begin
    case (term_reg)
        2'd0: p_sel = PX_W'($signed(lane_sums[0 +: P1_BITS]));
        2'd1: p_sel = PX_W'($signed(lane_sums[P1_BITS +: P2_BITS]));
        default: p_sel = PX_W'($signed(lane_sums[P1_BITS+P2_BITS +: P3_BITS]));
    endcase
end

wire logic signed [OP_W-1:0] op_sel;

if (LIMBS == 1) begin : g_one_limb
    assign op_sel = p_sel;
end else begin : g_limbs
    wire logic signed [OP_W-1:0] limb_ops[LIMBS];
    for (genvar k = 0; k < LIMBS - 1; k = k + 1) begin : g_low
        assign limb_ops[k] = $signed({1'b0, p_sel[k*LIMB_W +: LIMB_W]});
    end
    assign limb_ops[LIMBS-1] = OP_W'($signed(p_sel[(LIMBS-1)*LIMB_W +: LIMB_W]));
    assign op_sel = limb_ops[limb_reg];
end

logic s1_valid_reg;
logic s1_bank_reg;
logic [CF_W-1:0] s1_fold_reg;
logic s1_last_lane_reg;
logic s1_last_fold_reg;
logic [1:0] s1_term_reg;
logic [LIMB_IW-1:0] s1_limb_reg;
logic s1_first_reg;                  // the channel's first step
logic s1_last_reg;                   // the channel's last step
logic signed [OP_W-1:0] s1_op_reg;
logic signed [CW-1:0] s1_coeff_reg;  // C_j of the step's term
logic signed [CB0-1:0] s1_c0_reg;
logic [EXTRA_W-1:0] s1_extra_reg;

// C_j of the term being issued, from the ROM's read register
logic signed [CW-1:0] coeff_sel;

always_comb begin
    case (term_reg)
        2'd0: coeff_sel = CW'($signed(rom_coeff[CB0 +: CB1]));
        2'd1: coeff_sel = CW'($signed(rom_coeff[CB0+CB1 +: CB2]));
        default: coeff_sel = CW'($signed(rom_coeff[CB0+CB1+CB2 +: CB3]));
    endcase
end

wire logic [EXTRA_W-1:0] rom_extra;

if (EXTRA_BITS > 0) begin : g_extra
    assign rom_extra = rom_coeff[CB_SUM +: EXTRA_W];
end else begin : g_no_extra
    assign rom_extra = '0;
end

always_ff @(posedge clk) begin
    s1_valid_reg <= busy_reg;
    s1_bank_reg <= bank_reg;
    s1_fold_reg <= fold_reg;
    s1_last_lane_reg <= last_lane;
    s1_last_fold_reg <= last_fold;
    s1_term_reg <= term_reg;
    s1_limb_reg <= limb_reg;
    s1_first_reg <= term_reg == 2'd0 && limb_reg == '0;
    s1_last_reg <= last_of_channel;
    s1_op_reg <= op_sel;
    s1_coeff_reg <= coeff_sel;
    s1_c0_reg <= $signed(rom_coeff[0 +: CB0]);
    s1_extra_reg <= rom_extra;

    if (rst) begin
        s1_valid_reg <= 1'b0;
    end
end

/*
 * Stages 2 and 3: product C_j * limb_k(P_j) (split_mult: chunk products, then their sum); the step's flags
 * alongside
 */
wire logic signed [PROD_W-1:0] s3_prod;

split_mult #(
    .A_BITS(CW),
    .B_BITS(OP_W),
    .P_BITS(PROD_W)
)
mult_inst (
    .clk(clk),
    .en(1'b1),
    .a(s1_coeff_reg),
    .b(s1_op_reg),
    .p(s3_prod)
);

// {bank, fold, last lane, last fold, term, limb, first, last}; the PE > 0 guard lets an illegal PE = 0 reach the
// $fatal above
localparam int FLAGS_W = 1 + (PE > 0 ? CF_W : 1) + 1 + 1 + 2 + LIMB_IW + 1 + 1;
logic s2_valid_reg, s3_valid_reg;
logic [FLAGS_W-1:0] s2_flags_reg, s3_flags_reg;
logic signed [ACC_BITS-1:0] s2_c0_reg, s3_c0_reg;
logic [EXTRA_W-1:0] s2_extra_reg, s3_extra_reg;

always_ff @(posedge clk) begin
    s2_valid_reg <= s1_valid_reg;
    s2_flags_reg <= {s1_bank_reg, s1_fold_reg, s1_last_lane_reg, s1_last_fold_reg, s1_term_reg, s1_limb_reg,
                     s1_first_reg, s1_last_reg};
    s2_c0_reg <= ACC_BITS'(s1_c0_reg) <<< (FRAC - FRAC_0);
    s2_extra_reg <= s1_extra_reg;
    s3_valid_reg <= s2_valid_reg;
    s3_flags_reg <= s2_flags_reg;
    s3_c0_reg <= s2_c0_reg;
    s3_extra_reg <= s2_extra_reg;

    if (rst) begin
        s2_valid_reg <= 1'b0;
        s3_valid_reg <= 1'b0;
    end
end

wire logic s3_bank;
wire logic [CF_W-1:0] s3_fold;
wire logic s3_last_lane;
wire logic s3_last_fold;
wire logic [1:0] s3_term;
/* verilator lint_off UNUSEDSIGNAL */
wire logic [LIMB_IW-1:0] s3_limb;    // unused where LIMBS = 1
/* verilator lint_on UNUSEDSIGNAL */
wire logic s3_first;
wire logic s3_last;

assign {s3_bank, s3_fold, s3_last_lane, s3_last_fold, s3_term, s3_limb, s3_first, s3_last} = s3_flags_reg;

/*
 * Stage 4: V += C_j * limb_k(P_j) * 2^(FRAC - FRAC_j + k*LIMB_W)
 */
wire logic signed [ACC_BITS-1:0] prod_ext = ACC_BITS'(s3_prod);
logic signed [ACC_BITS-1:0] term_shifted;

always_comb begin
    case (s3_term)
        2'd0: term_shifted = prod_ext <<< (FRAC - FRAC_1);
        2'd1: term_shifted = prod_ext <<< (FRAC - FRAC_2);
        default: term_shifted = prod_ext <<< (FRAC - FRAC_3);
    endcase
end

wire logic signed [ACC_BITS-1:0] step_value;

if (LIMBS == 1) begin : g_one_limb_shift
    assign step_value = term_shifted;
end else begin : g_limb_shift
    wire logic signed [ACC_BITS-1:0] limb_shifted[LIMBS];
    for (genvar k = 0; k < LIMBS; k = k + 1) begin : g_shift
        assign limb_shifted[k] = term_shifted <<< (k * LIMB_W);
    end
    assign step_value = limb_shifted[s3_limb];
end

logic s4_valid_reg;                  // the accumulator holds a channel's complete V
logic s4_bank_reg;
logic [CF_W-1:0] s4_fold_reg;
logic s4_last_lane_reg;
logic s4_last_fold_reg;
logic signed [ACC_BITS-1:0] s4_acc_reg;
logic [EXTRA_W-1:0] s4_extra_reg;

always_ff @(posedge clk) begin
    s4_valid_reg <= s3_valid_reg && s3_last;
    s4_bank_reg <= s3_bank;
    s4_fold_reg <= s3_fold;
    s4_last_lane_reg <= s3_last_lane;
    s4_last_fold_reg <= s3_last_fold;
    s4_extra_reg <= s3_extra_reg;
    if (s3_valid_reg) begin
        s4_acc_reg <= (s3_first ? s3_c0_reg : s4_acc_reg) + step_value;
    end

    if (rst) begin
        s4_valid_reg <= 1'b0;
    end
end

assign out_valid = s4_valid_reg;
assign out_value = s4_acc_reg;
assign out_extra = s4_extra_reg;
assign out_bank = s4_bank_reg;
assign out_fold = s4_fold_reg;
assign out_last_lane = s4_last_lane_reg;
assign out_last_fold = s4_last_fold_reg;

endmodule

`resetall
