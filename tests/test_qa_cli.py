"""``longctx ask`` / ``longctx chat``: answers, footers, progress, bad inputs, and chat driven through a pty.

In-process runs (CliRunner) reuse one loaded default model; the terminal tests start the real
command under a pseudo-terminal, as a person would.
"""
from __future__ import annotations

import copy
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import QUESTION, haystack_with_fact

import longctx
from longctx.cli import app
from longctx.cli import common as cli_common
from longctx.data import load_haystack_text

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    # float32 everywhere (the CPU default): on CUDA, bf16 greedy tokens can differ run to run
    return longctx.load_model(dtype="float32")


@pytest.fixture
def cli(monkeypatch, model):
    """Runs ``longctx ...`` in process; the model options are honoured on a copy of the loaded model."""

    def fake_load(**opts):  # called with the ModelArgs fields as keywords
        m = copy.copy(model)
        m.max_context = opts.get("max_context") or model.max_context
        m.chunk_size = opts.get("chunk_size") or model.chunk_size
        return m

    monkeypatch.setattr(cli_common, "load_from_cli", fake_load)

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(app, [str(a) for a in args], input=input)

    return run


@pytest.fixture(scope="module")
def doc_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("docs") / "notes.txt"
    p.write_text(haystack_with_fact(500), encoding="utf-8")  # ~130 tokens
    return p


# ----------------------------------------------------------------------------------------------
# ask
# ----------------------------------------------------------------------------------------------
def test_ask_streams_the_answer_then_a_footer(cli, doc_file):
    r = cli("ask", doc_file, QUESTION, "-n", "12", "--chunk-size", "64")
    assert r.exit_code == 0, r.output
    assert "Lisbon" in r.stdout
    err = r.stderr.strip().splitlines()
    # a long prefill (more than one chunk) reports progress on stderr; then the one-line footer
    assert err[-2].startswith("prefill: ") and " tokens in " in err[-2]
    assert re.search(r"^\d+ prompt tokens · prefill \d+ in [\d.]+s \([\d,]+ tok/s\) · first token [\d.]+s · "
                     r"\d+ new tokens in [\d.]+s \([\d.]+ tok/s\) · stop: \w+$", err[-1]), err[-1]


def test_ask_truncation_warning_on_stderr(cli):
    r = cli("ask", "-", "Who is mentioned?", "-n", "1", "--max-context", "120", "--overflow", "truncate_middle",
            input=load_haystack_text("austen")[:1500])
    assert r.exit_code == 0, r.output
    assert "warning: document truncated: kept the first" in r.stderr
    assert "document truncated" in r.stderr.strip().splitlines()[-1]  # the footer says so too


@pytest.mark.slow
def test_ask_a_few_thousand_token_document(cli, tmp_path):
    p = tmp_path / "austen.md"
    p.write_text(haystack_with_fact(12000), encoding="utf-8")  # ~2,700 tokens: two 2048-token chunks
    r = cli("ask", p, QUESTION, "-n", "16")
    assert r.exit_code == 0, r.output
    print(r.stdout, r.stderr)
    assert "Lisbon" in r.stdout
    assert re.search(r"^prefill: 2,\d{3} tokens in [\d.]+s", r.stderr, re.M)


# ----------------------------------------------------------------------------------------------
# chat with stdin that is not a terminal (piped)
# ----------------------------------------------------------------------------------------------
def test_chat_reads_questions_line_by_line_from_a_pipe(cli, doc_file):
    r = cli("chat", doc_file, "-n", "12", "--question-budget", "64",
            input=f"{QUESTION}\n\n   \nWhere does Captain Whitby live?\nquit\nnever asked\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("Lisbon") == 2
    footers = [ln for ln in r.stderr.splitlines() if "prompt tokens" in ln]
    assert len(footers) == 2 and all("cached" in f for f in footers)  # the document prefix is reused
    assert "notes.txt: " in r.stderr and "prefilled in" in r.stderr  # the banner
    assert "> " not in r.stdout  # no prompt when stdin is not a terminal


def test_chat_history_flag_and_question_over_budget(cli, doc_file):
    r = cli("chat", doc_file, "-n", "4", "--question-budget", "40", "--history",
            input="Say OK.\n" + "why " * 60 + "?\nSay OK again.\n")
    assert r.exit_code == 0, r.output
    assert "the conversation is kept" in r.stderr
    assert re.search(r"error: conversation \(1 earlier turns \+ question\) needs \d+ tokens after the document but "
                     r"the session reserved question_budget=40", r.stderr)
    assert len([ln for ln in r.stderr.splitlines() if "prompt tokens" in ln]) == 2  # the session went on


# ----------------------------------------------------------------------------------------------
# bad inputs: one line, exit code 2
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["missing", "undecodable", "empty", "empty_question", "too_long", "unsupported",
                                  "overflow_policy", "chat_missing", "chat_stdin"])
def test_bad_inputs_exit_2_with_one_line(cli, tmp_path, doc_file, case):
    (tmp_path / "latin1.txt").write_bytes("Caf\u00e9 cr\u00e8me".encode("latin-1"))
    (tmp_path / "blank.txt").write_text(" \n\n \t")
    (tmp_path / "doc.docx").write_bytes(b"PK\x03\x04")
    (tmp_path / "long.txt").write_text(load_haystack_text("austen")[:3000])
    args, expect = {
        "missing": (["ask", tmp_path / "nope.txt", "q"], r"document not found: .*nope\.txt"),
        "undecodable": (["ask", tmp_path / "latin1.txt", "q"], r"latin1\.txt: not UTF-8 text"),
        "empty": (["ask", tmp_path / "blank.txt", "q"], r"blank\.txt: the document is empty"),
        "empty_question": (["ask", doc_file, "  "], r"the question is empty"),
        "too_long": (["ask", tmp_path / "long.txt", "q", "--max-context", "400"],
                     r"document is \d+ tokens but at most \d+ fit \(allowed context 400 - question budget \d+ - "
                     r"answer budget 256 - chat template \d+\)"),
        "unsupported": (["ask", tmp_path / "doc.docx", "q"], r"unsupported document type '\.docx'"),
        "overflow_policy": (["ask", doc_file, "q", "--overflow", "cut"], r"--overflow must be one of"),
        "chat_missing": (["chat", tmp_path / "nope.md"], r"document not found"),
        "chat_stdin": (["chat", "-"], r"give the document as a file"),
    }[case]
    r = cli(*args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert re.search(expect, lines[0]), lines[0]
    assert "Traceback" not in r.output and r.stdout == ""


def test_too_long_document_message_names_both_numbers(cli, tmp_path, model):
    p = tmp_path / "long.txt"
    p.write_text(load_haystack_text("austen")[:3000])
    n = len(model.tokenizer.encode(p.read_text().strip()))
    r = cli("ask", p, "q", "--max-context", "400", "-n", "100")
    m = re.search(r"document is (\d+) tokens but at most (\d+) fit", r.stderr)
    assert r.exit_code == 2 and m and int(m.group(1)) == n and int(m.group(2)) < 400 - 100


# ----------------------------------------------------------------------------------------------
# chat in a terminal (pty), as a person would use it
# ----------------------------------------------------------------------------------------------
class Terminal:
    """A command running on a pseudo-terminal: ``expect`` output, ``send`` keys, ``wait`` for exit."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child: stdin/stdout/stderr are the terminal
            try:
                os.chdir(ROOT)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = b""
        self.pos = 0

    def _read(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not data:
            return False
        self.out += data
        return True

    def expect(self, pattern: str, timeout: float = 120.0) -> str:
        """Waits for ``pattern`` (regex) after the previous match; returns the text up to its end."""
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out, self.pos)
            if m:
                seen = self.out[self.pos:m.end()].decode(errors="replace")
                self.pos = m.end()
                return seen
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{pattern!r} not seen; terminal shows:\n{self.out.decode(errors='replace')}")

    def send(self, data: str) -> None:
        os.write(self.fd, data.encode())

    def wait(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.05):  # drain what is left
                    if not select.select([self.fd], [], [], 0)[0]:
                        break
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self._read(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"still running; terminal shows:\n{self.out.decode(errors='replace')}")


def chat_terminal(doc: Path, *extra: str) -> Terminal:
    env = dict(os.environ, TERM="xterm", OMP_NUM_THREADS="1", COLUMNS="120", LINES="40", NO_COLOR="1")
    env.pop("PYTEST_CURRENT_TEST", None)
    return Terminal([sys.executable, "-m", "longctx", "chat", str(doc), *extra], env)


def test_chat_in_a_terminal_question_ctrl_c_then_exit(doc_file):
    t = chat_terminal(doc_file, "-n", "48", "--question-budget", "64")
    t.expect(r"prefilled in .*Ask about it; Ctrl-D, 'exit' or\s+'quit' ends")
    t.expect(r"> ")
    t.send(QUESTION + "\r")
    answer = t.expect(r"prompt tokens[^\n]*\n")  # the streamed answer, then the stats footer
    assert "Lisbon" in answer
    t.expect(r"> ")
    # Ctrl-C while an answer streams stops that answer and returns to the prompt (best effort:
    # if the answer was already complete, Ctrl-C at the prompt just gives a fresh prompt)
    t.send("Retell the whole text in detail, sentence by sentence.\r")
    t.expect(r"sentence by sentence\.\r?\n")  # the terminal echo
    t.expect(r"\S")  # the first piece of the answer
    t.send("\x03")
    t.expect(r"> ")
    t.send("exit\r")
    assert t.wait() == 0
    text = t.out.decode(errors="replace")
    assert "Traceback" not in text
    assert "[answer interrupted]" in text or text.count("prompt tokens") == 2
    print(text)


def test_chat_in_a_terminal_ends_on_ctrl_d(doc_file):
    t = chat_terminal(doc_file, "-n", "12", "--question-budget", "64")
    t.expect(r"> ")
    t.send("Where does Captain Whitby live?\r")
    assert "Lisbon" in t.expect(r"prompt tokens[^\n]*\n")
    t.expect(r"> ")
    t.send("\x04")  # Ctrl-D at an empty prompt: end of input
    assert t.wait() == 0
    assert "Traceback" not in t.out.decode(errors="replace")


@pytest.mark.slow
def test_chat_in_a_terminal_shows_a_prefill_progress_bar(tmp_path):
    p = tmp_path / "austen.txt"
    p.write_text(haystack_with_fact(12000), encoding="utf-8")  # ~2,700 tokens: two 2048-token chunks
    t = chat_terminal(p, "-n", "16", "--question-budget", "64")
    bar = t.expect(r"prefilled in [\d.]+s")
    assert re.search(r"prefill .*2,\d{3}/2,\d{3} tokens.*chunk 2/2.*tok/s", bar), bar  # the rich bar, finished
    t.expect(r"> ")
    t.send(QUESTION + "\r")
    footer = t.expect(r"prompt tokens[^\n]*\n")
    assert "Lisbon" in footer and "cached" in footer
    t.expect(r"> ")
    t.send("\x04")
    assert t.wait() == 0
    print(t.out.decode(errors="replace"))
