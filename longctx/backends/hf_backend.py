"""The ``transformers`` backend: a local checkpoint through ``AutoModelForCausalLM``.

An independent reference for the native engine: the same prompt ids (built with longctx's own
tokenizer of the checkpoint, so both backends see identical inputs), greedy decoding with the
same stop ids, no prefix sharing. ``trust_remote_code`` is off unless asked for explicitly:
official InternLM2 checkpoints (``model_type: internlm2``) need it, Llama-layout ones (such as the
default model's cached checkpoint) do not.

Note on RoPE scaling: transformers applies the checkpoint's ``rope_scaling`` its own way (its
dynamic NTK recomputes the base as the sequence grows during decoding, the native engine fixes
one base per request), so beyond ``max_position_embeddings`` the two may differ slightly.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from longctx.backends.base import BaseBackend, GenResult
from longctx.checkpoints.resolve import resolve
from longctx.engine.generation import token_loop
from longctx.engine.rope import base_for
from longctx.engine.runtime import default_chunk_size, resolve_device, resolve_dtype
from longctx.tokenizer import load_tokenizer
from longctx.errors import ConfigError, ContextLengthError, WeightError

__all__ = ["TransformersBackend"]


class TransformersBackend(BaseBackend):
    """Greedy generation with a Hugging Face ``transformers`` model.

    Args:
        path: checkpoint directory (default: the default model's cached Llama checkpoint).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        dtype: ``auto`` (float32 on CPU, the checkpoint's half type on CUDA) | ``float32`` |
            ``bfloat16`` | ``float16``.
        trust_remote_code: allow the checkpoint's own modelling code (needed for InternLM2).
        tokenizer: a longctx :class:`~longctx.tokenizer.core.Tokenizer` or directory (default: the
            checkpoint's, loaded with :func:`longctx.tokenizer.load_tokenizer`).
        max_context: longest prompt + answer (default: ``max_position_embeddings`` x the
            dynamic scaling factor, like the native engine).
        attn: transformers ``attn_implementation`` (``sdpa``, ``eager``, ``flash_attention_2``)
            or None for its default.
        chunk_size: prefill chunk length (long prompts run through the KV cache in chunks).
    """

    name = "transformers"
    supports_prefix_sharing = False

    def __init__(self, path: str | Path | None = None, *, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, tokenizer: Any = None, max_context: int | None = None,
                 attn: str | None = None, chunk_size: int | None = None) -> None:
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise ValueError("the transformers backend needs transformers: pip install 'longctx[hf]'") from None
        from transformers import AutoConfig, AutoModelForCausalLM  # optional extra 'hf': imported when used

        spec = resolve(path)
        if spec.gguf_file is not None:
            raise ConfigError(f"the transformers backend needs a checkpoint directory, not a .gguf file: {spec.gguf_file}")
        self.path = spec.model_dir
        self.display = spec.display
        raw = json.loads((self.path / "config.json").read_text()) if spec.has_config_json else {}
        model_type = str(raw.get("model_type", ""))
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device, str(raw.get("torch_dtype") or "bfloat16"))
        try:
            hf_cfg = AutoConfig.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        except ValueError as e:
            if not trust_remote_code and ("trust_remote_code" in str(e) or model_type.startswith("internlm")):
                raise ValueError(f"{self.path} (model_type {model_type or '?'}) needs its own modelling code: pass "
                                 f"--trust-remote-code if you trust it") from None
            raise
        kwargs: dict[str, Any] = dict(torch_dtype=self.dtype, trust_remote_code=trust_remote_code)
        if attn:
            kwargs["attn_implementation"] = attn
        try:
            self.model = AutoModelForCausalLM.from_pretrained(self.path, config=hf_cfg, **kwargs)
        except TypeError:  # older transformers: dtype keyword spelled differently
            kwargs["dtype"] = kwargs.pop("torch_dtype")
            self.model = AutoModelForCausalLM.from_pretrained(self.path, config=hf_cfg, **kwargs)
        self.model.to(self.device).eval()
        self.hf_config = hf_cfg
        if tokenizer is None:
            tokenizer = spec.load_tokenizer() or load_tokenizer(self.path)
        elif isinstance(tokenizer, (str, Path)):
            tokenizer = load_tokenizer(Path(tokenizer))
        self.tokenizer = tokenizer
        self.stop_ids = {int(s) for s in tokenizer.stop_ids}
        self.chunk_size = int(chunk_size or default_chunk_size(self.device))
        try:
            self._cfg = spec.config
        except (ConfigError, WeightError):  # a layout longctx cannot read: fall back to the HF config
            self._cfg = None
        if max_context is not None:
            self.max_context = int(max_context)
        elif self._cfg is not None:
            self.max_context = int(self._cfg.context_limit)
        else:
            self.max_context = int(getattr(hf_cfg, "max_position_embeddings", 0) or 1 << 31)

    # -- identity ------------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any]:
        cfg = self._cfg
        if cfg is not None:
            config_hash = cfg.fingerprint()
            rope = cfg.rope_scaling.as_dict() if cfg.rope_scaling is not None else None
            name = cfg.name
        else:
            config_hash = hashlib.sha256(self.hf_config.to_json_string().encode()).hexdigest()[:16]
            rope = getattr(self.hf_config, "rope_scaling", None)
            name = getattr(self.hf_config, "_name_or_path", None) or self.path.name
        import transformers  # optional extra 'hf' (loaded by __init__ already)

        return {
            "backend": self.name,
            "model": self.display,
            "model_name": name,
            "config_hash": config_hash,
            "tokenizer": getattr(self.tokenizer, "name", None),
            "tokenizer_fingerprint": getattr(self.tokenizer, "fingerprint", None),
            "rope_scaling": rope,
            "dtype": str(self.dtype).replace("torch.", ""),
            "device": str(self.device),
            "max_context": self.max_context,
            "transformers_version": transformers.__version__,
        }

    def rope_base_for(self, total_len: int) -> float:
        if self._cfg is None:
            return float("nan")
        return float(base_for(self._cfg, int(total_len)))

    # -- generation ------------------------------------------------------------------------------
    def generate(self, ids: Sequence[int] | np.ndarray, max_new_tokens: int) -> GenResult:
        """Greedy decoding of one prompt from scratch (chunked prefill through the KV cache)."""
        ids = [int(t) for t in np.asarray(ids).tolist()]
        n = len(ids)
        if n == 0:
            raise ContextLengthError("empty prompt")
        if n + int(max_new_tokens) > self.max_context:
            raise ContextLengthError.for_request(n, max_new_tokens, self.max_context)
        dev = self.device
        res = GenResult(prompt_tokens=n, prefilled_tokens=n, rope_base=self.rope_base_for(n) if self._cfg else None)
        past = None

        def prefill():
            nonlocal past
            logits = None
            extra = {"logits_to_keep": 1} if "logits_to_keep" in self._params() else {}
            for s in range(0, n, self.chunk_size):
                chunk = torch.tensor([ids[s:s + self.chunk_size]], dtype=torch.long, device=dev)  # [1, T]
                out, past = self._forward(chunk, past, **extra)
                logits = out.logits[0, -1].float()  # [vocab]
            return logits

        def step(tok):
            nonlocal past
            out, past = self._forward(tok.reshape(1, 1), past)  # [1, 1]
            return out.logits[0, -1].float()  # [vocab]

        with torch.inference_mode():
            res.token_ids.extend(token_loop(prefill, step, max_new_tokens=int(max_new_tokens), stop_ids=self.stop_ids,
                                            stats=res, device=dev))
        res.text = self.tokenizer.decode(res.token_ids)
        return res

    def _params(self) -> set[str]:
        """Keyword names of the model's forward (the cache argument was renamed in transformers 5)."""
        if not hasattr(self, "_fwd_params"):
            try:
                self._fwd_params = set(inspect.signature(self.model.forward).parameters)
            except (TypeError, ValueError):
                self._fwd_params = {"past_key_values"}
        return self._fwd_params

    def _forward(self, input_ids, past, **extra):
        """One forward with the KV cache; returns (output, the cache to pass next time)."""
        if "cache" in self._params() and "past_key_values" not in self._params():
            out = self.model(input_ids=input_ids, cache=past, use_cache=True, **extra)
            return out, getattr(out, "cache", None)
        out = self.model(input_ids=input_ids, past_key_values=past, use_cache=True, **extra)
        return out, out.past_key_values
