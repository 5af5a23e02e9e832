# The first of all hooks, right before handoff's first (00-handoff-quiesce.sh): the host
# stamps this marker's arrival, the time DMA must stop within 0.2 s of.
stage hook-start
