# Measured alongside, not handoff: under lockdown, does sysfs enable=1 then enable=0
# (pci_enable_device + pci_disable_device, kernel-side writes) clear Bus Master?
lockdown_enable_probe
