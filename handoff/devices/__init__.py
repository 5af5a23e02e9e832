"""The device model (bus, device, driver, class, topology) and its collectors."""
