# handoff from the working tree runs under Debian's python3.11, its C extension included.
command -v handoff > "$E2E_OUT/handoff-path"
handoff --version > "$E2E_OUT/handoff-version"
PYTHONPATH=/opt/handoff/lib python3 -c 'import handoff._native' || fail handoff-runs "handoff._native does not import"
stage handoff-runs
kexec -p "$CAPTURE_KERNEL" --initrd="$CAPTURE_INITRD" --append="$CAPTURE_APPEND"
stage kexec-loaded
crash
