"""handoff's benchmark (bench/run, python -m bench): our figures beside a peer's, one table."""
