// AXI DMA <-> {= top =} adapter for the PYNQ-Z2 block design (a Vivado module reference: Verilog-2001).
// DMA MM2S stream: DMA_IN_WIDTH bits per pixel (ACC_IN_WIDTH used, the bits above ignored); DMA S2MM stream:
// DMA_OUT_WIDTH bits per logit (ACC_OUT_WIDTH sign-extended). aresetn (active low, from proc_sys_reset) is
// registered into the accelerator's synchronous, active-high rst. The MM2S tlast is not needed (the accelerator
// counts pixels); m_axis_tlast marks each image's last logit, so one S2MM transfer per image (or per batch, with the
// buffer as long as the batch's logits).
`timescale 1ns / 1ps
`default_nettype none

module instabnn_dma_wrapper #(
    parameter ACC_IN_WIDTH = {= acc_in_width =},      // the accelerator's s_axis_tdata width
    parameter ACC_OUT_WIDTH = {= acc_out_width =},     // the accelerator's m_axis_tdata width
    parameter DMA_IN_WIDTH = {= dma_in_width =},      // the DMA's MM2S stream width (>= ACC_IN_WIDTH)
    parameter DMA_OUT_WIDTH = {= dma_out_width =}      // the DMA's S2MM stream width (>= ACC_OUT_WIDTH)
) (
    (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)
    (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axis:m_axis, ASSOCIATED_RESET aresetn" *)
    input  wire                         aclk,
    (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)
    (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)
    input  wire                         aresetn,

    input  wire [DMA_IN_WIDTH - 1:0]    s_axis_tdata,
    input  wire                         s_axis_tvalid,
    output wire                         s_axis_tready,
    input  wire                         s_axis_tlast,

    output wire [DMA_OUT_WIDTH - 1:0]   m_axis_tdata,
    output wire [DMA_OUT_WIDTH / 8 - 1:0] m_axis_tkeep,
    output wire                         m_axis_tvalid,
    input  wire                         m_axis_tready,
    output wire                         m_axis_tlast
);

/* verilator lint_off PROCASSINIT */
reg rst_reg = 1'b1;                 // in reset from configuration until aresetn is sampled high
/* verilator lint_on PROCASSINIT */
always @(posedge aclk) rst_reg <= !aresetn;

wire [ACC_IN_WIDTH - 1:0] acc_s_tdata;
wire [ACC_OUT_WIDTH - 1:0] acc_m_tdata;
assign acc_s_tdata = s_axis_tdata[ACC_IN_WIDTH - 1:0];
generate
    if (DMA_OUT_WIDTH > ACC_OUT_WIDTH) begin : g_sign_extend
        assign m_axis_tdata = {{(DMA_OUT_WIDTH - ACC_OUT_WIDTH){acc_m_tdata[ACC_OUT_WIDTH - 1]}}, acc_m_tdata};
    end else begin : g_same_width
        assign m_axis_tdata = acc_m_tdata;
    end
endgenerate
assign m_axis_tkeep = {(DMA_OUT_WIDTH / 8){1'b1}};

wire unused_tlast = s_axis_tlast;

{= top =} accel (
    .clk(aclk),
    .rst(rst_reg),
    .s_axis_tdata(acc_s_tdata),
    .s_axis_tvalid(s_axis_tvalid),
    .s_axis_tready(s_axis_tready),
    .m_axis_tdata(acc_m_tdata),
    .m_axis_tvalid(m_axis_tvalid),
    .m_axis_tready(m_axis_tready),
    .m_axis_tlast(m_axis_tlast)
);

endmodule

`default_nettype wire
