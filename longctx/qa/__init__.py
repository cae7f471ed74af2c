"""longctx.qa."""
