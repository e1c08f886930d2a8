# Vivado's project and block-design commands as plain Tcl procs, so that tclsh can run the generated PYNQ-Z2 script
# (hw/bitstream/templates/pynq_z2_block_design.tcl) without Vivado (tests/test_bitstream.py). Each proc records its
# call and checks its arguments the way Vivado would refuse them: a pin or interface pin of a cell that was not
# created or that its IP does not have (names as in the IPs' product guides: PG082 processing_system7, PG021
# axi_dma, PG164 proc_sys_reset; a module reference's ports are read from its Verilog file), an IP without a
# version, a pin on two nets, a property read before it is set, and, in validate_bd_design, a clock or stream
# interface whose FREQ_HZ differs from the clock that drives it. At the end `stub_dump` prints what was built, one
# fact per line, for the test's own checks.
#
# Set before sourcing: ::stub_board (the board part that get_board_parts finds; "" for none).

set ::calls {}
set ::cells [dict create]        ;# cell -> {kind ip|module vlnv-or-module pins intf-pins}
set ::props [dict create]        ;# object -> {property value ...}
set ::pin_net [dict create]      ;# "cell/pin" -> net index
set ::nets {}                    ;# list of nets, each a list of "cell/pin"
set ::intf_nets {}
set ::added_files {}
set ::bd ""
set ::validated 0

# the pins and interface pins that the generated script may name, per IP (VLNV with its version)
set ::ip_pins [dict create \
    xilinx.com:ip:processing_system7:5.5 {
        {FCLK_CLK0 FCLK_RESET0_N M_AXI_GP0_ACLK S_AXI_HP0_ACLK IRQ_F2P}
        {M_AXI_GP0 S_AXI_HP0 DDR FIXED_IO}} \
    xilinx.com:ip:axi_dma:7.1 {
        {s_axi_lite_aclk m_axi_mm2s_aclk m_axi_s2mm_aclk axi_resetn mm2s_introut s2mm_introut}
        {S_AXI_LITE M_AXI_MM2S M_AXI_S2MM M_AXIS_MM2S S_AXIS_S2MM}} \
    xilinx.com:ip:proc_sys_reset:5.0 {
        {slowest_sync_clk ext_reset_in aux_reset_in mb_debug_sys_rst dcm_locked mb_reset bus_struct_reset
         peripheral_reset interconnect_aresetn peripheral_aresetn}
        {}}]

proc stub_fail {msg} { error "stub: $msg" }
proc record {args} { lappend ::calls $args }

proc set_prop {obj key value} {
    if {![dict exists $::props $obj]} { dict set ::props $obj [dict create] }
    dict set ::props $obj $key $value
}

# ---------------------------------------------------------------------------------------------------- project

proc create_project {args} {
    record create_project {*}$args
    if {[lsearch -exact $args -part] < 0} { stub_fail "create_project without -part" }
}
proc get_board_parts {args} {
    set pattern [lindex $args end]
    if {$::stub_board ne "" && [string match $pattern $::stub_board]} { return [list $::stub_board] }
    return {}
}
proc current_project {} { return project }
proc current_fileset {} { return fileset:sources_1 }
proc add_files {args} {
    record add_files {*}$args
    foreach f [lindex $args end] {
        if {![file isfile $f]} { stub_fail "add_files: no such file $f" }
        lappend ::added_files [file normalize $f]
    }
}
proc get_files {args} {
    set names [lindex $args end]
    if {$names eq "$::bd.bd"} { return bd:$::bd }
    foreach f $names {
        if {[lsearch -exact $::added_files [file normalize $f]] < 0} { stub_fail "get_files: $f was not added" }
    }
    return $names
}
proc update_compile_order {args} { record update_compile_order {*}$args }

proc set_property {args} {
    record set_property {*}$args
    if {[lindex $args 0] eq "-dict"} {
        set pairs [lindex $args 1]
        set obj [lindex $args 2]
        if {[llength $pairs] % 2} { stub_fail "set_property -dict: odd list on $obj" }
        foreach {key value} $pairs {
            if {[string match cell:* $obj] && ![string match CONFIG.* $key]} {
                stub_fail "set_property -dict on $obj: $key is not a CONFIG. property"
            }
            set_prop $obj $key $value
        }
    } else {
        lassign $args key value obj
        if {$obj eq ""} { stub_fail "set_property $key: no object" }
        foreach o $obj { set_prop $o $key $value }
    }
}

proc get_property {key obj} {
    if {$obj eq "pin:ps7/FCLK_CLK0" && $key eq "CONFIG.FREQ_HZ"} {
        # the PS derives the clock from PCW_FPGA0_PERIPHERAL_FREQMHZ: it must be set before it is read
        if {![dict exists $::props cell:ps7 CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ]} {
            stub_fail "FREQ_HZ of ps7/FCLK_CLK0 read before CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ was set"
        }
        return [expr {round([dict get $::props cell:ps7 CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ] * 1e6)}]
    }
    if {$key eq "PROGRESS"} { return "100%" }
    stub_fail "get_property $key of $obj: not modelled"
}

# ---------------------------------------------------------------------------------------------------- block design

proc create_bd_design {name} { record create_bd_design $name; set ::bd $name }

# the ports of a module reference: from the Verilog file added to the project that defines it
proc module_ports {name} {
    foreach f $::added_files {
        set fh [open $f]
        set text [read $fh]
        close $fh
        if {[regexp "module\\s+$name\\M(\[^;\]*);" $text -> header]} {
            set ports {}
            foreach {-> port} [regexp -all -inline {(?:input|output)\s+wire\s+(?:\[[^\]]*\]\s*)?(\w+)} $header] {
                lappend ports $port
            }
            return $ports
        }
    }
    stub_fail "create_bd_cell -reference $name: no added file defines module $name"
}

proc create_bd_cell {args} {
    record create_bd_cell {*}$args
    if {$::bd eq ""} { stub_fail "create_bd_cell before create_bd_design" }
    set name [lindex $args end]
    if {[dict exists $::cells $name]} { stub_fail "create_bd_cell: cell $name exists" }
    set type [lindex $args [expr {[lsearch -exact $args -type] + 1}]]
    if {$type eq "ip"} {
        set vlnv [lindex $args [expr {[lsearch -exact $args -vlnv] + 1}]]
        if {![regexp {^[^:]+:[^:]+:[^:]+:[0-9]+\.[0-9]+$} $vlnv]} {
            stub_fail "create_bd_cell $name: IP $vlnv without a version (vendor:library:name:version)"
        }
        if {![dict exists $::ip_pins $vlnv]} { stub_fail "create_bd_cell $name: IP $vlnv not modelled" }
        lassign [dict get $::ip_pins $vlnv] pins intf
        dict set ::cells $name [list ip $vlnv $pins $intf]
    } elseif {$type eq "module"} {
        set ref [lindex $args [expr {[lsearch -exact $args -reference] + 1}]]
        set pins {}
        set intf {}
        foreach port [module_ports $ref] {
            if {[regexp {^([sm]_axis)_t} $port -> bus]} {
                if {[lsearch -exact $intf $bus] < 0} { lappend intf $bus }
            } else {
                lappend pins $port
            }
        }
        dict set ::cells $name [list module $ref $pins $intf]
    } else {
        stub_fail "create_bd_cell $name: type $type"
    }
    return cell:$name
}

proc check_pin {path kind} {
    set path [string trimleft $path /]
    lassign [split $path /] cell pin
    if {![dict exists $::cells $cell]} { stub_fail "$kind $path: no cell $cell" }
    lassign [dict get $::cells $cell] - what pins intf
    set known [expr {$kind eq "get_bd_pins" ? $pins : $intf}]
    if {[lsearch -exact $known $pin] < 0} { stub_fail "$kind $path: $what has no such pin ($known)" }
    return $path
}
proc get_bd_pins {path} { return pin:[check_pin $path get_bd_pins] }
proc get_bd_intf_pins {path} { return intf:[check_pin $path get_bd_intf_pins] }

proc connect_bd_net {args} {
    record connect_bd_net {*}$args
    set net {}
    foreach p $args {
        if {![string match pin:* $p]} { stub_fail "connect_bd_net: $p is not a pin" }
        set p [string range $p 4 end]
        if {[dict exists $::pin_net $p]} { stub_fail "connect_bd_net: $p is on two nets" }
        dict set ::pin_net $p [llength $::nets]
        lappend net $p
    }
    lappend ::nets $net
}
proc connect_bd_intf_net {a b} {
    record connect_bd_intf_net $a $b
    foreach p [list $a $b] {
        if {![string match intf:* $p]} { stub_fail "connect_bd_intf_net: $p is not an interface pin" }
        foreach n $::intf_nets { if {[lsearch -exact $n $p] >= 0} { stub_fail "connect_bd_intf_net: $p twice" } }
    }
    lappend ::intf_nets [list $a $b]
}

proc apply_bd_automation {args} {
    record apply_bd_automation {*}$args
    set rule [lindex $args [expr {[lsearch -exact $args -rule] + 1}]]
    set config [lindex $args [expr {[lsearch -exact $args -config] + 1}]]
    if {[llength $config] % 2} { stub_fail "apply_bd_automation: -config is not a property list" }
    if {$rule eq "xilinx.com:bd_rule:processing_system7"} {
        if {[lindex $args end] ne "cell:ps7"} { stub_fail "apply_bd_automation $rule on [lindex $args end]" }
        return
    }
    if {$rule ne "xilinx.com:bd_rule:axi4"} { stub_fail "apply_bd_automation: rule $rule not modelled" }
    check_pin [string range [lindex $args end] 5 end] get_bd_intf_pins
    foreach key {Clk_master Clk_slave Clk_xbar} {
        if {[dict exists $config $key]} { check_pin [dict get $config $key] get_bd_pins }
    }
    foreach key {Master Slave} {
        if {[dict exists $config $key]} { check_pin [dict get $config $key] get_bd_intf_pins }
    }
}
proc assign_bd_address {} { record assign_bd_address }

# FREQ_HZ of a module reference's pin or interface: 100 MHz unless set
proc freq_of {obj} {
    if {[dict exists $::props $obj CONFIG.FREQ_HZ]} { return [dict get $::props $obj CONFIG.FREQ_HZ] }
    return 100000000
}

proc validate_bd_design {} {
    record validate_bd_design
    set fclk [get_property CONFIG.FREQ_HZ pin:ps7/FCLK_CLK0]
    set clock_net [lindex $::nets [dict get $::pin_net ps7/FCLK_CLK0]]
    dict for {cell info} $::cells {
        lassign $info kind - pins intf
        if {$kind ne "module"} { continue }
        foreach pin $pins {
            if {![dict exists $::pin_net $cell/$pin] && $pin ne "s_axis_tlast"} { stub_fail "validate: $cell/$pin unconnected" }
        }
        # the module's clock is on FCLK_CLK0's net, and its clock and stream interfaces say FCLK_CLK0's frequency
        if {[lsearch -exact $clock_net $cell/aclk] < 0} { stub_fail "validate: $cell/aclk is not on FCLK_CLK0's net" }
        if {[freq_of pin:$cell/aclk] != $fclk} {
            stub_fail "validate: FREQ_HZ of $cell/aclk is [freq_of pin:$cell/aclk], its clock FCLK_CLK0 runs at $fclk"
        }
        foreach bus $intf {
            set connected 0
            foreach n $::intf_nets { if {[lsearch -exact $n intf:$cell/$bus] >= 0} { set connected 1 } }
            if {!$connected} { stub_fail "validate: $cell/$bus unconnected" }
            if {[freq_of intf:$cell/$bus] != $fclk} {
                stub_fail "validate: FREQ_HZ of $cell/$bus is [freq_of intf:$cell/$bus], the DMA's stream runs at $fclk"
            }
        }
    }
    foreach pin {dma/s_axi_lite_aclk dma/m_axi_mm2s_aclk dma/m_axi_s2mm_aclk rst_fclk0/slowest_sync_clk} {
        if {[lsearch -exact $clock_net $pin] < 0} { stub_fail "validate: $pin is not on FCLK_CLK0's net" }
    }
    set ::validated 1
}
proc save_bd_design {} { record save_bd_design }

# ---------------------------------------------------------------------------------------------------- runs

proc generate_target {args} {
    record generate_target {*}$args
    set handoff [file join $::proj_dir $::bd.gen sources_1 bd $::bd hw_handoff]
    file mkdir $handoff
    close [open [file join $handoff $::bd.hwh] w]
}
proc make_wrapper {args} {
    record make_wrapper {*}$args
    set f [file join $::proj_dir ${::bd}_wrapper.v]
    set fh [open $f w]
    puts $fh "module ${::bd}_wrapper; endmodule"
    close $fh
    return $f
}
proc launch_runs {run args} {
    record launch_runs $run {*}$args
    if {!$::validated} { stub_fail "launch_runs before validate_bd_design" }
    if {$run eq "impl_1"} {
        set dir [file join $::proj_dir $::bd.runs impl_1]
        file mkdir $dir
        close [open [file join $dir ${::bd}_wrapper.bit] w]
    }
}
proc wait_on_run {run} { record wait_on_run $run }
proc get_runs {run} { return run:$run }
proc open_run {run} { record open_run $run }
proc get_cells {args} {
    record get_cells {*}$args
    if {[lsearch -glob $args -filter] >= 0 || [lsearch -exact $args -hierarchical] >= 0} {
        stub_fail "get_cells $args: only exact cell names are modelled"
    }
    set name [lindex $args end]
    if {$name eq "${::bd}_i/accel" && [dict exists $::cells accel]} { return $name }
    return {}
}
proc report_utilization {args} { record report_utilization {*}$args }
proc report_timing_summary {args} { record report_timing_summary {*}$args }

# ---------------------------------------------------------------------------------------------------- the result

proc stub_dump {} {
    dict for {cell info} $::cells { puts "CELL $cell [lindex $info 0] [lindex $info 1]" }
    dict for {obj kv} $::props { dict for {k v} $kv { puts [list PROP $obj $k $v] } }
    foreach n $::nets { puts "NET $n" }
    foreach n $::intf_nets { puts "INTF_NET $n" }
    foreach c $::calls { puts [list CALL {*}$c] }
}
