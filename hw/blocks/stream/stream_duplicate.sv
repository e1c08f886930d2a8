// SPDX-License-Identifier: BSD-3-Clause
/*
 * AXI-Stream duplicate: one stream in, two identical streams out (e.g. a block input to the binarizer and to the
 * residual shortcut).
 *
 * m0_axis and m1_axis each carry exactly the s_axis beats, in order (golden function: instabnn.contract.stream
 * .duplicate).
 *
 * Buffering: each output has its own 2-entry FIFO. An input beat is accepted when both FIFOs have room, and is
 * then written into both; each output drains its FIFO on its own. So an output that stalls for a while does not
 * stop the other one until it is two beats behind; an output stalled longer stops the input (and so, after its
 * two buffered beats, the other output) until it takes beats again: nothing is dropped or duplicated. Put a
 * stream_fifo on an output that must run further ahead of the other (the residual shortcut of a block does).
 *
 * Throughput: one beat per clock in and on both outputs. Latency: 1 cycle: a beat accepted at clock edge t into
 * empty FIFOs is on both outputs (m*_axis_tvalid high) from edge t, and the earliest handshakes are at edge t+1.
 * Flow control: s_axis_tready and m*_axis_tvalid come from registers only (no combinational path between streams).
 *
 * Reset: rst (synchronous, active high) empties both FIFOs.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module stream_duplicate #(
    // data width
    parameter int WIDTH = 8
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
     * Output 0
     */
    output wire logic [WIDTH-1:0]  m0_axis_tdata,
    output wire logic              m0_axis_tvalid,
    input  wire logic              m0_axis_tready,

    /*
     * Output 1
     */
    output wire logic [WIDTH-1:0]  m1_axis_tdata,
    output wire logic              m1_axis_tvalid,
    input  wire logic              m1_axis_tready
);

// check configuration
if (WIDTH < 1) begin : g_check_width
    $fatal(0, "Error: WIDTH (%0d) must be >= 1 (instance %m)", WIDTH);
end

wire logic [1:0] room;                        // per output: its FIFO can take a beat
wire logic [1:0] ready = {m1_axis_tready, m0_axis_tready};
wire logic [1:0] valid;
wire logic [2*WIDTH-1:0] data;

assign s_axis_tready = &room;

wire logic push = s_axis_tvalid && s_axis_tready;

for (genvar n = 0; n < 2; n = n + 1) begin : g_out

    logic [WIDTH-1:0] mem[2];
    logic wr_ptr_reg;
    logic rd_ptr_reg;
    logic [1:0] count_reg;

    wire logic pop = valid[n] && ready[n];

    always_ff @(posedge clk) begin
        if (push) begin
            mem[wr_ptr_reg] <= s_axis_tdata;
            wr_ptr_reg <= !wr_ptr_reg;
        end
        if (pop) begin
            rd_ptr_reg <= !rd_ptr_reg;
        end
        count_reg <= count_reg + 2'(push) - 2'(pop);

        if (rst) begin
            wr_ptr_reg <= 1'b0;
            rd_ptr_reg <= 1'b0;
            count_reg <= '0;
        end
    end

    assign room[n] = count_reg != 2'd2;
    assign valid[n] = count_reg != '0;
    assign data[n*WIDTH +: WIDTH] = mem[rd_ptr_reg];

end

assign m0_axis_tdata = data[0 +: WIDTH];
assign m0_axis_tvalid = valid[0];
assign m1_axis_tdata = data[WIDTH +: WIDTH];
assign m1_axis_tvalid = valid[1];

endmodule

`resetall
