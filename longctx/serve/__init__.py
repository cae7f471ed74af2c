"""longctx.serve."""
