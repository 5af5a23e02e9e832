# Before handoff restore (30-handoff.sh): config space and BAR registers as the crash left them.
handoff_before_restore
stage before-restore
