# Right after handoff restore: does old memory still change? Then read everything back.
stage restored
dma_hash after 1
stage after-hashed
handoff_after_restore
stage after-restore
