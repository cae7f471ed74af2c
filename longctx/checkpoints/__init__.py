"""longctx.checkpoints."""
