# A plain copy of the dump headers and notes, before handoff capture (90-handoff-capture.sh).
plain_vmcore_head
