// SPDX-License-Identifier: BSD-3-Clause
/*
 * Lane-wise running sums of a stream in a memory of partial sums (read-modify-write), with the 2-entry output FIFO:
 * the common datapath of the sum-pooling blocks (pool_sum, global_sum).
 *
 * Math: for every accepted beat with lanes q[pe] (signed IN_BITS) and entry a = addr,
 *
 *     s[a][pe] = (first ? 0 : s[a][pe]) + q[pe]              (signed OUT_BITS, modulo 2^OUT_BITS: exact when the
 *                                                             unit's OUT_BITS holds every sum)
 *
 * and a beat with last pushes the updated s[a] (PE lanes, lane pe at bits [pe*OUT_BITS +: OUT_BITS]) to m_axis.
 * addr, first and last describe the beat on s_axis (the unit's position counters, advanced on accept).
 *
 * Schedule:
 *   edge e   (accept): q registered, the entry read (registered read), flags registered.
 *   edge e+1: s = (first ? 0 : partial) + q written back to the entry; with last, s also goes into the output FIFO.
 *   edge e+2: earliest m_axis handshake (LATENCY = 2 edges from a last beat to its output, output ready).
 * The entry read at edge e misses the write of the beat just before it (same edge); where that beat had the same
 * address the partial is forwarded from the adder instead. One beat per clock.
 * Flow control: advance = the output FIFO is not full (a register); s_axis_tready = advance, accept = advance and
 * s_axis_tvalid; the whole datapath holds while advance is low; m_axis_tvalid comes from a register.
 *
 * Reset: rst (synchronous, active high) empties the pipeline and the output FIFO. The memory needs no reset: the
 * first beat of every sum overwrites its entry.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module partial_sum_memory #(
    // lanes per beat
    parameter int PE = 4,
    // signed width of the input lanes
    parameter int IN_BITS = 8,
    // signed width of the sums (>= IN_BITS)
    parameter int OUT_BITS = 12,
    // entries of the partial-sum memory (sums in progress)
    parameter int ENTRIES = 2,
    // derived
    localparam int ADDR_W = ENTRIES > 1 ? $clog2(ENTRIES) : 1,
    localparam int S_DATA_W = PE * IN_BITS,
    localparam int M_DATA_W = PE * OUT_BITS
) (
    input  wire logic                   clk,
    input  wire logic                   rst,

    /*
     * Input beats, with the entry and the flags of the beat on s_axis
     */
    input  wire logic [S_DATA_W-1:0]    s_axis_tdata,
    input  wire logic                   s_axis_tvalid,
    output wire logic                   s_axis_tready,
    input  wire logic [ADDR_W-1:0]      addr,
    input  wire logic                   first,      // the beat starts its sum: the partial is 0
    input  wire logic                   last,       // the beat completes its sum: s goes out
    output wire logic                   accept,     // the beat is taken at this edge

    /*
     * Completed sums
     */
    output wire logic [M_DATA_W-1:0]    m_axis_tdata,
    output wire logic                   m_axis_tvalid,
    input  wire logic                   m_axis_tready
);

// check configuration
if (PE < 1 || ENTRIES < 1 || IN_BITS < 1 || OUT_BITS < IN_BITS) begin : g_check_sizes
    $fatal(0, "Error: PE, ENTRIES, IN_BITS must be >= 1 and OUT_BITS (%0d) >= IN_BITS (%0d) (instance %m)",
           OUT_BITS, IN_BITS);
end

wire logic full;                     // the output FIFO is full

// the unit moves when the output FIFO can take a sum
wire logic advance = !full;
assign accept = advance && s_axis_tvalid;
assign s_axis_tready = advance;

/*
 * Read-modify-write
 */
logic [M_DATA_W-1:0] sum_mem[ENTRIES];

logic s1_valid_reg;
logic [S_DATA_W-1:0] s1_data_reg;
logic [ADDR_W-1:0] s1_addr_reg;
logic s1_first_reg;                  // first beat of its sum: the partial is 0
logic s1_last_reg;                   // last beat of its sum: the sum is complete
logic [M_DATA_W-1:0] s1_rd_reg;      // the entry as read at the handshake
logic s1_fwd_reg;                    // ... stale: the beat before wrote the same entry at that edge
logic [M_DATA_W-1:0] s1_fwd_data_reg;

wire logic [M_DATA_W-1:0] sum;

always_ff @(posedge clk) begin
    if (advance) begin
        s1_rd_reg <= sum_mem[addr];
        s1_data_reg <= s_axis_tdata;
        s1_addr_reg <= addr;
        s1_first_reg <= first;
        s1_last_reg <= last;
        s1_fwd_reg <= s1_valid_reg && s1_addr_reg == addr;
        s1_fwd_data_reg <= sum;
        s1_valid_reg <= accept;
        if (s1_valid_reg) begin
            sum_mem[s1_addr_reg] <= sum;
        end
    end

    if (rst) begin
        s1_valid_reg <= 1'b0;
    end
end

for (genvar pe = 0; pe < PE; pe = pe + 1) begin : g_lane
    wire logic signed [IN_BITS-1:0] q = $signed(s1_data_reg[pe*IN_BITS +: IN_BITS]);
    wire logic signed [OUT_BITS-1:0] partial = s1_first_reg ? '0
                                               : $signed(s1_fwd_reg ? s1_fwd_data_reg[pe*OUT_BITS +: OUT_BITS]
                                                                    : s1_rd_reg[pe*OUT_BITS +: OUT_BITS]);
    assign sum[pe*OUT_BITS +: OUT_BITS] = partial + OUT_BITS'(q);
end

/*
 * Output FIFO (2 entries): a full FIFO stops the unit; tvalid comes from the occupancy register
 */
wire logic push = advance && s1_valid_reg && s1_last_reg;
output_fifo #(
    .WIDTH(M_DATA_W)
)
out_fifo_inst (
    .clk(clk),
    .rst(rst),
    .push(push),
    .push_data(sum),
    .full(full),
    .m_axis_tdata(m_axis_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready)
);

endmodule

`resetall
