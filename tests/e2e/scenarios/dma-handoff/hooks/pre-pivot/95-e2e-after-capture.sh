# After handoff capture (90-handoff-capture.sh): the dump is on the results disk.
handoff_after_capture
stage captured
