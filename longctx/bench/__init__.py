"""longctx.bench: the prefill benchmark (``longctx bench prefill``).

``spec`` (options, the model spec a point builds), ``flops`` (FLOP count from ``ModelConfig``),
``measure`` (timing and memory of one point), ``runner`` (the run and its fresh-subprocess
protocol), ``report`` (the typed report, its JSON, Markdown and ``rich`` tables).
"""
