"""Well-known paths shared by load (which packs them), restore and capture (which read them)."""

# spec §6: the record travels as handoff/record.note in the capture initrd.
CAPTURE_PREFIX = "/handoff"
CAPTURE_RECORD = f"{CAPTURE_PREFIX}/record.note"
# Written by `handoff restore` in the capture kernel, kept by `handoff capture` as a note.
CAPTURE_REPORT = f"{CAPTURE_PREFIX}/restore-report.json"
# The capture kernel's first hook, handoff-quiesce (csrc/quiesce), and the log restore reads.
CAPTURE_QUIESCER = f"{CAPTURE_PREFIX}/bin/handoff-quiesce"
CAPTURE_QUIESCE_LOG = f"{CAPTURE_PREFIX}/quiesce.log"
VMCORE = "/proc/vmcore"
# Copies the restore hook leaves for the distro's own dump step, which runs after the switch
# to the real root: the initramfs (with /handoff) is freed then, /run is carried over.
KEPT_DIR = "/run/handoff"
KEPT_RECORD = f"{KEPT_DIR}/record.note"
KEPT_REPORT = f"{KEPT_DIR}/restore-report.json"
