#!/usr/bin/env python3
"""Headless-browser check of a ``longctx report`` page: load it, click a cell, use the keyboard, screenshot.

Uses Debian's chromium (``apt-get install -y chromium``; not needed in CI) driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages on file descriptors 3
and 4, standard library only). What it does, each step checked in the page's live DOM:

1. loads the page at the given window size;
2. a real mouse click (``Input.dispatchMouseEvent``) on the centre of the cell: the cell must
   become the selected one and the panel must show its records' responses;
3. keyboard: ArrowRight moves the focus to the next cell, Enter opens it, ArrowLeft + Enter come
   back (skipped at the grid's right edge);
4. optionally (``--colour-blind``) presses the palette toggle;
5. saves a PNG of the viewport (``Page.captureScreenshot``).

Usage::

    python scripts/report_screenshot.py plots/needle.html -o plots/needle_report.png [--cell c0-1-0]

Without ``--cell`` the lowest-scoring cell is clicked (the first one on ties). Exit code 1 with
one ``error:`` line when a check fails.
"""
from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
KEYS = {"ArrowRight": 39, "ArrowLeft": 37, "Enter": 13}


class _Cells(HTMLParser):
    """Cell ids with their attributes, and the embedded drill-down data."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: dict[str, dict] = {}
        self.in_data = False
        self.data_text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self.cells[a["id"]] = a
        self.in_data = tag == "script" and a.get("id") == "report-data"

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_data = False

    def handle_data(self, data):
        if self.in_data:
            self.data_text += data


class Check(Exception):
    """A failed check (one line)."""


class DevTools:
    """A headless chromium driven over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, browser: str, profile: str, timeout: float) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def wire() -> None:  # runs in the child: the pipe ends become (inheritable) fds 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=wire, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout = timeout
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise Check("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise Check("chromium exited")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        try:
            os.write(self._w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise Check("chromium exited (run it by hand to see why)") from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise Check(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise Check(f"page script failed: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def key(self, key: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=KEYS[key],
                      nativeVirtualKeyCode=KEYS[key], **({"text": "\r"} if key == "Enter" and kind == "keyDown" else {}))

    def click(self, selector: str) -> None:
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView("
                      f"{{block: 'nearest'}}); const r = e.getBoundingClientRect(); "
                      f"return [r.left + r.width / 2, r.top + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Check:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


def _browser(name: str | None) -> str:
    for cand in ([name] if name else BROWSERS):
        path = shutil.which(cand)
        if path:
            return path
    raise Check("no chromium found (apt-get install -y chromium, or pass --chromium PATH)")


def _pick_cell(cells: dict[str, dict]) -> str:
    scored = [(float(a["data-score"]), i, cid) for i, (cid, a) in enumerate(cells.items()) if a.get("data-score")]
    return min(scored)[2] if scored else next(iter(cells))


def _state(dt: DevTools) -> dict:
    return dt.js("({selected: [...document.querySelectorAll('td.cell[aria-selected=true]')].map(e => e.id), "
                 "focused: document.activeElement && document.activeElement.id, "
                 "panel: document.getElementById('panel').innerText})")


def run(a: argparse.Namespace) -> str:
    page = a.report.resolve()
    if not page.is_file():
        raise Check(f"report not found: {a.report}")
    parsed = _Cells()
    parsed.feed(page.read_text(encoding="utf-8"))
    if not parsed.cells:
        raise Check(f"{a.report} has no heatmap cells (not a longctx report?)")
    cell = a.cell or _pick_cell(parsed.cells)
    if cell not in parsed.cells:
        raise Check(f"no cell {cell!r} in {a.report} (cells look like {next(iter(parsed.cells))})")
    attrs = parsed.cells[cell]
    drill = json.loads(parsed.data_text)["runs"][int(attrs["data-run"])]["drill"]
    responses = [drill[int(k)]["response"] or "" for k in attrs.get("data-recs", "").split()]
    width, height = (int(x) for x in a.size.lower().split("x"))
    browser = _browser(a.chromium)
    notes = []
    with tempfile.TemporaryDirectory() as profile:
        dt = DevTools(browser, profile, a.timeout)
        try:
            target = dt.send("Target.createTarget", url="about:blank")["targetId"]
            dt.session = dt.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            dt.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            dt.send("Page.enable")
            dt.send("Page.navigate", url=page.as_uri())
            dt.wait_event("Page.loadEventFired")

            dt.click(f"#{cell}")
            st = _state(dt)
            if st["selected"] != [cell]:
                raise Check(f"after clicking {cell} the selected cell is {st['selected'] or 'none'}")
            missing = [r for r in responses if " ".join(r.split()) not in " ".join(st["panel"].split())]
            if not responses or missing:
                raise Check(f"the panel does not show the response(s) of {cell}")
            notes.append(f"clicked {cell}: panel shows {len(responses)} record(s)")

            r, c = (int(x) for x in cell[1:].split("-")[1:])
            right = f"c{attrs['data-run']}-{r}-{c + 1}"
            if right in parsed.cells:
                dt.key("ArrowRight")
                if _state(dt)["focused"] != right:
                    raise Check(f"ArrowRight from {cell} did not move the focus to {right}")
                dt.key("Enter")
                if _state(dt)["selected"] != [right]:
                    raise Check(f"Enter on {right} did not open it")
                dt.key("ArrowLeft")
                dt.key("Enter")
                if _state(dt)["selected"] != [cell]:
                    raise Check(f"ArrowLeft + Enter did not come back to {cell}")
                notes.append(f"keyboard: ArrowRight/Enter opened {right}, ArrowLeft/Enter came back")
            if a.colour_blind:
                dt.click("#cb-toggle")
                if dt.js("document.body.classList.contains('cb')") is not True:
                    raise Check("the palette toggle did not switch to the colour-blind-safe palette")
                notes.append("colour-blind-safe palette on")
            png = base64.b64decode(dt.send("Page.captureScreenshot", format="png")["data"])
        finally:
            dt.close()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(png)
    return "; ".join(notes) + f"; wrote {a.out} ({len(png):,} bytes)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="the HTML file written by `longctx report`")
    ap.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--cell", help="cell id to click, e.g. c0-1-2 (run 0, depth row 1, length column 2)")
    ap.add_argument("--size", default="1400x1000", help="viewport WIDTHxHEIGHT in CSS pixels")
    ap.add_argument("--colour-blind", action="store_true", help="press the colour-blind-safe palette toggle")
    ap.add_argument("--chromium", help="browser binary (default: chromium from PATH)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each browser reply")
    a = ap.parse_args(argv)
    try:
        print(run(a))
    except Check as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
