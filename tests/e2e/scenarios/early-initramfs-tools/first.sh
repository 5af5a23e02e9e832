# The first kernel booted from a real initramfs-tools initrd with the early collector's hooks
# (contrib/initramfs-tools) installed as contrib/README.md says. Keep what its init-top hook
# left in /run/handoff and the evidence of when it ran, then let handoff save read it.
early_save_and_power_off
