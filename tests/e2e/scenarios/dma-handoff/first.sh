# The same NIC as dma-baseline (4096 RX descriptors, 50 frames/s, left receiving at the
# crash), with handoff: save and load through handoff, then crash.
rc=0
handoff load --kernel "$CAPTURE_KERNEL" --initrd "$CAPTURE_INITRD" --cmdline "$CAPTURE_APPEND" \
	--dump-dir /results/capture --json > "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail loaded "handoff load exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
cp /var/lib/handoff/record.bin "$E2E_OUT/"
stage loaded
dma_nic_up 4096
stage dma-receiving
crash
