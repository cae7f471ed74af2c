"""``make_backend(name, **opts)``: one entry point for the CLI and the QA / NIAH drivers.

Backends: ``native`` (the in-process engine, default), ``transformers`` (a local checkpoint via
``AutoModelForCausalLM``) and ``openai`` (any OpenAI-compatible server). Options that do not
apply to the chosen backend must be left at None / their defaults: a stray ``base_url`` for the
native backend is an error rather than silently ignored.
"""
from __future__ import annotations

from typing import Any

__all__ = ["BACKEND_NAMES", "check_options", "make_backend"]

BACKEND_NAMES = ("native", "transformers", "openai")

_NATIVE = {"model", "device", "dtype", "rope_scaling", "attn", "max_context", "chunk_size", "prefix_sharing",
           "keep_logits"}
_HF = {"model", "device", "dtype", "trust_remote_code", "tokenizer", "max_context", "attn", "chunk_size"}
_OPENAI = {"base_url", "served_model", "api_key", "api_key_env", "tokenizer", "approximate_lengths", "concurrency",
           "timeout", "max_retries", "backoff", "api_mode", "max_context", "verify_tokenizer"}
_FLAGS = {"base_url": "--base-url", "served_model": "--served-model", "api_key_env": "--api-key-env",
          "concurrency": "--concurrency", "tokenizer": "--tokenizer", "trust_remote_code": "--trust-remote-code",
          "approximate_lengths": "--approximate-lengths", "api_mode": "--api-mode", "rope_scaling": "--rope-scaling",
          "model": "--model", "timeout": "--request-timeout", "max_retries": "--max-retries",
          "chunk_size": "--chunk-size", "max_context": "--max-context", "attn": "--attn", "device": "--device",
          "dtype": "--dtype", "prefix_sharing": "--no-prefix-sharing"}
# CLI defaults: an option still at its default was not given.
_DEFAULTS = {"device": "auto", "dtype": "auto", "attn": "auto", "api_mode": "auto", "prefix_sharing": True}


def _given(key: str, value: Any) -> bool:
    if value is None or value is False:
        return False
    return not (key in _DEFAULTS and _DEFAULTS[key] == value)


def _normalize(name: str) -> str:
    name = (name or "native").lower()
    if name in ("hf", "huggingface"):
        name = "transformers"
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    return name


def check_options(name: str, **opts: Any) -> str:
    """Validates backend options without building anything (cheap; for CLIs, before loading models).

    Returns:
        The normalized backend name.

    Raises:
        ValueError: an unknown backend, an option the backend does not take, or ``openai``
            without ``base_url``.
    """
    name = _normalize(name)
    allowed = {"native": _NATIVE, "transformers": _HF, "openai": _OPENAI}[name]
    stray = sorted(k for k, v in opts.items() if k not in allowed and _given(k, v))
    if stray:
        flags = ", ".join(_FLAGS.get(k, k) for k in stray)
        raise ValueError(f"{flags} do{'es' if len(stray) == 1 else ''} not apply to --backend {name}")
    if name == "openai" and not opts.get("base_url"):
        raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:23333/v1)")
    return name


def make_backend(name: str, **opts: Any):
    """Builds a backend.

    Args:
        name: ``native`` | ``transformers`` | ``openai``.
        **opts: backend options (see each backend); ``model`` is the checkpoint for native and
            transformers.

    Raises:
        ValueError: an unknown backend, an option the backend does not take, or a missing
            ``base_url`` for ``openai``.
    """
    name = check_options(name, **opts)
    allowed = {"native": _NATIVE, "transformers": _HF, "openai": _OPENAI}[name]
    kw = {k: v for k, v in opts.items() if k in allowed and v is not None}
    if name == "native":
        from longctx.engine.runtime import load_model
        from longctx.backends.native import NativeBackend

        load_kw = {k: kw[k] for k in ("device", "dtype", "attn", "max_context", "chunk_size") if k in kw}
        if "rope_scaling" in kw:
            load_kw["rope_scaling"] = kw["rope_scaling"]
        m = load_model(kw.get("model"), **load_kw)
        return NativeBackend(m, prefix_sharing=kw.get("prefix_sharing", True), keep_logits=kw.get("keep_logits", False))
    if name == "transformers":
        from longctx.backends.hf_backend import TransformersBackend

        path = kw.pop("model", None)
        if kw.get("attn") == "auto":
            kw.pop("attn")
        return TransformersBackend(path, **kw)
    from longctx.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(kw.pop("base_url"), **kw)
