# After handoff capture (90-handoff-capture.sh): the dump is on the NVMe file system.
dump_disk_done
stage captured
