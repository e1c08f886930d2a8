// SPDX-License-Identifier: BSD-3-Clause
/*
 * AXI-Stream width converter between IN_W and OUT_W bits, where one divides the other; little-endian element
 * order, as instabnn.contract.packing: the first beat (or element) is the least significant.
 *
 * Golden function: instabnn.contract.stream.convert_width. With N = max(IN_W, OUT_W) / min(IN_W, OUT_W):
 *   up   (OUT_W = N*IN_W): output beat j = {in[N*j + N-1], ..., in[N*j + 1], in[N*j]}, i.e. input beat N*j + i at
 *        bits [i*IN_W +: IN_W]. A stream of a multiple of N input beats; the unit holds back an incomplete group.
 *   down (IN_W = N*OUT_W): output beat N*j + i = in[j][i*OUT_W +: OUT_W].
 *   equal: wires (no register, no latency).
 *
 * Structure. Up: a shift register collects N-1 beats; the N-th beat completes the word in the output register,
 * which must be empty then (s_axis_tready is low only while N-1 beats wait and the output register is full).
 * Down: an input register (s_axis_tready = it is empty) feeds a word register whose N pieces are sent lowest
 * first, selected by a counter; the next word moves in as the last piece leaves.
 *
 * Throughput: one beat per clock on the narrow side (the wide side moves one beat every N clocks), so a stream of
 * B wide beats takes N*B cycles. Latency: up: the output beat is valid from the edge that accepts its group's
 * last input beat, earliest handshake one edge later (1 cycle); down: 2 cycles from the input handshake at edge t
 * (input register) to the first piece's earliest handshake at edge t+2.
 * Flow control: s_axis_tready and m_axis_tvalid come from registers only.
 *
 * Reset: rst (synchronous, active high) drops any partial group and empties the registers.
 */

`resetall
`timescale 1ns / 1ps
`default_nettype none

module width_converter #(
    // input data width
    parameter int IN_W = 8,
    // output data width; IN_W divides OUT_W or OUT_W divides IN_W
    parameter int OUT_W = 32
) (
    input  wire logic              clk,
    input  wire logic              rst,

    /*
     * Input
     */
    input  wire logic [IN_W-1:0]   s_axis_tdata,
    input  wire logic              s_axis_tvalid,
    output wire logic              s_axis_tready,

    /*
     * Output
     */
    output wire logic [OUT_W-1:0]  m_axis_tdata,
    output wire logic              m_axis_tvalid,
    input  wire logic              m_axis_tready
);

// check configuration
if (IN_W < 1 || OUT_W < 1) begin : g_check_sizes
    $fatal(0, "Error: IN_W (%0d) and OUT_W (%0d) must be >= 1 (instance %m)", IN_W, OUT_W);
end
if (OUT_W % IN_W != 0 && IN_W % OUT_W != 0) begin : g_check_ratio
    $fatal(0, "Error: one of IN_W (%0d) and OUT_W (%0d) must divide the other (instance %m)", IN_W, OUT_W);
end

if (OUT_W > IN_W && OUT_W % IN_W == 0) begin : g_up

    localparam int N = OUT_W / IN_W;
    localparam int CNT_W = $clog2(N);

    logic [(N-1)*IN_W-1:0] shift_reg;     // beats 0 .. cnt-1 of the group, the latest at the top
    logic [CNT_W-1:0] cnt_reg;            // beats collected, 0 .. N-1
    logic [OUT_W-1:0] out_data_reg;
    logic out_valid_reg;

    wire logic complete = cnt_reg == CNT_W'(N-1);

    assign s_axis_tready = !complete || !out_valid_reg;

    wire logic accept = s_axis_tvalid && s_axis_tready;
    wire logic [(N-1)*IN_W-1:0] shift_next;

    if (N > 2) begin : g_shift
        assign shift_next = {s_axis_tdata, shift_reg[(N-1)*IN_W-1:IN_W]};
    end else begin : g_single
        assign shift_next = s_axis_tdata;
    end

    always_ff @(posedge clk) begin
        if (accept) begin
            if (complete) begin
                out_data_reg <= {s_axis_tdata, shift_reg};
                cnt_reg <= '0;
            end else begin
                shift_reg <= shift_next;
                cnt_reg <= cnt_reg + 1'b1;
            end
        end
        if (accept && complete) begin
            out_valid_reg <= 1'b1;
        end else if (m_axis_tready) begin
            out_valid_reg <= 1'b0;
        end

        if (rst) begin
            cnt_reg <= '0;
            out_valid_reg <= 1'b0;
        end
    end

    assign m_axis_tdata = out_data_reg;
    assign m_axis_tvalid = out_valid_reg;

end else if (IN_W > OUT_W && IN_W % OUT_W == 0) begin : g_down

    localparam int N = IN_W / OUT_W;
    localparam int CNT_W = $clog2(N);

    logic [IN_W-1:0] in_data_reg;
    logic in_valid_reg;
    logic [IN_W-1:0] word_reg;            // the word being sent
    logic word_valid_reg;
    logic [CNT_W-1:0] cnt_reg;            // pieces sent of the current word, 0 .. N-1

    assign s_axis_tready = !in_valid_reg;

    wire logic accept = s_axis_tvalid && s_axis_tready;
    wire logic pop = word_valid_reg && m_axis_tready;
    wire logic last = cnt_reg == CNT_W'(N-1);
    wire logic take = in_valid_reg && (!word_valid_reg || (pop && last));

    always_ff @(posedge clk) begin
        if (accept) begin
            in_data_reg <= s_axis_tdata;
            in_valid_reg <= 1'b1;
        end else if (take) begin
            in_valid_reg <= 1'b0;
        end
        if (take) begin
            word_reg <= in_data_reg;
            word_valid_reg <= 1'b1;
            cnt_reg <= '0;
        end else if (pop) begin
            word_valid_reg <= !last;
            cnt_reg <= cnt_reg + 1'b1;
        end

        if (rst) begin
            in_valid_reg <= 1'b0;
            word_valid_reg <= 1'b0;
            cnt_reg <= '0;
        end
    end

    // a piece select (one N:1 mux per output bit) is far smaller than shifting the word
    assign m_axis_tdata = word_reg[cnt_reg*OUT_W +: OUT_W];
    assign m_axis_tvalid = word_valid_reg;

end else if (IN_W == OUT_W) begin : g_equal

    assign m_axis_tdata = s_axis_tdata;
    assign m_axis_tvalid = s_axis_tvalid;
    assign s_axis_tready = m_axis_tready;

    wire logic unused_clk_rst = clk ^ rst;

end

endmodule

`resetall
