# Baseline without handoff: load the capture kernel by hand, perturb the COMMAND register of
# a function no driver owns, record config space, crash.
size=$(cat /sys/kernel/kexec_crash_size)
[ "$size" -gt 0 ] || fail kexec-loaded "no crashkernel reservation (kexec_crash_size is 0)"
echo "$size" > "$E2E_OUT/kexec_crash_size"
kexec -p "$CAPTURE_KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || fail kexec-loaded "kexec_crash_loaded is not 1"
stage kexec-loaded

# The first function with no driver that is not a host, ISA or PCI bridge.
target=
for d in /sys/bus/pci/devices/*; do
	[ -e "$d/driver" ] && continue
	case "$(cat "$d/class")" in 0x0600* | 0x0601* | 0x0604*) continue ;; esac
	target=${d##*/}
	break
done
[ -n "$target" ] || fail perturbed "no driverless PCI function to perturb"
before=$(setpci -s "$target" COMMAND)
# Flip INTx Disable (bit 10): writable on every QEMU device, harmless with no driver bound.
want=$(printf '%04x' $((0x$before ^ 0x0400)))
setpci -s "$target" COMMAND="$want"
after=$(setpci -s "$target" COMMAND)
[ "$after" = "$want" ] || fail perturbed "$target COMMAND reads $after after writing $want"
echo "$target $before $after" > "$E2E_OUT/perturbed"
stage perturbed

lspci -n -xxxx > "$E2E_OUT/lspci-xxxx.txt"
dmesg > "$E2E_OUT/dmesg.txt" # holds the pci=earlydump lines (below the console loglevel)
dump_config "$E2E_OUT/config-before-crash"
crash
