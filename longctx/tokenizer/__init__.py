"""longctx.tokenizer."""
