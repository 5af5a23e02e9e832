# Where handoff's restore would have run (pre-udev/30): does old memory still change?
stage after-hooks
dma_hash after 1
stage after-hashed
