# After handoff restore (30-handoff.sh), still before any driver: mark the time restore took,
# then read everything back.
stage restored
handoff_after_restore
stage after-restore
