# First of all hooks: has old memory changed while the capture kernel booted, and now?
stage dma-arrival
info "capture cmdline $(cat /proc/cmdline)"
dma_hash arrival 1
stage arrival-hashed
# QEMU 7.2's e1000e aborts (e1000e_intrmgr_on_throttling_timer: Assertion
# `!msix_enabled(...)') when a driver binds it while the interrupt throttling timer that the
# still-receiving NIC armed is pending, so the capture kernel never loads e1000e here; the NIC
# then receives for as long as its ring lasts unless something stops it.
sed -i '/e1000e/d' /etc/e2e/modules-all
