"""``longctx ppl``: position-wise perplexity of a long text, one line per RoPE setting."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from longctx.cli.common import CliError, ModelArgs, cli_errors, human_bytes, model_options


def register(app: typer.Typer) -> None:
    @app.command()
    @cli_errors
    @model_options(skip=("rope_scaling", "chunk_size"))  # its own: a list of settings; a logits chunk
    def ppl(
        text: str = typer.Argument(..., help="A UTF-8 text file, a folder of *.txt files, or a built-in haystack "
                                             "name (austen, web_bible)."),
        max_len: str = typer.Option("8K", "--max-len", help="Tokens of the text to score (K = 1000, Ki = 1024)."),
        rope_scaling: Optional[List[str]] = typer.Option(
            None, "--rope-scaling", help="RoPE setting to compare (repeat the option: --rope-scaling none "
                                         "--rope-scaling dynamic:4 --rope-scaling yarn:4). Default: the checkpoint's."),
        bucket: str = typer.Option("1K", "--bucket", help="Position bucket width in tokens for the averages."),
        chunk_size: int = typer.Option(1024, "--chunk-size", help="Tokens per forward: the live logits are "
                                                                  "chunk x vocab, never max-len x vocab."),
        out: Path = typer.Option(Path("results/ppl.jsonl"), "--out", help="JSONL file; one record per setting is "
                                                                          "appended."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Loss-vs-position chart of this run's settings "
                                                                 "(PNG/SVG)."),
        margs: ModelArgs = ModelArgs(),
    ) -> None:
        """Per-token loss of a long text averaged in position buckets: the long-context diagnostic beside NIAH."""
        from longctx.data import BUILTIN_HAYSTACKS, load_haystack_text, read_haystack_path
        from longctx.niah.grid import parse_size
        from longctx.ppl.compute import perplexity
        from longctx.ppl.plot import plot_loss_vs_position

        n_tokens, width = parse_size(max_len), parse_size(bucket)
        if n_tokens < 2:
            raise CliError("--max-len must be at least 2 tokens")
        if chunk_size < 1:
            raise CliError(f"--chunk-size must be at least 1, got {chunk_size}")
        if out.exists() and not out.is_file():
            raise CliError(f"--out {out} is not a file")
        if text in BUILTIN_HAYSTACKS:
            body = load_haystack_text(text)
        elif Path(text).exists():
            body = read_haystack_path(text)
        else:
            raise CliError(f"text not found: {text} (a file, a folder or one of {', '.join(BUILTIN_HAYSTACKS)})")
        settings = list(rope_scaling) if rope_scaling else [None]
        records = []
        for setting in settings:
            m = margs.load(rope_scaling=setting) if setting is not None else margs.load()
            ids = m.tokenizer.encode(body)[:n_tokens]
            if len(ids) < n_tokens:
                typer.echo(f"note: the text has only {len(ids)} tokens; scoring all of them", err=True)
            res = perplexity(m, ids, chunk_size=chunk_size, bucket_size=width, source=str(text))
            rec = res.as_record()
            records.append(rec)
            out.parent.mkdir(parents=True, exist_ok=True)
            with out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            typer.echo(f"{setting or 'checkpoint default'}: {res.tokens} tokens, ppl {res.perplexity:.3f} "
                       f"(mean NLL {res.mean_nll:.4f}), base {res.rope_base:.6g}, {res.seconds:.1f} s, "
                       f"peak {human_bytes(res.peak_mem_bytes)}")
        typer.echo(f"results: {out}")
        if plot is not None:
            window = m.config.max_position_embeddings
            typer.echo(f"plot: {plot_loss_vs_position(records, plot, window=window)}")
