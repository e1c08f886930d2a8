// SPDX-License-Identifier: BSD-3-Clause
/*
 * The two-entry output FIFO of the library's streaming blocks: their stall-all pipelines advance while the FIFO is
 * not full and push the beat leaving the last stage.
 *
 * m_axis carries exactly the pushed beats, in order. push must be low while full (the parent's pipeline enable is
 * !full). A beat pushed at clock edge t is on m_axis from edge t (m_axis_tvalid high after it) and its earliest
 * handshake is at edge t+1. full, m_axis_tvalid and m_axis_tdata come from registers only (a 2-word register file
 * and its pointers and occupancy). full has a register of its own, loaded with the next occupancy's comparison: the
 * parent's pipeline enable, whose fan-out is every register of its pipeline, is then one LUT (or an inverter) away
 * from a register.
 *
 * Reset: rst (synchronous, active high) empties the FIFO.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module output_fifo #(
    // data width
    parameter int WIDTH = 8
) (
    input  wire logic              clk,
    input  wire logic              rst,

    /*
     * From the parent's last pipeline stage
     */
    input  wire logic              push,
    input  wire logic [WIDTH-1:0]  push_data,
    output wire logic              full,

    /*
     * Output
     */
    output wire logic [WIDTH-1:0]  m_axis_tdata,
    output wire logic              m_axis_tvalid,
    input  wire logic              m_axis_tready
);

if (WIDTH < 1) begin : g_check_width
    $fatal(0, "Error: WIDTH (%0d) must be >= 1 (instance %m)", WIDTH);
end

logic [WIDTH-1:0] mem[2];
logic wr_ptr_reg;
logic rd_ptr_reg;
logic [1:0] count_reg;               // occupancy, 0 .. 2
logic full_reg;                      // count_reg == 2

wire logic pop = m_axis_tvalid && m_axis_tready;
wire logic [1:0] count_next = count_reg + 2'(push) - 2'(pop);

always_ff @(posedge clk) begin
    if (push) begin
        mem[wr_ptr_reg] <= push_data;
        wr_ptr_reg <= !wr_ptr_reg;
    end
    if (pop) begin
        rd_ptr_reg <= !rd_ptr_reg;
    end
    count_reg <= count_next;
    full_reg <= count_next == 2'd2;

    if (rst) begin
        wr_ptr_reg <= 1'b0;
        rd_ptr_reg <= 1'b0;
        count_reg <= '0;
        full_reg <= 1'b0;
    end
end

assign full = full_reg;
assign m_axis_tdata = mem[rd_ptr_reg];
assign m_axis_tvalid = count_reg != '0;

endmodule

`resetall
