"""``longctx report``: one self-contained, clickable HTML page from NIAH results files (no torch).

``write_report(["results/needle.jsonl"], "plots/needle.html")`` writes heatmaps (runs side by
side), per-length scores with Wilson intervals, timings, run metadata, and a drill-down panel per
cell (expected answers, the response with matches highlighted, depths, needle token span, the
prompt text around the needle and the question).
"""
from longctx.report.html import build_report, write_report

__all__ = ["build_report", "write_report"]
