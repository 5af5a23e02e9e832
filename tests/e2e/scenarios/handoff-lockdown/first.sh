# The capture kernel boots with lockdown=integrity: config writes and BAR mappings are refused
# there, so handoff restore must fall back to what the kernel still does (reset, enable 1,0).
# The first kernel is not locked down, but this round trip loads with kexec_file_load
# (--syscall file: kexec -s), as Secure Boot machines and Fedora do; the others use kexec_load.
rc=0
handoff load --kernel "$CAPTURE_KERNEL" --initrd "$CAPTURE_INITRD" --syscall file \
	--cmdline "$CAPTURE_APPEND lockdown=integrity" --dump-dir /results/capture --json \
	> "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail loaded "handoff load exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
cp /var/lib/handoff/record.bin "$E2E_OUT/"
stage loaded
perturb_ahci "$E2E_OUT/perturbed"
stage perturbed
dump_config "$E2E_OUT/config-before-crash"
crash
