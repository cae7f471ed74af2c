"""A tokenizer from GGUF metadata (``tokenizer.ggml.*``), read with ``gguf.GGUFReader``.

* ``tokenizer.ggml.model == "gpt2"``: byte-level BPE (``tokenizers``) from ``tokens`` +
  ``merges``, pre-tokenizer by ``tokenizer.ggml.pre`` (:mod:`longctx.tokenizer.pretokenize`).
* ``"llama"``: a SentencePiece BPE model built from ``tokens`` + ``scores`` + ``token_type``
  (:func:`longctx.tokenizer.spm.model_from_pieces`), so encoding is SentencePiece's own.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sentencepiece as spm
from tokenizers import AddedToken, decoders, models
from tokenizers import Tokenizer as HFTokenizer

from longctx.errors import TokenizerError
import longctx.tokenizer.spm as sp_model
from longctx.tokenizer.chat import DEFAULT, IM_END, IM_START, default_system_from_template, infer_chat_format
from longctx.tokenizer.core import Tokenizer
from longctx.tokenizer.pretokenize import byte_level_pre_tokenizer

if TYPE_CHECKING:  # annotations only: gguf is imported when a GGUF file is read
    from gguf import GGUFReader

__all__ = ["tokenizer_from_gguf"]


def _is_chat_control(token: str) -> bool:
    return bool(re.fullmatch(r"<\|[^|\s]+\|>|\[UNUSED_TOKEN_\d+\]", token))


def _bpe_backend(reader: GGUFReader, path, tokens: list[str], special: dict[str, int],
                 user_defined: list[tuple[str, int]]) -> HFTokenizer:
    """Byte-level BPE with the GGUF's special (matched never) and user-defined (matched in text) tokens."""
    merges = []
    for m in _value(reader, "tokenizer.ggml.merges") or []:
        a, sep, b = str(m).partition(" ")
        if not sep:
            raise TokenizerError(f"{path}: malformed merge {m!r}")
        merges.append((a, b))
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise TokenizerError(f"{path}: duplicate tokens in tokenizer.ggml.tokens")
    pre_tok, ignore_merges = byte_level_pre_tokenizer(str(_value(reader, "tokenizer.ggml.pre", "") or "default"))
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False,
                                     ignore_merges=ignore_merges))
    backend.pre_tokenizer = pre_tok
    backend.decoder = decoders.ByteLevel()
    if special:
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    if user_defined:
        backend.add_tokens([AddedToken(t, special=False, normalized=False) for t, _ in user_defined])
    for t, i in [*special.items(), *user_defined]:
        if backend.token_to_id(t) != i:
            raise TokenizerError(f"{path}: token {t!r} did not keep id {i}")
    return backend


def _sentencepiece_backend(reader: GGUFReader, path, tokens: list[str], types: list[int]):
    scores = _value(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
    if sp_model.UNKNOWN not in types:
        raise TokenizerError(f"{path}: SentencePiece vocabulary without an unknown token")
    pieces = [(t, float(s), ty if 1 <= ty <= 6 else sp_model.NORMAL) for t, s, ty in zip(tokens, scores, types)]
    proto = sp_model.model_from_pieces(pieces, add_dummy_prefix=bool(_value(reader, "tokenizer.ggml.add_space_prefix", True)),
                                       byte_fallback=sp_model.BYTE in types)
    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError as e:
        raise TokenizerError(f"{path}: cannot build a SentencePiece model: {e}") from e


def _value(reader: GGUFReader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def tokenizer_from_gguf(source: str | Path | GGUFReader, chat_format: str | None = None) -> Tokenizer:
    """Builds the tokenizer described by a GGUF file's metadata.

    Control tokens (type 3) are special; user-defined tokens (type 4) spelled like ``<|...|>`` are
    special too, other user-defined tokens are matched in text.

    Args:
        source: the ``.gguf`` file, or an open ``gguf.GGUFReader`` (no second read of the file).
        chat_format: force a chat format; by default ``internlm2`` for the internlm2
            architecture, ``chatml`` when ``<|im_start|>`` is a token, else ``plain``.

    Returns:
        The tokenizer, named after the file (``"smollm2-135m-instruct (gguf)"``); its default
        system prompt is read from ``tokenizer.chat_template``.

    Raises:
        TokenizerError: not a GGUF file, missing tokenizer metadata or an unsupported tokenizer model.
    """
    if not isinstance(source, (str, Path)):  # an open GGUFReader
        reader, path = source, Path(str(getattr(source.data, "filename", None) or "gguf"))
    else:
        from gguf import GGUFReader  # optional at import time: machines without gguf still load HF checkpoints

        path = Path(source)
        try:
            reader = GGUFReader(str(path))
        except ValueError as e:  # gguf raises ValueError for a bad magic / truncated file
            raise TokenizerError(f"{path}: not a readable GGUF file ({e})") from e
    # "SmolLM2-135M-Instruct.Q4_1.gguf" -> "smollm2-135m-instruct"
    gname = re.sub(r"[.-](?:[qQ]\d\w*|[iI][qQ]\d\w*|[fF](?:16|32)|[bB][fF]16)$", "", path.stem)
    gname = gname.strip().lower().replace(" ", "-")
    model = _value(reader, "tokenizer.ggml.model")
    tokens = _value(reader, "tokenizer.ggml.tokens")
    if not model or not tokens:
        raise TokenizerError(f"{path}: no tokenizer metadata (tokenizer.ggml.model / tokens)")
    tokens = [str(t) for t in tokens]
    types = [int(t) for t in (_value(reader, "tokenizer.ggml.token_type") or [sp_model.NORMAL] * len(tokens))]
    special: dict[str, int] = {}
    user_defined: list[tuple[str, int]] = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == sp_model.CONTROL or (ty == sp_model.USER_DEFINED and _is_chat_control(t)):
            special[t] = i
        elif ty == sp_model.USER_DEFINED:
            user_defined.append((t, i))

    if model == "gpt2":
        backend = _bpe_backend(reader, path, tokens, special, user_defined)
        add_bos_default = False
    elif model == "llama":
        backend = _sentencepiece_backend(reader, path, tokens, types)
        add_bos_default = True
    else:
        raise TokenizerError(f"{path}: unsupported GGUF tokenizer model {model!r} (supported: gpt2, llama)")

    arch = str(_value(reader, "general.architecture", "") or "")
    fmt = chat_format or infer_chat_format(arch, IM_START in tokens and IM_END in tokens)
    if fmt in ("internlm2", "chatml"):
        for t in (IM_START, IM_END):
            if t not in special and t in tokens:
                special[t] = tokens.index(t)
    default_system: Any = DEFAULT
    if fmt == "chatml":
        default_system = default_system_from_template(_value(reader, "tokenizer.chat_template"))
    unk_id = _value(reader, "tokenizer.ggml.unknown_token_id")
    if unk_id is not None and not (0 <= int(unk_id) < len(types) and types[int(unk_id)] == sp_model.UNKNOWN):
        unk_id = None  # gpt2 GGUFs often name a control token as "unknown"; it is never produced
    return Tokenizer(backend, name=f"{gname} (gguf)", special_tokens=special,
                     bos_id=_value(reader, "tokenizer.ggml.bos_token_id"),
                     eos_id=_value(reader, "tokenizer.ggml.eos_token_id"),
                     add_bos=bool(_value(reader, "tokenizer.ggml.add_bos_token", add_bos_default)),
                     chat_format=fmt, default_system=default_system, unk_id=unk_id)
