// SPDX-License-Identifier: BSD-3-Clause
/*
 * AXI-Stream FIFO: first in, first out, DEPTH beats in a RAM plus one in an output register.
 *
 * m_axis carries exactly the s_axis beats, in order (golden function: the identity,
 * instabnn.contract.stream.fifo). Capacity: DEPTH + 1 beats (DEPTH in the RAM, one in the output register);
 * s_axis_tready is low exactly while the RAM holds DEPTH beats.
 *
 * Memory: one simple dual-port RAM of DEPTH words of WIDTH bits with a registered read (the output register is the
 * RAM's read register), so synthesis maps deep FIFOs to block RAM and shallow ones to LUT RAM; there is never a
 * read and a write of the same word at the same clock edge (a word is read at the earliest one edge after it was
 * written, and the RAM is never written when full).
 *
 * Throughput: one beat per clock in and out (any DEPTH >= 2). Latency: 2 cycles: a beat accepted on s_axis at clock
 * edge t into an empty FIFO is in the output register (m_axis_tvalid high) from edge t+1 and the earliest m_axis
 * handshake is at edge t+2.
 * Flow control: s_axis_tready and m_axis_tvalid come from registers only; m_axis_tready enables the RAM read.
 *
 * Reset: rst (synchronous, active high) empties the FIFO.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_fifo #(
    // data width
    parameter int WIDTH = 8,
    // RAM words (the FIFO holds DEPTH + 1 beats), >= 2
    parameter int DEPTH = 16
) (
    input  wire logic              clk,
    input  wire logic              rst,

    /*
     * Input
     */
    input  wire logic [WIDTH-1:0]  s_axis_tdata,
    input  wire logic              s_axis_tvalid,
    output wire logic              s_axis_tready,

    /*
     * Output
     */
    output wire logic [WIDTH-1:0]  m_axis_tdata,
    output wire logic              m_axis_tvalid,
    input  wire logic              m_axis_tready
);

localparam int ADDR_W = $clog2(DEPTH);
localparam int COUNT_W = $clog2(DEPTH + 1);

// check configuration
if (WIDTH < 1) begin : g_check_width
    $fatal(0, "Error: WIDTH (%0d) must be >= 1 (instance %m)", WIDTH);
end
if (DEPTH < 2) begin : g_check_depth
    $fatal(0, "Error: DEPTH (%0d) must be >= 2 (instance %m)", DEPTH);
end

logic [WIDTH-1:0] mem[DEPTH];
logic [ADDR_W-1:0] wr_ptr_reg;
logic [ADDR_W-1:0] rd_ptr_reg;
logic [COUNT_W-1:0] count_reg;     // words in the RAM
logic [WIDTH-1:0] out_data_reg;
logic out_valid_reg;

assign s_axis_tready = count_reg != COUNT_W'(DEPTH);

wire logic push = s_axis_tvalid && s_axis_tready;
wire logic load = count_reg != '0 && (!out_valid_reg || m_axis_tready);   // RAM -> output register

always_ff @(posedge clk) begin
    if (push) begin
        mem[wr_ptr_reg] <= s_axis_tdata;
        wr_ptr_reg <= wr_ptr_reg == ADDR_W'(DEPTH-1) ? '0 : wr_ptr_reg + 1'b1;
    end
    if (load) begin
        out_data_reg <= mem[rd_ptr_reg];
        rd_ptr_reg <= rd_ptr_reg == ADDR_W'(DEPTH-1) ? '0 : rd_ptr_reg + 1'b1;
        out_valid_reg <= 1'b1;
    end else if (m_axis_tready) begin
        out_valid_reg <= 1'b0;
    end
    count_reg <= count_reg + COUNT_W'(push) - COUNT_W'(load);

    if (rst) begin
        wr_ptr_reg <= '0;
        rd_ptr_reg <= '0;
        count_reg <= '0;
        out_valid_reg <= 1'b0;
    end
end

assign m_axis_tdata = out_data_reg;
assign m_axis_tvalid = out_valid_reg;

endmodule

`resetall
