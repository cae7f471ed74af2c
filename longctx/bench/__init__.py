"""longctx.bench."""
