# Before handoff restore (30-handoff.sh): config space, registers and the NIC's RX state.
dma_rx_regs > "$E2E_OUT/rx-before-restore"
handoff_before_restore
stage before-restore
