// The DMA side of the board in simulation (instabnn.deploy.driver's SimBackend): the board's adapter
// (instabnn_dma_wrapper) with its DMA-width streams on the port names of cosim_harness's device, held idle for 16
// cycles after reset (on the board, software starts the DMA well after the reset). The widths are the parameters'
// defaults: the co-simulation harness instantiates this module without parameters.
`timescale 1ns / 1ps
`default_nettype none
module instabnn_deploy_sim_top #(
    parameter int DMA_IN_WIDTH = {= dma_in_width =},    // the MM2S stream width of the board's AXI DMA
    parameter int DMA_OUT_WIDTH = {= dma_out_width =}    // the S2MM stream width
) (
    input  wire logic clk,
    input  wire logic rst,
    input  wire logic [DMA_IN_WIDTH - 1:0] s_axis_tdata,
    input  wire logic s_axis_tvalid,
    output wire logic s_axis_tready,
    output wire logic [DMA_OUT_WIDTH - 1:0] m_axis_tdata,
    output wire logic m_axis_tvalid,
    input  wire logic m_axis_tready,
    output wire logic m_axis_tlast
);
logic [4:0] settle_reg;
always_ff @(posedge clk) begin
    if (rst) settle_reg <= '0;
    else if (!settle_reg[4]) settle_reg <= settle_reg + 1;
end
wire logic go = settle_reg[4];
wire logic wrap_s_tready, wrap_m_tvalid;
wire logic [DMA_OUT_WIDTH / 8 - 1:0] unused_tkeep;
instabnn_dma_wrapper #(.DMA_IN_WIDTH(DMA_IN_WIDTH), .DMA_OUT_WIDTH(DMA_OUT_WIDTH)) wrap (
    .aclk(clk), .aresetn(!rst),
    .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid && go), .s_axis_tready(wrap_s_tready),
    .s_axis_tlast(1'b0),
    .m_axis_tdata(m_axis_tdata), .m_axis_tkeep(unused_tkeep), .m_axis_tvalid(wrap_m_tvalid),
    .m_axis_tready(m_axis_tready && go), .m_axis_tlast(m_axis_tlast)
);
assign s_axis_tready = wrap_s_tready && go;
assign m_axis_tvalid = wrap_m_tvalid && go;
endmodule
`default_nettype wire
