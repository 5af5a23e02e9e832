# Issue 12's round trip: handoff save, handoff load with that record, then state the capture
# kernel's PCI core and drivers own is perturbed (lib.sh perturb_kernel_owned), and the kernel
# crashes. The capture side restores before drivers, the drivers must then work, and
# `handoff capture` writes the dump to the ext4 file system on the perturbed NVMe disk.
# $LOAD_EXTRA is appended to the capture kernel's command line (the lockdown variant);
# $LOAD_POLICY, when set, is the policy file `handoff load --policy` puts in the capture
# initrd for `handoff restore` (the kernel_owned = "rescan" variant).
dmesg > "$E2E_OUT/dmesg.txt"
handoff save -o "$E2E_OUT/record-save.bin" --json > "$E2E_OUT/save.json" 2> "$E2E_OUT/save.err" ||
	fail saved "handoff save exited $?: $(tail -n 3 "$E2E_OUT/save.err")"
stage saved

rc=0
handoff load --record "$E2E_OUT/record-save.bin" --kernel "$CAPTURE_KERNEL" \
	--initrd "$CAPTURE_INITRD" --cmdline "$CAPTURE_APPEND${LOAD_EXTRA:+ $LOAD_EXTRA}" \
	--dump-dir /dump/capture ${LOAD_POLICY:+--policy "$LOAD_POLICY"} \
	--json > "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail loaded "handoff load exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
stage loaded

drivers_bound > "$E2E_OUT/drivers-first"
dump_config "$E2E_OUT/config-before-perturb"
perturb_kernel_owned "$E2E_OUT/perturbed"
stage perturbed
dump_config "$E2E_OUT/config-before-crash"
crash
