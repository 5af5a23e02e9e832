# The first kernel booted from a real dracut initrd with the early collector's module
# (contrib/dracut/90handoff-early) installed as contrib/README.md says. Keep what its pre-udev
# hook left in /run/handoff and the evidence of when it ran, then let handoff save read it.
early_save_and_power_off
