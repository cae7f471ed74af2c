"""Position-wise perplexity of a long text: ``compute`` (torch, the engine) and ``plot`` (torch-free)."""
