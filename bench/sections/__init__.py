"""One module per group of rows; each has IDS (the rows it always produces) and run(ctx)."""
