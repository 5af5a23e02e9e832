# handoff load --kexec-reboot, then kexec -e: no crash. The next kernel boots the capture
# initrd that carries handoff's record and hooks, and handoff restore runs there. The record
# comes from `handoff save -o` and is passed with --record.
handoff save -o "$E2E_OUT/record-save.bin" --json > "$E2E_OUT/save.json" 2> "$E2E_OUT/save.err" ||
	fail saved "handoff save exited $?: $(tail -n 3 "$E2E_OUT/save.err")"
stage saved

rc=0
handoff load --kexec-reboot --record "$E2E_OUT/record-save.bin" --kernel "$CAPTURE_KERNEL" \
	--initrd "$CAPTURE_INITRD" --cmdline "$CAPTURE_APPEND" --no-capture --json \
	> "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail loaded "handoff load --kexec-reboot exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
[ "$(cat /sys/kernel/kexec_loaded)" = 1 ] || fail loaded "kexec_loaded is not 1 after handoff load"
cp /var/lib/handoff/loaded.json "$E2E_OUT/"
stage loaded

rc=0
handoff status --json > "$E2E_OUT/status.json" 2> "$E2E_OUT/status.err" || rc=$?
echo "$rc" > "$E2E_OUT/status.rc"
perturb_ahci "$E2E_OUT/perturbed"
stage perturbed
dump_config "$E2E_OUT/config-before-kexec"
kexec_exec
