"""Loss-vs-position chart of ``longctx ppl`` records (torch-free: reads the JSONL records only)."""
from __future__ import annotations

import json
import math
from pathlib import Path


__all__ = ["read_ppl_records", "label", "plot_loss_vs_position"]


def read_ppl_records(path: str | Path) -> list[dict]:
    """Reads the records of a ppl JSONL file (one per RoPE setting and text).

    Raises:
        ValueError: missing file, a line that is not a ppl record, non-finite numbers.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"perplexity results file not found: {p}")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{p}:{n}: not a JSON line") from None
        if not isinstance(rec, dict) or not {"bucket_starts", "bucket_nll"} <= set(rec):
            raise ValueError(f"{p}:{n}: not a perplexity record (no bucket_starts / bucket_nll)")
        if not all(math.isfinite(float(v)) for v in rec["bucket_nll"]):
            raise ValueError(f"{p}:{n}: non-finite loss in bucket_nll")
        out.append(rec)
    if not out:
        raise ValueError(f"no perplexity records in {p}")
    return out


def label(rec: dict) -> str:
    """``"dynamic ×4"`` / ``"no scaling"`` from a record's ``rope_scaling``."""
    rs = rec.get("rope_scaling")
    if not rs:
        return "no scaling"
    return f"{rs.get('type')} ×{float(rs.get('factor', 1)):g}"


def plot_loss_vs_position(records: list[dict], out: str | Path, *, title: str | None = None,
                          window: int | None = None) -> Path:
    """One line per record: mean NLL per position bucket (x at the bucket's middle), PNG/SVG by suffix.

    Args:
        records: ppl records (:func:`read_ppl_records`).
        out: image path.
        title: figure title (default: the model and text).
        window: the model's trained window, drawn as a dashed vertical line when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for rec in records:
        xs = [s + c / 2 for s, c in zip(rec["bucket_starts"], rec["bucket_counts"])]
        ax.plot(xs, rec["bucket_nll"], marker="o", markersize=3, label=f"{label(rec)} (ppl {rec['perplexity']:.1f})")
    if window:
        ax.axvline(window, color="grey", linestyle="--", linewidth=1)
        ax.text(window, ax.get_ylim()[1], " trained window", va="top", fontsize=8, color="grey")
    ax.set_xlabel("token position")
    ax.set_ylabel("mean negative log-likelihood (nats)")
    first = records[0]
    ax.set_title(title or f"Loss vs position: {first.get('model', '')}, {Path(str(first.get('source', ''))).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
