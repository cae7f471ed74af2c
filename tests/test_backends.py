"""The openai and transformers backends: retries / errors / ordering against a mock server, and
agreement with the native engine on a small NIAH grid (openai against a real ``longctx serve``
on loopback, driven through ``longctx needle --backend openai``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from longctx.backends.base import GenRequest  # noqa: E402

LENGTHS = "300,600"
DEPTHS = "0,50,100"
BUDGET = "32"


@pytest.fixture(scope="module")
def tokenizer():
    from longctx.checkpoints.default_model import default_model_dir
    from longctx.tokenizer import load_tokenizer

    return load_tokenizer(default_model_dir())


# ----------------------------------------------------------------------------------------------
# A scripted OpenAI-compatible server (httpx.MockTransport: nothing leaves the process)
# ----------------------------------------------------------------------------------------------
class FakeServer:
    """Answers /v1/models and /v1/completions; ``script`` holds per-call outcomes for completions."""

    def __init__(self, script=(), *, model="m", accepts_ids=True, max_model_len=4096, key=None):
        self.script = list(script)
        self.model, self.accepts_ids, self.max_model_len, self.key = model, accepts_ids, max_model_len, key
        self.calls: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return httpx.Response(401, json={"error": {"message": "bad key", "type": "authentication_error"}})
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": self.model, "object": "model", "max_model_len": self.max_model_len}]})
        if path == "/v1/completions":
            body = json.loads(request.content)
            if isinstance(body["prompt"], list) and not self.accepts_ids:
                return httpx.Response(400, json={"error": {"message": "prompt must be a string"}})
            if body.get("max_tokens") == 1:  # the api-mode probe
                return httpx.Response(200, json=_completion("x", 1, 1))
            self.calls.append(body)
            step = self.script.pop(0) if self.script else "ok"
            if step == "ok":
                n = len(body["prompt"]) if isinstance(body["prompt"], list) else 7
                return httpx.Response(200, json=_completion(f"answer {len(self.calls)}", n, 3))
            if step == "conn":
                raise httpx.ConnectError("connection refused", request=request)
            if step == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            status = int(step)
            headers = {"Retry-After": "0"} if status == 429 else {}
            return httpx.Response(status, json={"error": {"message": f"status {status}"}}, headers=headers)
        return httpx.Response(404, json={"error": {"message": "not found"}})


def _completion(text: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": "cmpl-1", "object": "text_completion", "model": "m",
            "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def fake_backend(server: FakeServer, tokenizer, **kw):
    from longctx.backends.openai_backend import OpenAIBackend

    client = httpx.Client(transport=httpx.MockTransport(server))
    kw.setdefault("backoff", 0.001)
    return OpenAIBackend("http://fake.invalid/v1", client=client, tokenizer=tokenizer, **kw)


def test_retries_429_5xx_and_connection_errors_then_succeeds(tokenizer):
    srv = FakeServer(["429", "503", "conn", "timeout", "ok"])
    be = fake_backend(srv, tokenizer, max_retries=5)
    assert be.api_mode == "ids" and be.max_context == 4096 and be.served_model == "m"
    res = be.generate([1, 2, 3, 4], 8)
    assert res.error is None and res.text == "answer 5" and res.prompt_tokens == 4
    assert be.retries == 4 and len(srv.calls) == 5
    body = srv.calls[-1]
    assert body["prompt"] == [1, 2, 3, 4] and body["temperature"] == 0 and body["max_tokens"] == 8
    assert body["stop_token_ids"] == list(tokenizer.stop_ids)


def test_failed_cell_is_an_error_and_the_run_goes_on(tokenizer):
    srv = FakeServer(["500", "500", "500", "ok", "400", "ok"])
    be = fake_backend(srv, tokenizer, max_retries=2, concurrency=1)
    reqs = [GenRequest(np.arange(10, 10 + n), 4, tag=n) for n in (5, 6, 7, 8)]
    got = {}
    be.run(reqs, on_result=lambda r, res: got.__setitem__(r.tag, res))
    assert sorted(got) == [5, 6, 7, 8]
    errors = {k: v.error for k, v in got.items() if v.error}
    assert len(errors) == 2, errors
    assert any("HTTP 500" in e for e in errors.values()) and any("HTTP 400" in e for e in errors.values())
    assert all(got[k].stop_reason == "error" for k in errors)
    assert be.retries == 2  # the 400 is not retried


def test_concurrency_and_prefix_cache_order(tokenizer):
    srv = FakeServer()
    be = fake_backend(srv, tokenizer, concurrency=3)

    class Cell:
        def __init__(self, pos, trial=0):
            self.needles = [{"token_start": pos}]
            self.trial = trial

    reqs = [GenRequest(np.arange(1, 1 + L), 4, tag=Cell(p)) for L in (60, 30) for p in (0, 25, 10)]
    plan = [(len(r.ids), r.tag.needles[0]["token_start"]) for r, _ in be.schedule(reqs)]
    assert plan == [(30, 25), (30, 10), (30, 0), (60, 25), (60, 10), (60, 0)]
    seen = []
    be.run(reqs, on_result=lambda r, res: seen.append(res.error))
    assert len(seen) == 6 and seen == [None] * 6


def test_text_mode_when_ids_are_refused(tokenizer):
    srv = FakeServer(accepts_ids=False)
    be = fake_backend(srv, tokenizer)
    assert be.api_mode == "text"
    ids = tokenizer.chat_ids([{"role": "user", "content": "Hello there"}])
    be.generate(ids, 4)
    prompt = srv.calls[-1]["prompt"]
    assert isinstance(prompt, str) and "<|im_start|>user\nHello there<|im_end|>" in prompt
    assert "stop_token_ids" not in srv.calls[-1]


def test_chat_messages_recovered_from_template(tokenizer):
    srv = FakeServer()
    be = fake_backend(srv, tokenizer, api_mode="chat")
    ids = tokenizer.chat_ids([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!\nThere"}])
    msgs, prefix = be._messages(ids + tokenizer.encode("The answer is"))
    assert msgs == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!\nThere"}]
    assert prefix == "The answer is"


def test_refuses_without_a_tokenizer_and_names_the_fix():
    from longctx.backends.openai_backend import OpenAIBackend

    client = httpx.Client(transport=httpx.MockTransport(FakeServer()))
    with pytest.raises(ValueError, match="--tokenizer.*--approximate-lengths"):
        OpenAIBackend("http://fake.invalid/v1", client=client)
    be = OpenAIBackend("http://fake.invalid/v1", client=client, approximate_lengths=True)
    info = be.model_info()
    assert info["tokenizer"].startswith("APPROXIMATE") and info["exact_lengths"] is False
    assert be.api_mode == "text"


def test_api_key_from_environment(tokenizer, monkeypatch):
    from longctx.backends.openai_backend import OpenAIBackend

    monkeypatch.delenv("LONGCTX_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="LONGCTX_TEST_KEY"):
        OpenAIBackend("http://fake.invalid/v1", api_key_env="LONGCTX_TEST_KEY", tokenizer=tokenizer,
                      client=httpx.Client(transport=httpx.MockTransport(FakeServer())))
    monkeypatch.setenv("LONGCTX_TEST_KEY", "k1")
    srv = FakeServer(key="k1")
    be = OpenAIBackend("http://fake.invalid/v1", api_key_env="LONGCTX_TEST_KEY", tokenizer=tokenizer,
                       client=httpx.Client(transport=httpx.MockTransport(srv)))
    assert be.generate([5, 6, 7], 2).text == "answer 1"
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with pytest.raises(Exception, match="401"):
        OpenAIBackend("http://fake.invalid/v1", tokenizer=tokenizer, max_retries=0,
                      client=httpx.Client(transport=httpx.MockTransport(srv)))


def test_unknown_served_model_is_refused(tokenizer):
    with pytest.raises(ValueError, match="does not serve 'other'.*m"):
        fake_backend(FakeServer(), tokenizer, served_model="other")


def test_make_backend_rejects_options_of_other_backends():
    from longctx.backends.factory import make_backend

    with pytest.raises(ValueError, match="--base-url"):
        make_backend("native", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="needs --base-url"):
        make_backend("openai")
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("tgi")


# ----------------------------------------------------------------------------------------------
# Agreement with the native engine (the default model)
# ----------------------------------------------------------------------------------------------
def _env(**extra) -> dict:
    # One torch thread per process: on a shared 2-core machine, oversubscribed threads are ~5x slower.
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def _needle(out: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "longctx", "needle", "--lengths", LENGTHS, "--depths", DEPTHS,
           "--answer-budget", BUDGET, "--out", str(out), "--no-plot", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env or _env())
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r


def _cells(path: Path) -> dict:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["target_length"], r["target_depth"]): r for r in recs}


@pytest.fixture(scope="module")
def native_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("native") / "native.jsonl"
    _needle(out)
    return _cells(out)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_serve import start_server

    srv = start_server("--max-queue", "8", api_key="backend-test-key")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_default_model_finds_most_needles(native_results):
    assert len(native_results) == 6 and all(r["error"] is None for r in native_results.values())
    assert sum(r["score"] for r in native_results.values()) >= 3  # at 300 / 600 tokens


@pytest.mark.slow
def test_needle_openai_backend_matches_native(served, native_results, tmp_path):
    out = tmp_path / "openai.jsonl"
    r = _needle(out, "--backend", "openai", "--base-url", served.base_url, "--api-key-env", "LONGCTX_TEST_KEY",
                "--concurrency", "2", env=_env(LONGCTX_TEST_KEY="backend-test-key"))
    got = _cells(out)
    assert sorted(got) == sorted(native_results) and len(got) == 6
    for key, rec in got.items():
        nat = native_results[key]
        assert rec["error"] is None, rec["error"]
        assert rec["backend"] == "openai" and nat["backend"] == "native"
        assert rec["prompt_sha256"] == nat["prompt_sha256"], key  # the very same token ids
        assert rec["response"] == nat["response"], (key, rec["response"], nat["response"])
        assert rec["score"] == nat["score"]
    assert "APPROXIMATE" not in r.stderr and "counted differently" not in r.stderr
    from longctx.niah.results import config_path

    conf = json.dumps(json.loads(config_path(out).read_text()))
    assert '"api_mode": "ids"' in conf and '"exact_lengths": true' in conf


def test_needle_openai_backend_refuses_bad_options(served, tmp_path):
    cmd = [sys.executable, "-m", "longctx", "needle", "--backend", "openai", "--out", str(tmp_path / "x.jsonl")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2 and "--base-url" in r.stderr
    r = subprocess.run([sys.executable, "-m", "longctx", "needle", "--base-url", served.base_url,
                        "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2 and "does not apply to --backend native" in r.stderr
    # wrong key: one line, exit 2, nothing run
    r = subprocess.run(cmd + ["--base-url", served.base_url, "--lengths", LENGTHS], capture_output=True, text=True,
                       timeout=120, env=_env(OPENAI_API_KEY="wrong"))
    assert r.returncode == 2 and "401" in r.stderr


@pytest.mark.slow
def test_transformers_backend_matches_native(native_results, tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "hf.jsonl"
    _needle(out, "--backend", "transformers")
    got = _cells(out)
    assert sorted(got) == sorted(native_results)
    same = 0
    for key, rec in got.items():
        nat = native_results[key]
        assert rec["error"] is None and rec["backend"] == "transformers"
        assert rec["prompt_sha256"] == nat["prompt_sha256"]
        same += rec["response"] == nat["response"]
        assert rec["score"] == nat["score"], (key, rec["response"], nat["response"])
    print(f"\ntransformers vs native: {same}/{len(got)} identical responses, all scores equal")
    assert same >= len(got) - 1  # float differences may flip a late token in at most one cell


def test_native_backend_raises_typed_context_error_and_run_records_it():
    """A request beyond max_context raises ContextLengthError; run() records it as "ContextLengthError: ..."."""
    import torch

    from longctx.backends.native import NativeBackend
    from longctx.engine.runtime import random_model
    from longctx.errors import ContextLengthError

    torch.set_num_threads(1)
    be = NativeBackend(random_model("tiny", device="cpu", max_context=32))
    with pytest.raises(ContextLengthError, match="prompt of 30 tokens \\+ 4 new tokens exceeds the allowed context of 32"):
        be.generate(np.arange(1, 31), 4)
    for sharing in (True, False):
        be.prefix_sharing = sharing
        got = {}
        reqs = [GenRequest(np.arange(1, 31), 4, tag="long"), GenRequest(np.arange(1, 11), 3, tag="short")]
        be.run(reqs, on_result=lambda r, res: got.__setitem__(r.tag, res))
        assert got["long"].stop_reason == "error" and got["long"].error == (
            "ContextLengthError: prompt of 30 tokens + 4 new tokens exceeds the allowed context of 32 tokens")
        assert got["short"].error is None and got["short"].new_tokens == len(got["short"].token_ids) == 3
        assert got["short"].prompt_tokens == 10 and got["short"].stop_reason == "length"
