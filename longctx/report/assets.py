"""The stylesheet and script inlined into every report page (no external resources).

Kept as Python strings so the report needs no package data files; :mod:`longctx.report.html`
puts them into ``<style>`` and ``<script>`` elements.
"""
from __future__ import annotations

__all__ = ["CSS", "JS"]

CSS = r"""
:root { --fg:#1d1d1d; --muted:#5b5b5b; --line:#d9d9d9; --bg:#fafafa; --card:#fff; --focus:#1a56db;
        --hit:#0b7a50; --miss:#b3123a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
       background:var(--bg); }
header { padding:14px 20px 8px; border-bottom:1px solid var(--line); background:var(--card); }
h1 { font-size:20px; margin:0 0 4px; }
h2 { font-size:16px; margin:0 0 8px; }
h3 { font-size:14px; margin:14px 0 6px; }
h4 { font-size:13px; margin:12px 0 4px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
.sub, .help, .note { color:var(--muted); margin:2px 0; }
.run .note { font-size:12px; max-width:60em; }
.tools { display:flex; flex-wrap:wrap; gap:14px; align-items:center; margin-top:6px; }
button { font:inherit; padding:4px 10px; border:1px solid #888; border-radius:4px; background:#fff; cursor:pointer; }
button[aria-pressed="true"] { background:#1d1d1d; color:#fff; }
:focus-visible { outline:3px solid var(--focus); outline-offset:2px; }
.legend { display:inline-flex; align-items:center; gap:6px; color:var(--muted); }
.legend .bar { display:inline-block; width:160px; height:12px; border-radius:2px;
               background:linear-gradient(90deg, var(--g)); }
body.cb .legend .bar { background:linear-gradient(90deg, var(--ga)); }
.layout { display:grid; grid-template-columns:minmax(0,1fr) minmax(340px,36%); gap:16px; padding:16px 20px; }
@media (max-width: 900px) { .layout { grid-template-columns:1fr; } }
.runs { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; }
.run { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:12px 14px;
       flex:1 1 340px; min-width:0; overflow-x:auto; }
table { border-collapse:collapse; }
.heat { border-collapse:separate; border-spacing:2px; }
.heat th { font-weight:normal; color:var(--muted); padding:2px 6px; white-space:nowrap; }
.heat thead th { text-align:center; }
.heat tbody th { text-align:right; }
.heat td.cell { min-width:44px; height:28px; text-align:center; font-variant-numeric:tabular-nums;
                background:var(--c); color:var(--fg); cursor:pointer; border:2px solid transparent;
                border-radius:3px; }
body.cb .heat td.cell { background:var(--a); color:var(--ta); }
.heat td.cell.missing, body.cb .heat td.cell.missing { background:repeating-linear-gradient(45deg,#ededed 0 4px,#d6d6d6 4px 6px);
                color:var(--muted); }
.heat td.cell:hover { border-color:#555; }
.heat td.cell[aria-selected="true"] { border-color:#000; box-shadow:0 0 0 2px #fff inset; font-weight:bold; }
.heat td.avg { text-align:center; color:var(--muted); font-variant-numeric:tabular-nums; border-top:1px solid var(--line); }
.num { text-align:right; font-variant-numeric:tabular-nums; }
.tbl th, .tbl td { padding:3px 8px; border-bottom:1px solid var(--line); }
.tbl th { text-align:left; font-weight:600; }
.tbl tr.total td { font-weight:600; }
details { margin-top:10px; }
summary { cursor:pointer; font-weight:600; }
dl.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; margin:6px 0; }
dl.meta dt { color:var(--muted); }
dl.meta dd { margin:0; overflow-wrap:anywhere; }
#panel { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:12px 14px;
         position:sticky; top:12px; max-height:calc(100vh - 24px); overflow:auto; align-self:start; }
#panel .close { float:right; }
.rec { border-top:1px solid var(--line); margin-top:10px; padding-top:6px; }
pre { white-space:pre-wrap; overflow-wrap:anywhere; margin:0; padding:8px; background:#f3f3f3; border-radius:4px;
      font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
pre + pre { margin-top:6px; }
mark.hit { background:#c8f2df; color:inherit; outline:1px solid var(--hit); }
mark.needle { background:#ffe58a; color:inherit; outline:1px solid #b58900; }
ul.expected { list-style:none; padding:0; margin:0; display:flex; flex-wrap:wrap; gap:6px; }
ul.expected li { padding:1px 8px; border-radius:10px; border:1px solid; }
ul.expected li.found { color:var(--hit); border-color:var(--hit); }
ul.expected li.missed { color:var(--miss); border-color:var(--miss); }
.err { color:var(--miss); }
.sr { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); white-space:nowrap; }
"""

JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var panel = document.getElementById("panel");
  var current = null;

  function el(tag, cls, kids) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    (kids || []).forEach(function (k) {
      e.appendChild(typeof k === "string" ? document.createTextNode(k) : k);
    });
    return e;
  }
  function num(v, d) {
    if (v === null || v === undefined || isNaN(v)) return "n/a";
    return Number(v).toLocaleString("en-US", {maximumFractionDigits: d === undefined ? 2 : d});
  }
  function marked(text, spans, cls) {
    var out = el("pre", cls === "needle" ? "excerpt" : "response"), pos = 0;
    spans = spans.slice().sort(function (a, b) { return a[0] - b[0]; });
    spans.forEach(function (s) {
      if (s[0] < pos) return;
      out.appendChild(document.createTextNode(text.slice(pos, s[0])));
      out.appendChild(el("mark", cls, [text.slice(s[0], s[1])]));
      pos = s[1];
    });
    out.appendChild(document.createTextNode(text.slice(pos)));
    return out;
  }
  function fact(dl, name, value) {
    dl.appendChild(el("dt", null, [name]));
    dl.appendChild(el("dd", null, [value]));
  }

  function renderRecord(rec) {
    var sec = el("section", "rec");
    var score = rec.error ? "error" : (rec.score === null ? "not scored" : "score " + num(100 * rec.score, 1) + " / 100");
    sec.appendChild(el("h3", null, ["Trial " + rec.trial + ": " + score]));
    if (rec.error) sec.appendChild(el("p", "err", ["Error: " + rec.error]));
    var dl = el("dl", "meta");
    fact(dl, "depth", num(rec.target_depth) + "% requested, " + num(rec.depth) + "% actual");
    fact(dl, "length", num(rec.length, 0) + " tokens (" + num(rec.target_length, 0) + " requested)");
    (rec.needles || []).forEach(function (n) {
      fact(dl, "needle " + (n.role || "target"), "tokens [" + n.token_start + ", " + n.token_end + ") at " +
           num(n.depth) + "%: " + (n.key ? n.key + " = " : "") + n.value);
    });
    var stop = (rec.stop_reason || "?") + ", " + num(rec.new_tokens, 0) + " new tokens of a " +
               num(rec.answer_budget, 0) + "-token budget";
    if (rec.stop_reason === "length") stop += " (cut off by the answer budget)";
    fact(dl, "stop", stop);
    fact(dl, "prefill", num(rec.prefill_s, 3) + " s, " + num(rec.prefilled_tokens, 0) + " tokens prefilled, " +
         num(rec.cached_tokens, 0) + " from the shared-prefix cache");
    fact(dl, "decode", num(rec.decode_s, 3) + " s");
    if (rec.rope_base) fact(dl, "RoPE base", num(rec.rope_base, 1));
    sec.appendChild(dl);

    sec.appendChild(el("h4", null, ["Expected (" + (rec.metric === "all" ? "all needed" : "any one") + ")"]));
    var ul = el("ul", "expected"), spans = [];
    (rec.matches || []).forEach(function (m) {
      ul.appendChild(el("li", m.found ? "found" : "missed", [(m.found ? "\u2713 " : "\u2717 ") + m.ref +
                                                           (m.found ? " (found)" : " (missed)")]));
      spans = spans.concat(m.spans);
    });
    sec.appendChild(ul);
    sec.appendChild(el("h4", null, ["Response"]));
    sec.appendChild(marked(rec.response || "", spans, "hit"));

    var ex = rec.excerpt;
    if (ex && ex.windows) {
      sec.appendChild(el("h4", null, ["Question"]));
      sec.appendChild(el("p", null, [ex.question]));
      sec.appendChild(el("h4", null, ["Prompt around the needle" + (ex.windows.length > 1 ? "s" : "")]));
      ex.windows.forEach(function (w) {
        var t = (w.clipped_start ? "\u2026" : "") + w.text + (w.clipped_end ? "\u2026" : "");
        var off = w.clipped_start ? 1 : 0;
        sec.appendChild(marked(t, [[w.needle_start + off, w.needle_end + off]], "needle"));
      });
    } else {
      sec.appendChild(el("h4", null, ["Prompt around the needle"]));
      sec.appendChild(el("p", "note", ["Not recorded: this run predates prompt excerpts in the results " +
                                       "(rerun it, or use longctx needle --dump-prompts)."]));
    }
    return sec;
  }

  function show(td) {
    var run = data.runs[+td.dataset.run];
    var recs = td.dataset.recs ? td.dataset.recs.split(" ").map(Number) : [];
    panel.textContent = "";
    var close = el("button", "close", ["Close"]);
    close.type = "button";
    close.setAttribute("aria-label", "Close the cell details (Escape)");
    close.addEventListener("click", function () { closePanel(); });
    panel.appendChild(close);
    panel.appendChild(el("h2", null, [run.label]));
    panel.appendChild(el("p", "sub", [td.getAttribute("aria-label")]));
    if (!recs.length) panel.appendChild(el("p", "note", ["No record for this cell."]));
    recs.forEach(function (k) { panel.appendChild(renderRecord(run.drill[k])); });
  }

  function closePanel() {
    panel.textContent = "";
    panel.appendChild(el("p", "note", ["Select a cell to see the model's answer and the prompt around the needle."]));
    if (current) { current.setAttribute("aria-selected", "false"); current.focus(); }
    if (history.replaceState) history.replaceState(null, "", location.pathname + location.search);
  }

  function select(td, focus) {
    if (current) current.setAttribute("aria-selected", "false");
    var grid = td.closest("table");
    grid.querySelectorAll("td.cell").forEach(function (c) { c.tabIndex = -1; });
    td.tabIndex = 0;
    td.setAttribute("aria-selected", "true");
    current = td;
    if (focus) td.focus();
    show(td);
    if (history.replaceState) history.replaceState(null, "", "#cell=" + td.id);
  }

  function move(td, key) {
    var g = td.closest("table"), rows = +g.dataset.rows, cols = +g.dataset.cols;
    var r = +td.dataset.row, c = +td.dataset.col;
    if (key === "ArrowUp") r = Math.max(0, r - 1);
    else if (key === "ArrowDown") r = Math.min(rows - 1, r + 1);
    else if (key === "ArrowLeft") c = Math.max(0, c - 1);
    else if (key === "ArrowRight") c = Math.min(cols - 1, c + 1);
    else if (key === "Home") c = 0;
    else if (key === "End") c = cols - 1;
    else return null;
    return document.getElementById("c" + td.dataset.run + "-" + r + "-" + c);
  }

  document.querySelectorAll("td.cell").forEach(function (td) {
    td.addEventListener("click", function () { select(td, true); });
    td.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(td, true); return; }
      if (ev.key === "Escape") { ev.preventDefault(); closePanel(); return; }
      var next = move(td, ev.key);
      if (next) {
        ev.preventDefault();
        td.closest("table").querySelectorAll("td.cell").forEach(function (c) { c.tabIndex = -1; });
        next.tabIndex = 0;
        next.focus();
      }
    });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && panel.contains(document.activeElement)) closePanel();
  });

  var toggle = document.getElementById("cb-toggle");
  function setPalette(on) {
    document.body.classList.toggle("cb", on);
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    try { localStorage.setItem("longctx-report-cb", on ? "1" : "0"); } catch (e) { /* file:// may refuse */ }
  }
  toggle.addEventListener("click", function () { setPalette(!document.body.classList.contains("cb")); });
  try { if (localStorage.getItem("longctx-report-cb") === "1") setPalette(true); } catch (e) { /* ignore */ }

  var want = location.hash.replace(/^#cell=/, "");  // #cell=<id>: not an element id, so no jump
  var pre = want && document.getElementById(want);
  if (pre && pre.classList.contains("cell")) { pre.click(); pre.scrollIntoView({block: "nearest"}); }
})();
"""
