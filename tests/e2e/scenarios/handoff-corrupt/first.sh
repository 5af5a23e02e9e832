# A corrupted handoff cpio: handoff load --dry-run builds the initrd copy and prints the exact
# kexec argv; bytes inside the record note in that copy are flipped (the payload, so the note
# is still found and its SHA-256 fails), and kexec runs with the printed argv. The capture
# kernel must still save the dump; restore must refuse and say why.
W=/var/lib/handoff-corrupt
rc=0
handoff load --dry-run --work-dir "$W" --kernel "$CAPTURE_KERNEL" --initrd "$CAPTURE_INITRD" \
	--cmdline "$CAPTURE_APPEND" --dump-dir /results/capture --json \
	> "$E2E_OUT/load.json" 2> "$E2E_OUT/load.err" || rc=$?
echo "$rc" > "$E2E_OUT/load.rc"
[ "$rc" = 0 ] || fail built "handoff load --dry-run exited $rc: $(tail -n 5 "$E2E_OUT/load.err")"
cp "$W/record.bin" "$E2E_OUT/record.bin"
stage built

# Flip 16 bytes in the middle of the record's payload inside the handoff part of the copy.
python3 - "$E2E_OUT/load.json" "$E2E_OUT/corruption" <<'PY' || fail corrupted "could not corrupt the record"
import json, sys
doc = json.load(open(sys.argv[1]))
path, part = doc["initrd_copy"], doc["parts"]["handoff"]
with open(path, "r+b") as f:
    f.seek(part["offset"])
    blob = f.read(part["size"])
    magic = blob.find(b"HANDOFF\0\x01\0")  # the record header, after the note header
    assert magic >= 0, "no record header in the handoff cpio"
    at = part["offset"] + magic + 256 + 200  # 200 bytes into the payload
    f.seek(at)
    old = f.read(16)
    f.seek(at)
    f.write(bytes(b ^ 0xFF for b in old))
open(sys.argv[2], "w").write(f"{path} {at} {old.hex()}\n")
PY
stage corrupted

# The exact argv the dry run printed.
python3 -c 'import json, subprocess, sys; sys.exit(subprocess.call(json.load(open(sys.argv[1]))["argv"]))' \
	"$E2E_OUT/load.json" 2> "$E2E_OUT/kexec.err" || fail kexec-loaded "kexec exited $?: $(cat "$E2E_OUT/kexec.err")"
[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || fail kexec-loaded "kexec_crash_loaded is not 1"
stage kexec-loaded
perturb_ahci "$E2E_OUT/perturbed"
dump_config "$E2E_OUT/config-before-crash"
crash
