# The first kernel booted from a real initramfs-tools initrd with the early collector's hooks
# (contrib/initramfs-tools) installed as contrib/README.md says. Keep what its init-top hook
# left in /run/handoff and the evidence of when it ran, then let handoff save read it.
early_evidence
stage evidence

rc=0
handoff save -o "$E2E_OUT/record.bin" --json > "$E2E_OUT/save.json" 2> "$E2E_OUT/save.err" ||
	rc=$?
echo "$rc" > "$E2E_OUT/save.rc"
[ "$rc" = 0 ] || fail saved "handoff save exited $rc: $(tail -n 3 "$E2E_OUT/save.err")"
stage saved
power_off
