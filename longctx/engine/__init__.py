"""longctx.engine."""
