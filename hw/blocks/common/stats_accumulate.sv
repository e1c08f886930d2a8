// SPDX-License-Identifier: BSD-3-Clause
/*
 * Exact per-channel power sums of a frame: P1 = sum q, P2 = sum q^2, P3 = sum q^3 over the pixels, PE lanes per clock.
 *
 * Golden function: instabnn.contract.insta.power_sums. The input arrives in FINN order (pixel-major,
 * channel-minor): a beat carries the PE channels f*PE .. f*PE+PE-1 of one pixel (channel fold f, CF = C/PE folds).
 * The sums are exact: P1_BITS, P2_BITS and P3_BITS hold the worst case over every frame of N pixels of signed
 * INPUT_BITS-bit values (instabnn.contract.insta.power_sum_bits; the parent derives them).
 *
 * Storage: a memory word holds the PE lanes' {P3, P2, P1} (lane pe at bits [pe*SUM_W +: SUM_W], P1 in the low
 * bits), in two distributed RAMs of one read port each: the accumulator memory (one word per fold) is read and
 * written at the same address by the accumulation; the sums memory (one word per bank and fold) gets the same
 * writes and is read only through rd_*. (One memory with both read ports takes about a third more LUT sites in
 * Yosys' xc7 mapping.) Two banks: frame n's sums go into bank n mod 2 while the threshold computation reads frame
 * n-1's from the other bank through rd_*. The parent must not start a frame in a bank whose sums are still being
 * read.
 *
 * Powers: q^2 and q^3 come from multipliers (POWER_TABLE = 0: two per lane, DSP slices on FPGAs) or from
 * constant tables of all 2^INPUT_BITS codes (POWER_TABLE = 1, INPUT_BITS <= 8: logic, no DSP); same timing.
 *
 * Pipeline (no stall: every accepted beat enters it): edge t samples the beat, t+1 squares (tables: reads both
 * tables), t+2 cubes (tables: registers the table words), t+3 adds into the accumulator word (the first pixel of a
 * frame starts from 0 instead of the stored sum), t+4 writes the sum into the sums memory. done is high for one
 * cycle after the edge that adds a frame's last beat (in_last), the cycle whose closing edge writes its last sums
 * word: the bank holds the frame's final sums from the edge that samples done, so a parent that reads after that
 * edge reads them. Latency from the beat of in_last to done: 3 edges (STATS_LATENCY in
 * instabnn.hw.blocks.insta_threshold.spec).
 *
 * Reset: rst (synchronous, active high) empties the pipeline; the memories keep stale contents, which are never read
 * because every frame starts its words from 0.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module stats_accumulate #(
    // channels per beat (parallel lanes)
    parameter int PE = 4,
    // channel folds: beats per pixel (C / PE)
    parameter int CF = 2,
    // signed width of the input values q
    parameter int INPUT_BITS = 8,
    // signed widths of the power sums P1, P2, P3 (worst case over a frame)
    parameter int P1_BITS = 14,
    parameter int P2_BITS = 22,
    parameter int P3_BITS = 28,
    // q^2 and q^3: 0 = multipliers (DSP slices), 1 = constant tables indexed by q (logic; INPUT_BITS <= 8)
    parameter int POWER_TABLE = 0,
    // fold index width
    localparam int CF_W = CF > 1 ? $clog2(CF) : 1,
    // one lane's memory field {P3, P2, P1}
    localparam int SUM_W = P1_BITS + P2_BITS + P3_BITS
) (
    input  wire logic                     clk,
    input  wire logic                     rst,

    /*
     * Accepted input beats
     */
    input  wire logic                     in_valid,
    input  wire logic [PE*INPUT_BITS-1:0] in_data,
    input  wire logic [CF_W-1:0]          in_fold,    // channel fold f of the beat
    input  wire logic                     in_first,   // the beat belongs to the frame's first pixel
    input  wire logic                     in_last,    // the frame's last beat
    input  wire logic                     in_bank,    // bank of the beat's frame

    /*
     * A frame's sums are complete (one-cycle pulse)
     */
    output wire logic                     done,

    /*
     * Read port (asynchronous): the PE lanes' {P3, P2, P1} of fold rd_fold in bank rd_bank
     */
    input  wire logic                     rd_bank,
    input  wire logic [CF_W-1:0]          rd_fold,
    output wire logic [PE*SUM_W-1:0]      rd_sums
);

localparam int IB = INPUT_BITS;
localparam int SQ_W = 2 * IB;        // q^2 in [0, 2^(2*IB-2)]
localparam int CUBE_W = 3 * IB - 2;  // q^3 in [-2^(3*IB-3), 2^(3*IB-3))

// check configuration
if (PE < 1 || CF < 1) begin : g_check_sizes
    $fatal(0, "Error: PE (%0d) and CF (%0d) must be >= 1 (instance %m)", PE, CF);
end
if (INPUT_BITS < 2) begin : g_check_input_bits
    $fatal(0, "Error: INPUT_BITS (%0d) must be >= 2 (instance %m)", INPUT_BITS);
end
if (POWER_TABLE != 0 && POWER_TABLE != 1) begin : g_check_power_table
    $fatal(0, "Error: POWER_TABLE (%0d) must be 0 or 1 (instance %m)", POWER_TABLE);
end
if (POWER_TABLE != 0 && INPUT_BITS > 8) begin : g_check_power_table_bits
    $fatal(0, "Error: POWER_TABLE = 1 takes INPUT_BITS <= 8, not %0d (instance %m)", INPUT_BITS);
end
if (P1_BITS < IB || P2_BITS < SQ_W || P3_BITS < CUBE_W) begin : g_check_sum_bits
    $fatal(0, "Error: P1_BITS, P2_BITS, P3_BITS (%0d, %0d, %0d) too narrow for INPUT_BITS %0d (instance %m)",
           P1_BITS, P2_BITS, P3_BITS, INPUT_BITS);
end

/*
 * Control along the pipeline
 */
logic a_valid_reg, b_valid_reg, c_valid_reg;
logic a_first_reg, b_first_reg, c_first_reg;
logic a_last_reg, b_last_reg, c_last_reg;
logic a_bank_reg, b_bank_reg, c_bank_reg;
logic [CF_W-1:0] a_fold_reg, b_fold_reg, c_fold_reg;
logic [PE*IB-1:0] a_data_reg;
logic done_reg;

always_ff @(posedge clk) begin
    a_valid_reg <= in_valid;
    b_valid_reg <= a_valid_reg;
    c_valid_reg <= b_valid_reg;
    done_reg <= c_valid_reg && c_last_reg;

    a_data_reg <= in_data;
    a_first_reg <= in_first;
    a_last_reg <= in_last;
    a_bank_reg <= in_bank;
    a_fold_reg <= in_fold;
    b_first_reg <= a_first_reg;
    b_last_reg <= a_last_reg;
    b_bank_reg <= a_bank_reg;
    b_fold_reg <= a_fold_reg;
    c_first_reg <= b_first_reg;
    c_last_reg <= b_last_reg;
    c_bank_reg <= b_bank_reg;
    c_fold_reg <= b_fold_reg;

    if (rst) begin
        a_valid_reg <= 1'b0;
        b_valid_reg <= 1'b0;
        c_valid_reg <= 1'b0;
        done_reg <= 1'b0;
    end
end

assign done = done_reg;

/*
 * Accumulator memory: word {fold} of the frame in progress, read in stage b (registered), added to and written in
 * stage c. Where stage c writes the very word stage b reads (consecutive beats of one fold, CF = 1), the value being
 * written is taken instead; an earlier write is in the memory already. So the adders start from a register, not
 * from the distributed RAM's read multiplexers. The sums memory: word {bank, fold}, written with the same value,
 * read by the parent only.
 */
// distributed RAM by attribute: with its registered read, Yosys would otherwise put a deep accumulator memory in an
// ECP5 block RAM, whose clock-to-out (5.8 ns) then starts the accumulation's adders (67.7 MHz routed on the
// ULX3S); the estimate counts both memories as LUT RAM (resources.power_sum_memories)
(* ram_style = "distributed" *) logic [PE*SUM_W-1:0] acc_mem[2**CF_W];
(* ram_style = "distributed" *) logic [PE*SUM_W-1:0] sum_mem[2**(CF_W+1)];

wire logic [PE*SUM_W-1:0] acc_new;
logic [PE*SUM_W-1:0] c_old_reg;

always_ff @(posedge clk) begin
    c_old_reg <= c_valid_reg && c_fold_reg == b_fold_reg ? acc_new : acc_mem[b_fold_reg];
end

wire logic [PE*SUM_W-1:0] acc_old = c_old_reg;

// the sums memory is written one edge after the accumulator memory, from registers of its own (stage d): its
// write address then is not the accumulator's (one register would drive every cell of both memories) and its data
// leaves the adders through a register
logic d_valid_reg;
logic d_bank_reg;
logic [CF_W-1:0] d_fold_reg;
logic [PE*SUM_W-1:0] d_sums_reg;

always_ff @(posedge clk) begin
    if (c_valid_reg) begin
        acc_mem[c_fold_reg] <= acc_new;
    end
    d_valid_reg <= c_valid_reg;
    d_bank_reg <= c_bank_reg;
    d_fold_reg <= c_fold_reg;
    d_sums_reg <= acc_new;
    if (d_valid_reg) begin
        sum_mem[{d_bank_reg, d_fold_reg}] <= d_sums_reg;
    end

    if (rst) begin
        d_valid_reg <= 1'b0;
    end
end

assign rd_sums = sum_mem[{rd_bank, rd_fold}];

/*
 * Per lane: square, cube, add
 */
for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_lane

    wire logic signed [IB-1:0] q = $signed(a_data_reg[pe*IB +: IB]);
    logic signed [IB-1:0] b_q_reg, c_q_reg;
    logic signed [SQ_W-1:0] b_sq_reg, c_sq_reg;
    logic signed [CUBE_W-1:0] c_cube_reg;

    if (POWER_TABLE != 0) begin : g_table

        // q^2 and q^3 of every INPUT_BITS-bit code (entry i: the code i read as two's complement); read-only
        // memories with constant contents, which synthesis turns into logic
        logic [SQ_W-1:0] square_rom[2**IB];
        logic [CUBE_W-1:0] cube_rom[2**IB];

        initial begin
            for (int i = 0; i < 2**IB; i = i + 1) begin
                square_rom[i] = SQ_W'($signed(IB'(i))) * SQ_W'($signed(IB'(i)));
                cube_rom[i] = CUBE_W'($signed(IB'(i))) * CUBE_W'($signed(IB'(i))) * CUBE_W'($signed(IB'(i)));
            end
        end

        // both tables are read at t+1 and their words registered once more at t+2: the adders see registers, not
        // a block RAM's clock-to-out
        logic signed [CUBE_W-1:0] b_cube_reg;

        always_ff @(posedge clk) begin
            b_q_reg <= q;
            b_sq_reg <= square_rom[$unsigned(q)];
            b_cube_reg <= cube_rom[$unsigned(q)];
            c_q_reg <= b_q_reg;
            c_sq_reg <= b_sq_reg;
            c_cube_reg <= b_cube_reg;
        end

    end else begin : g_multiply

        always_ff @(posedge clk) begin
            b_q_reg <= q;
            b_sq_reg <= SQ_W'(q) * SQ_W'(q);
            c_q_reg <= b_q_reg;
            c_sq_reg <= b_sq_reg;
            c_cube_reg <= CUBE_W'(b_sq_reg) * CUBE_W'(b_q_reg);
        end

    end

    wire logic [SUM_W-1:0] old = acc_old[pe*SUM_W +: SUM_W];
    wire logic signed [P1_BITS-1:0] p1_old = c_first_reg ? '0 : $signed(old[0 +: P1_BITS]);
    wire logic signed [P2_BITS-1:0] p2_old = c_first_reg ? '0 : $signed(old[P1_BITS +: P2_BITS]);
    wire logic signed [P3_BITS-1:0] p3_old = c_first_reg ? '0 : $signed(old[P1_BITS+P2_BITS +: P3_BITS]);

    wire logic signed [P1_BITS-1:0] p1_new = p1_old + P1_BITS'(c_q_reg);
    wire logic signed [P2_BITS-1:0] p2_new = p2_old + P2_BITS'(c_sq_reg);
    wire logic signed [P3_BITS-1:0] p3_new = p3_old + P3_BITS'(c_cube_reg);

    assign acc_new[pe*SUM_W +: SUM_W] = {p3_new, p2_new, p1_new};

end

endmodule

`resetall
