# Right after handoff restore: does old memory still change? Then read everything back.
stage restored
dma_hash after 1
stage after-hashed
handoff_after_restore
cp /handoff/quiesce.log "$E2E_OUT/" 2> /dev/null || true
stage after-restore
