"""A tokenizer from / to a model directory.

* :func:`load_tokenizer` reads ``tokenizer.json`` (``tokenizers``) or ``tokenizer.model``
  (SentencePiece) plus ``tokenizer_meta.json`` / ``tokenizer_config.json`` / ``config.json``.
* :func:`save_tokenizer_json` writes ``tokenizer.json`` (or ``tokenizer.model``) plus
  ``tokenizer_meta.json`` so that :func:`load_tokenizer` reads the same tokenizer back (same
  fingerprint).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sentencepiece as spm
from tokenizers import Tokenizer as HFTokenizer

from longctx.errors import TokenizerError
from longctx.tokenizer.chat import DEFAULT, IM_END, IM_START, default_system_from_template, infer_chat_format
from longctx.tokenizer.core import Tokenizer

__all__ = ["META_FILENAME", "load_tokenizer", "save_tokenizer_json"]

META_FILENAME = "tokenizer_meta.json"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _token_content(v: Any) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def load_tokenizer(model_dir: str | Path, chat_format: str | None = None) -> Tokenizer:
    """Loads the tokenizer of a model directory.

    Reads ``tokenizer.json`` (``tokenizers``) when present, else ``tokenizer.model``
    (SentencePiece); special tokens, BOS/EOS and ``add_bos_token`` come from
    ``tokenizer_meta.json`` (written by :func:`save_tokenizer_json`, authoritative when present),
    ``tokenizer_config.json`` (``added_tokens_decoder`` entries marked special, ``bos_token``,
    ``eos_token``, ``add_bos_token``, ``chat_template``) and ``config.json`` (``model_type``,
    ``bos_token_id``, ``eos_token_id``).

    Args:
        model_dir: the directory.
        chat_format: force a chat format; by default ``internlm2`` when ``config.json``'s
            model_type is internlm2, else ``chatml`` when ``<|im_start|>`` and ``<|im_end|>`` are
            in the vocabulary (they are then treated as special), else ``plain``.

    Returns:
        The tokenizer.

    Raises:
        TokenizerError: no tokenizer file, or unreadable/inconsistent files.
    """
    d = Path(model_dir)
    meta = _read_json(d / META_FILENAME)
    tcfg = _read_json(d / "tokenizer_config.json")
    cfg = _read_json(d / "config.json")
    if (d / "tokenizer.json").is_file():
        try:
            backend = HFTokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 -- tokenizers raises plain Exception
            raise TokenizerError(f"cannot read {d / 'tokenizer.json'}: {e}") from e
        kind = "tokenizers"
    elif (d / "tokenizer.model").is_file():
        try:
            backend = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
        except Exception as e:  # noqa: BLE001
            raise TokenizerError(f"cannot read {d / 'tokenizer.model'}: {e}") from e
        kind = "sentencepiece"
    else:
        raise TokenizerError(f"no tokenizer.json or tokenizer.model in {d}")

    def piece_id(s: str | None) -> int | None:
        if s is None:
            return None
        if kind == "tokenizers":
            return backend.token_to_id(s)
        i = backend.piece_to_id(s)
        return i if backend.id_to_piece(i) == s else None

    name = meta.get("name") or d.name
    if meta:
        special = {str(k): int(v) for k, v in meta.get("special_tokens", {}).items()}
        bos_id, eos_id, unk_id = meta.get("bos_id"), meta.get("eos_id"), meta.get("unk_id")
        add_bos = bool(meta.get("add_bos", False))
        fmt = chat_format or meta.get("chat_format") or "plain"
        default_system = meta.get("default_system") if fmt == meta.get("chat_format") else DEFAULT
        stop_ids = meta.get("stop_ids") if fmt == meta.get("chat_format") else None
        return Tokenizer(backend, name=name, special_tokens=special, bos_id=bos_id, eos_id=eos_id,
                         add_bos=add_bos, chat_format=fmt, default_system=default_system,
                         stop_ids=stop_ids, unk_id=unk_id)

    special: dict[str, int] = {}
    if kind == "tokenizers":
        for i, tok in backend.get_added_tokens_decoder().items():
            if tok.special:
                special[tok.content] = int(i)
    else:
        for i in range(backend.get_piece_size()):
            if backend.is_control(i):
                special[backend.id_to_piece(i)] = i
    for k, v in (tcfg.get("added_tokens_decoder") or {}).items():
        if isinstance(v, Mapping) and v.get("special", False) and isinstance(v.get("content"), str):
            special[v["content"]] = int(k)

    def pick(tok_key: str, cfg_key: str) -> int | None:
        i = None
        content = _token_content(tcfg.get(tok_key))
        if content is not None:
            i = special.get(content, piece_id(content))
        if i is None:
            v = cfg.get(cfg_key)
            if isinstance(v, list):
                v = v[0] if v else None
            if isinstance(v, int):
                i = v
        return i

    bos_id = pick("bos_token", "bos_token_id")
    eos_id = pick("eos_token", "eos_token_id")
    unk_content = _token_content(tcfg.get("unk_token"))
    unk_id = special.get(unk_content, piece_id(unk_content)) if unk_content else None
    if kind == "sentencepiece":
        if bos_id is None and backend.bos_id() >= 0:
            bos_id = backend.bos_id()
        if eos_id is None and backend.eos_id() >= 0:
            eos_id = backend.eos_id()
        if unk_id is None and backend.unk_id() >= 0:
            unk_id = backend.unk_id()
    if unk_id is not None:
        special = {k: v for k, v in special.items() if v != unk_id}
    add_bos = tcfg.get("add_bos_token")
    if add_bos is None:
        if kind == "sentencepiece":
            add_bos = True
        else:
            probe = backend.encode("a", add_special_tokens=True).ids
            add_bos = bool(bos_id is not None and probe and probe[0] == bos_id)
    extra_stops = cfg.get("eos_token_id") if isinstance(cfg.get("eos_token_id"), list) else []
    has_im = all(t in special or piece_id(t) is not None for t in (IM_START, IM_END))
    fmt = chat_format or infer_chat_format(cfg.get("model_type"), has_im)
    if fmt in ("internlm2", "chatml"):
        for tok in (IM_START, IM_END):  # a chat format forced on a vocab that has them as pieces
            if tok not in special and piece_id(tok) is not None:
                special[tok] = piece_id(tok)
    default_system: Any = DEFAULT
    if fmt == "chatml":
        default_system = default_system_from_template(tcfg.get("chat_template"))
    settings = dict(name=name, special_tokens=special, bos_id=bos_id, eos_id=eos_id, add_bos=bool(add_bos),
                    chat_format=fmt, default_system=default_system, unk_id=unk_id)
    tok = Tokenizer(backend, **settings)
    if extra_stops:  # config.json's list of eos ids: each one ends generation too
        tok = Tokenizer(backend, **settings, stop_ids=[*tok.stop_ids, *(int(i) for i in extra_stops)])
    return tok


def save_tokenizer_json(tok: Tokenizer, path: str | Path) -> list[Path]:
    """Stores a tokenizer in a directory so that :func:`load_tokenizer` reads it back identically.

    Writes ``tokenizer.json`` for a ``tokenizers`` backend (``tokenizer.model`` for a
    SentencePiece backend, which has no lossless JSON form here) and ``tokenizer_meta.json``
    with name, bos/eos/unk ids, add_bos, chat format, default system prompt, stop ids and
    special tokens.

    Args:
        tok: the tokenizer.
        path: the directory (created if missing).

    Returns:
        The written files.
    """
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    if tok.backend_kind == "tokenizers":
        p = d / "tokenizer.json"
        p.write_text(tok.backend.to_str(pretty=False), encoding="utf-8")
    else:
        p = d / "tokenizer.model"
        p.write_bytes(tok.backend.serialized_model_proto())
    written.append(p)
    m = d / META_FILENAME
    m.write_text(json.dumps(tok.meta(), indent=2, ensure_ascii=False), encoding="utf-8")
    written.append(m)
    return written
