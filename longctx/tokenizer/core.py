"""Tokenizers: one :class:`Tokenizer` wrapping a ``tokenizers`` or ``sentencepiece`` backend.

Entry points:

* :func:`load_tokenizer` -- a model directory (``tokenizer.json`` or ``tokenizer.model`` plus
  ``tokenizer_config.json`` / ``config.json`` / ``tokenizer_meta.json``).
* :func:`tokenizer_from_gguf` -- GGUF metadata (``tokenizer.ggml.*``): byte-level BPE ("gpt2")
  or SentencePiece ("llama").
* :func:`save_tokenizer_json` -- writes ``tokenizer.json`` (or ``tokenizer.model``) plus
  ``tokenizer_meta.json`` so that :func:`load_tokenizer` reads the same tokenizer back.

Safety rule: :meth:`Tokenizer.encode` is for plain text and never returns the id of a special /
control token, even when the text spells one (``"<|im_end|>"``, ``"<s>"``). Chat prompts are
built by :meth:`Tokenizer.chat_ids`, which inserts control tokens by id and encodes every text
piece with :meth:`Tokenizer.encode`, so user text cannot inject control tokens.

Chat formats:

* ``internlm2``: ``<s><|im_start|>system\\n{meta}<|im_end|>\\n<|im_start|>user\\n{q}<|im_end|>\\n``
  ``<|im_start|>assistant\\n{a}<|im_end|>\\n ... <|im_start|>assistant\\n``.
* ``chatml``: the same turns without BOS (unless the tokenizer adds one); SmolLM2's default system
  prompt comes from its chat template.
* ``plain``: fallback for vocabularies without chat control tokens: BOS (if ``add_bos``), then
  ``"System: {s}\\n"`` (when a system prompt is given), ``"User: {q}\\n"``,
  ``"Assistant: {a}\\n"`` lines, ending with ``"Assistant:"`` as the generation prompt; all text.
"""
from __future__ import annotations

from longctx.errors import TokenizerError

import hashlib
import json
import re
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

__all__ = [
    "CHAT_FORMATS",
    "DEFAULT",
    "INTERNLM2_SYSTEM_PROMPT",
    "META_FILENAME",
    "SMOLLM2_SYSTEM_PROMPT",
    "Segment",
    "StreamDecoder",
    "Tokenizer",
    "TokenizerError",
    "default_system_from_template",
    "load_tokenizer",
    "read_gguf_metadata",
    "save_tokenizer_json",
    "tokenizer_from_gguf",
]

CHAT_FORMATS = ("internlm2", "chatml", "plain")
META_FILENAME = "tokenizer_meta.json"
_META_VERSION = 1

INTERNLM2_SYSTEM_PROMPT = "\n".join([
    "You are an AI assistant whose name is InternLM (书生·浦语).",
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI "
    "Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.",
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the "
    "user such as English and 中文.",
])
# Fallback only: the real value is read from the chat template when one is available.
SMOLLM2_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


class _DefaultSystem:
    """Sentinel type for "use the tokenizer's default system prompt"."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self):
        return (_DefaultSystem, ())


DEFAULT = _DefaultSystem()
"""Sentinel for ``system=``: the tokenizer's ``default_system`` (skipped when the first message
is already a system message)."""

Segment = Union[str, int]


# ----------------------------------------------------------------------------------------------
# Minimal protobuf wire-format helpers (SentencePiece ModelProto without the protobuf package)
# ----------------------------------------------------------------------------------------------
# ModelProto: 1 = repeated SentencePiece {1 piece: string, 2 score: float, 3 type: enum},
# 2 = TrainerSpec, 3 = NormalizerSpec. Piece types: NORMAL 1, UNKNOWN 2, CONTROL 3,
# USER_DEFINED 4, UNUSED 5, BYTE 6 (GGUF's token types use the same numbers).
_SP_NORMAL, _SP_UNKNOWN, _SP_CONTROL, _SP_USER_DEFINED, _SP_UNUSED, _SP_BYTE = 1, 2, 3, 4, 5, 6


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _iter_fields(buf: bytes):
    """Yields ``(field_number, wire_type, value, raw_field_bytes)`` for a serialized message."""
    pos, n = 0, len(buf)
    while pos < n:
        start = pos
        key, pos = _read_varint(buf, pos)
        fno, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _read_varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            ln, pos = _read_varint(buf, pos)
            val, pos = buf[pos:pos + ln], pos + ln
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise TokenizerError(f"unsupported protobuf wire type {wt} in SentencePiece model")
        yield fno, wt, val, buf[start:pos]


def _pb_bytes(fno: int, data: bytes) -> bytes:
    return _varint((fno << 3) | 2) + _varint(len(data)) + data


def _pb_varint(fno: int, value: int) -> bytes:
    return _varint(fno << 3) + _varint(value)


def _pb_float(fno: int, value: float) -> bytes:
    return _varint((fno << 3) | 5) + struct.pack("<f", value)


def _sp_piece_types(model: bytes) -> list[int]:
    """Piece types of a serialized SentencePiece ModelProto, in id order."""
    types = []
    for fno, wt, val, _ in _iter_fields(model):
        if fno == 1 and wt == 2:
            t = _SP_NORMAL
            for f2, w2, v2, _ in _iter_fields(val):
                if f2 == 3 and w2 == 0:
                    t = v2
            types.append(t)
    return types


def _sp_with_control(model: bytes, ids: set[int]) -> bytes:
    """Returns the model with the pieces ``ids`` retyped CONTROL (never matched in text)."""
    out = bytearray()
    idx = 0
    for fno, wt, val, raw in _iter_fields(model):
        if fno == 1 and wt == 2:
            if idx in ids:
                sub = b"".join(r for f2, _w, _v, r in _iter_fields(val) if f2 != 3)
                raw = _pb_bytes(1, sub + _pb_varint(3, _SP_CONTROL))
            idx += 1
        out += raw
    return bytes(out)


def _sp_model_from_pieces(pieces: Sequence[tuple[str, float, int]], *, add_dummy_prefix: bool,
                          byte_fallback: bool) -> bytes:
    """Serializes a SentencePiece BPE ModelProto (identity normalization) from GGUF-style pieces."""
    out = bytearray()
    for piece, score, ptype in pieces:
        sub = _pb_bytes(1, piece.encode("utf-8")) + _pb_float(2, float(score))
        if ptype != _SP_NORMAL:
            sub += _pb_varint(3, ptype)
        out += _pb_bytes(1, sub)
    # TrainerSpec: model_type (3) = BPE (2), vocab_size (4), byte_fallback (35).
    trainer = _pb_varint(3, 2) + _pb_varint(4, len(pieces)) + _pb_varint(35, int(byte_fallback))
    out += _pb_bytes(2, trainer)
    # NormalizerSpec: name (1), add_dummy_prefix (3), remove_extra_whitespaces (4),
    # escape_whitespaces (5).
    norm = (_pb_bytes(1, b"identity") + _pb_varint(3, int(add_dummy_prefix))
            + _pb_varint(4, 0) + _pb_varint(5, 1))
    out += _pb_bytes(3, norm)
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------
class _HFBackend:
    """``tokenizers.Tokenizer`` adapter (special added tokens are encoded as plain text)."""

    kind = "tokenizers"

    def __init__(self, tk) -> None:
        self.tk = tk
        # Special added tokens are not split out of the input text: they go through the
        # pre-tokenizer and model like any other text.
        tk.encode_special_tokens = True

    def size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        # encode_batch releases the GIL (encode does not): a server thread tokenizing a long prompt
        # then leaves the event loop free. Same ids as encode.
        return self.tk.encode_batch([text], add_special_tokens=False)[0].ids

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tk.encode(text, add_special_tokens=False)
        return list(enc.ids), [tuple(o) for o in enc.offsets]

    def decode(self, ids: list[int]) -> str:
        return self.tk.decode(ids, skip_special_tokens=False)

    def token_to_id(self, s: str) -> int | None:
        return self.tk.token_to_id(s)

    def id_to_token(self, i: int) -> str | None:
        return self.tk.id_to_token(i)

    def serialized(self) -> bytes:
        return self.tk.to_str().encode("utf-8")


class _SPBackend:
    """``sentencepiece.SentencePieceProcessor`` adapter.

    Plain text is encoded with a copy of the model in which every forbidden (special) piece is
    retyped CONTROL, so SentencePiece neither matches user-defined symbols such as
    ``<|im_end|>`` atomically in the text nor reaches them by merges.
    """

    kind = "sentencepiece"

    def __init__(self, sp, forbidden: set[int]) -> None:
        import sentencepiece as spm

        self.sp = sp
        self.model = sp.serialized_model_proto()
        n = sp.get_piece_size()
        types = _sp_piece_types(self.model)
        retype = {i for i in forbidden if 0 <= i < n and types[i] in (_SP_NORMAL, _SP_USER_DEFINED, _SP_UNUSED)}
        self.plain = spm.SentencePieceProcessor(model_proto=_sp_with_control(self.model, retype)) if retype else sp

    def size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.plain.encode(text, out_type=int)

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        try:
            res = self.plain.encode(text, out_type="offset_mapping")
        except (ValueError, TypeError):
            res = None
        if isinstance(res, Mapping):
            return list(res["ids"]), [tuple(o) for o in res["offsets"]]
        # sentencepiece < 0.2.1: immutable proto with byte offsets.
        spt = self.plain.encode_as_immutable_proto(text)
        starts = [0]
        for ch in text:
            starts.append(starts[-1] + len(ch.encode("utf-8")))
        b2c = {b: c for c, b in enumerate(starts)}

        def to_char(b: int) -> int:
            while b not in b2c:  # inside a multi-byte character: round down
                b -= 1
            return b2c[b]

        ids, offs = [], []
        for p in spt.pieces:
            ids.append(p.id)
            offs.append((to_char(p.begin), to_char(p.end)))
        return ids, offs

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def token_to_id(self, s: str) -> int | None:
        i = self.sp.piece_to_id(s)
        if i == self.sp.unk_id() and s != self.sp.id_to_piece(i):
            return None
        return i

    def id_to_token(self, i: int) -> str | None:
        return self.sp.id_to_piece(i) if 0 <= i < self.size() else None

    def serialized(self) -> bytes:
        return self.model

    def control_pieces(self) -> dict[str, int]:
        return {self.sp.id_to_piece(i): i for i in range(self.size()) if self.sp.is_control(i)}


# ----------------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------------
class StreamDecoder:
    """Incremental detokenizer: feed ids one at a time, get newly completed text.

    Each push decodes a small window (the previously emitted tokens as context plus the pending
    ones) and emits the difference, holding text back while it ends in an incomplete UTF-8
    sequence (U+FFFD). The concatenation of all pushes and :meth:`flush` equals
    ``tokenizer.decode(all_ids, skip_special)``; the context window keeps SentencePiece's
    leading-space handling right.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # end of the already emitted tokens
        self._prefix_text = ""

    def _step(self, final: bool) -> str:
        text = self._tok.decode(self._ids[self._prefix:], skip_special=self._skip)
        if not final and (text.endswith("\ufffd") or len(text) < len(self._prefix_text)):
            return ""
        out = text[len(self._prefix_text):]
        self._prefix, self._read = self._read, len(self._ids)
        self._prefix_text = self._tok.decode(self._ids[self._prefix:self._read], skip_special=self._skip)
        return out

    def push(self, token_id: int) -> str:
        """Adds one token id.

        Args:
            token_id: the next generated id.

        Returns:
            The text completed by this token ("" while a multi-byte character is incomplete).
        """
        self._ids.append(int(token_id))
        return self._step(final=False)

    def flush(self) -> str:
        """Returns any held-back text (incomplete bytes become U+FFFD)."""
        if self._read == len(self._ids):
            return ""
        return self._step(final=True)


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------
class Tokenizer:
    """A tokenizer with special-token safety, offsets, streaming decode and chat templates.

    Attributes:
        name: human id, e.g. ``"smollm2-135m-instruct (gguf)"``.
        fingerprint: sha256 hex of the backend model bytes and every setting that changes ids.
        vocab_size: number of ids (backend vocabulary, extended to cover declared special ids).
        bos_id: beginning-of-sequence id or None.
        eos_id: end-of-sequence id or None.
        add_bos: whether prompts start with BOS.
        stop_ids: ids that end generation (eos, ``<|im_end|>``, ...).
        chat_format: ``"internlm2"``, ``"chatml"`` or ``"plain"``.
        default_system: the system prompt used when ``system`` is not given, or None.
        special_tokens: content -> id of every special/control token (never produced by
            :meth:`encode`).
        unk_id: unknown-token id or None (may appear in :meth:`encode` output).
        backend: the wrapped ``tokenizers.Tokenizer`` or ``SentencePieceProcessor``.
    """

    def __init__(self, backend, *, name: str = "tokenizer", special_tokens: Mapping[str, int] | None = None,
                 bos_id: int | None = None, eos_id: int | None = None, add_bos: bool = False,
                 chat_format: str = "plain", default_system: str | None | _DefaultSystem = DEFAULT,
                 stop_ids: Iterable[int] | None = None, unk_id: int | None = None) -> None:
        """Wraps a backend.

        Args:
            backend: a ``tokenizers.Tokenizer`` (its ``encode_special_tokens`` flag is set) or a
                ``sentencepiece.SentencePieceProcessor``.
            name: human id.
            special_tokens: content -> id of special/control tokens (bos/eos are added).
            bos_id: BOS id.
            eos_id: EOS id.
            add_bos: whether prompts start with BOS.
            chat_format: one of :data:`CHAT_FORMATS`.
            default_system: default system prompt; ``DEFAULT`` picks the format's usual one
                (InternLM2's meta instruction for ``internlm2``, none otherwise).
            stop_ids: generation stop ids; default eos plus ``<|im_end|>`` (and ``<|endoftext|>``
                for chatml) when present.
            unk_id: unknown-token id (allowed in plain-text output).

        Raises:
            TokenizerError: unknown backend type or chat format, or a chat format whose control
                tokens are missing.
        """
        if chat_format not in CHAT_FORMATS:
            raise TokenizerError(f"unknown chat format {chat_format!r} (expected one of {', '.join(CHAT_FORMATS)})")
        mod = type(backend).__module__
        if mod.startswith("tokenizers"):
            self._b: Any = _HFBackend(backend)
        elif mod.startswith("sentencepiece"):
            self._b = None
        else:
            raise TokenizerError(f"unsupported tokenizer backend {type(backend).__name__}")
        self.backend = backend
        self.name = name
        special = {str(k): int(v) for k, v in (special_tokens or {}).items()}
        self.bos_id = None if bos_id is None else int(bos_id)
        self.eos_id = None if eos_id is None else int(eos_id)
        self.unk_id = None if unk_id is None else int(unk_id)
        if self._b is None:
            sp = backend
            if self.unk_id is None and sp.unk_id() >= 0:
                self.unk_id = int(sp.unk_id())
            for i in (self.bos_id, self.eos_id):
                if i is not None and i not in special.values() and 0 <= i < sp.get_piece_size():
                    special[sp.id_to_piece(i)] = i
        else:
            for i in (self.bos_id, self.eos_id):
                if i is not None and i not in special.values():
                    tok = backend.id_to_token(i)
                    if tok is not None:
                        special[tok] = i
        self.special_tokens: dict[str, int] = dict(sorted(special.items(), key=lambda kv: kv[1]))
        self._id_to_special = {v: k for k, v in self.special_tokens.items()}
        self._forbidden = set(self.special_tokens.values()) - ({self.unk_id} if self.unk_id is not None else set())
        if self._b is None:
            self._b = _SPBackend(backend, self._forbidden)
        self._backend_size = self._b.size()
        self.vocab_size = max([self._backend_size, *(i + 1 for i in self.special_tokens.values())])
        self.add_bos = bool(add_bos) and self.bos_id is not None
        self.chat_format = chat_format
        if isinstance(default_system, _DefaultSystem):
            default_system = INTERNLM2_SYSTEM_PROMPT if chat_format == "internlm2" else None
        self.default_system = default_system
        self._im_start = self.token_to_id(IM_START)
        self._im_end = self.token_to_id(IM_END)
        if chat_format in ("internlm2", "chatml"):
            for tok, i in ((IM_START, self._im_start), (IM_END, self._im_end)):
                if i is None or i not in self._id_to_special:
                    raise TokenizerError(f"chat format {chat_format!r} needs the special token {tok} in the vocabulary")
        if stop_ids is None:
            stops = [self.eos_id]
            if chat_format != "plain":
                stops.append(self._im_end)
            if chat_format == "chatml":
                stops.append(self.special_tokens.get("<|endoftext|>"))
            stop_ids = stops
        self.stop_ids: list[int] = list(dict.fromkeys(int(i) for i in stop_ids if i is not None))
        self.fingerprint = self._compute_fingerprint()

    # -- identity ------------------------------------------------------------------------------
    @property
    def backend_kind(self) -> str:
        """``"tokenizers"`` or ``"sentencepiece"``."""
        return self._b.kind

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self._b.kind.encode())
        h.update(hashlib.sha256(self._b.serialized()).digest())
        h.update(json.dumps({
            "special": sorted(self.special_tokens.items()), "bos": self.bos_id, "eos": self.eos_id,
            "add_bos": self.add_bos, "chat_format": self.chat_format, "default_system": self.default_system,
            "stop_ids": self.stop_ids, "unk": self.unk_id,
        }, sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (f"Tokenizer(name={self.name!r}, backend={self._b.kind}, vocab_size={self.vocab_size}, "
                f"chat_format={self.chat_format!r}, bos_id={self.bos_id}, eos_id={self.eos_id}, "
                f"add_bos={self.add_bos})")

    def meta(self) -> dict[str, Any]:
        """The settings stored in ``tokenizer_meta.json`` next to the backend file."""
        return {
            "version": _META_VERSION, "name": self.name, "backend": self._b.kind, "bos_id": self.bos_id,
            "eos_id": self.eos_id, "unk_id": self.unk_id, "add_bos": self.add_bos,
            "chat_format": self.chat_format, "default_system": self.default_system,
            "stop_ids": self.stop_ids, "special_tokens": self.special_tokens,
        }

    # -- vocabulary ----------------------------------------------------------------------------
    def token_to_id(self, s: str) -> int | None:
        """Id of a token string (special content or backend piece), or None."""
        if s in self.special_tokens:
            return self.special_tokens[s]
        return self._b.token_to_id(s)

    def id_to_token(self, i: int) -> str | None:
        """Token string of an id (special content or backend piece), or None."""
        if i in self._id_to_special:
            return self._id_to_special[i]
        return self._b.id_to_token(int(i))

    def is_special(self, i: int) -> bool:
        """Whether ``i`` is a special/control token id."""
        return int(i) in self._id_to_special

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Encodes plain text (no BOS).

        Args:
            text: any string; special-token spellings in it are encoded as ordinary text.

        Returns:
            Token ids, none of which is a special/control id.
        """
        ids = list(self._b.encode(text))
        if self._forbidden and not self._forbidden.isdisjoint(ids):
            return self.encode_with_offsets(text)[0]
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Encodes plain text and returns character spans.

        Args:
            text: any string.

        Returns:
            ``(ids, offsets)`` with ``ids == encode(text)`` and ``offsets[i] = (start, end)``
            character offsets into ``text`` of token i. Tokens that are pieces of one character
            (byte fallback / byte-level) share or split that character's span; a span may be
            empty (e.g. SentencePiece's dummy-prefix "▁").
        """
        ids, offs = self._b.encode_offsets(text)
        ids = list(ids)
        if self._forbidden and not self._forbidden.isdisjoint(ids):
            ids, offs = self._repair(text, ids, offs)
        return ids, offs

    def _repair(self, text, ids, offs):
        """Replaces special ids reached by the backend with per-character encodings."""
        new_ids, new_offs = [], []
        for i, (s, e) in zip(ids, offs):
            if i not in self._forbidden:
                new_ids.append(i)
                new_offs.append((s, e))
                continue
            for c in range(s, e):
                sub, _ = self._b.encode_offsets(text[c])
                if not self._forbidden.isdisjoint(sub):
                    raise TokenizerError(f"cannot encode {text[c]!r} without a special token")
                new_ids.extend(sub)
                new_offs.extend([(c, c + 1)] * len(sub))
        return new_ids, new_offs

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Decodes ids to text.

        Args:
            ids: token ids.
            skip_special: drop special/control tokens (else they appear as their content).

        Returns:
            The text; incomplete UTF-8 byte sequences become U+FFFD.

        Raises:
            TokenizerError: an id outside the vocabulary.
        """
        out: list[str] = []
        run: list[int] = []
        size = self._backend_size
        for i in ids:
            i = int(i)
            if i in self._id_to_special:
                if run:
                    out.append(self._b.decode(run))
                    run = []
                if not skip_special:
                    out.append(self._id_to_special[i])
            elif 0 <= i < size:
                run.append(i)
            else:
                raise TokenizerError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        if run:
            out.append(self._b.decode(run))
        return "".join(out)

    def stream_decoder(self, skip_special: bool = True) -> StreamDecoder:
        """A fresh :class:`StreamDecoder` (``.push(id) -> str``, ``.flush() -> str``)."""
        return StreamDecoder(self, skip_special=skip_special)

    # -- chat ----------------------------------------------------------------------------------
    def _resolve_system(self, messages: Sequence[Mapping[str, Any]], system) -> Any:
        if isinstance(system, _DefaultSystem):
            if messages and messages[0].get("role") == "system":
                return None
            return self.default_system
        return system

    @staticmethod
    def _parts(content: Any) -> list[Segment]:
        if isinstance(content, str):
            return [content]
        parts: list[Segment] = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, (list, tuple)):
                parts.extend(int(x) for x in p)
            else:
                parts.append(int(p))
        return parts

    def chat_segments(self, messages: Sequence[Mapping[str, Any]], system: str | None | _DefaultSystem = DEFAULT,
                      add_generation_prompt: bool = True) -> list[Segment]:
        """The chat prompt as text pieces and token ids, in order.

        Strings are to be encoded with :meth:`encode`; ints are token ids used as they are
        (BOS and the control tokens, plus any pre-tokenized content). Adjacent strings are merged,
        so ``"user\\n" + question`` is one piece (as a reference template renderer would tokenize it).

        Args:
            messages: ``[{"role": "user" | "assistant" | "system" | ..., "content": c}]`` where
                ``c`` is a string or a sequence of parts, each a string (encoded) or an int / list
                of ints (token ids spliced verbatim, e.g. a pre-tokenized document).
            system: system prompt; ``DEFAULT`` uses ``default_system`` unless the first message is
                a system message; None means no system turn.
            add_generation_prompt: end with the assistant header.

        Returns:
            A list of ``str`` and ``int`` segments, starting with BOS when ``add_bos``.
        """
        sys_text = self._resolve_system(messages, system)
        turns: list[tuple[str, Any]] = []
        if sys_text is not None:
            turns.append(("system", sys_text))
        for m in messages:
            turns.append((str(m["role"]), m["content"]))
        segs: list[Segment] = []
        if self.add_bos:
            segs.append(self.bos_id)
        if self.chat_format == "plain":
            for role, content in turns:
                segs.append(f"{role.capitalize()}: ")
                segs.extend(self._parts(content))
                segs.append("\n")
            if add_generation_prompt:
                segs.append("Assistant:")
        else:
            for role, content in turns:
                segs.extend([self._im_start, f"{role}\n", *self._parts(content), self._im_end, "\n"])
            if add_generation_prompt:
                segs.extend([self._im_start, "assistant\n"])
        merged: list[Segment] = []
        for s in segs:
            if isinstance(s, str) and merged and isinstance(merged[-1], str):
                merged[-1] += s
            elif not (isinstance(s, str) and s == ""):
                merged.append(s)
        return merged

    def encode_segments(self, segments: Iterable[Segment | Sequence[int]]) -> list[int]:
        """Token ids of segments: strings through :meth:`encode`, ints (or lists of ints) as is.

        Raises:
            TokenizerError: an id outside the vocabulary.
        """
        ids: list[int] = []
        for s in segments:
            if isinstance(s, str):
                ids.extend(self.encode(s))
            elif isinstance(s, (list, tuple)):
                ids.extend(int(x) for x in s)
            else:
                ids.append(int(s))
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise TokenizerError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return ids

    def chat_ids(self, messages: Sequence[Mapping[str, Any]], *, system: str | None | _DefaultSystem = DEFAULT,
                 add_generation_prompt: bool = True) -> list[int]:
        """Prompt ids for a conversation: BOS (if ``add_bos``) + the chat template.

        Control tokens are inserted by id; every text piece is encoded with :meth:`encode`, so
        message content can never inject a control token.

        Args:
            messages: see :meth:`chat_segments`.
            system: system prompt; ``DEFAULT`` = ``default_system``; None = no system turn.
            add_generation_prompt: end with the assistant header.

        Returns:
            Token ids.
        """
        return self.encode_segments(self.chat_segments(messages, system, add_generation_prompt))


# ----------------------------------------------------------------------------------------------
# Loading from a directory
# ----------------------------------------------------------------------------------------------
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


_SYSTEM_IN_TEMPLATE = re.compile(
    r"<\|im_start\|>system(?:\n|\\n)((?:(?!<\|im_end\|>|\{\{|\{%|['\"]\s*[+~]|[+~]\s*['\"]).)*)<\|im_end\|>", re.S)


def default_system_from_template(template: str | None) -> str | None:
    """The literal default system prompt of a ChatML-style Jinja chat template, if any.

    Args:
        template: the ``chat_template`` string.

    Returns:
        The text between ``<|im_start|>system\\n`` and ``<|im_end|>`` in a string literal of
        the template, or None.
    """
    if not template or not isinstance(template, str):
        return None
    m = _SYSTEM_IN_TEMPLATE.search(template)
    if not m:
        return None
    text = m.group(1)
    if "\n" not in template[m.start():m.end()] and "\\n" in text:
        text = text.replace("\\n", "\n")
    return text


def _infer_chat_format(model_type: str | None, has_im: bool) -> str:
    if model_type and model_type.lower().startswith("internlm2"):
        return "internlm2"
    return "chatml" if has_im else "plain"


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
        from tokenizers import Tokenizer as HFTokenizer

        try:
            backend = HFTokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 -- tokenizers raises plain Exception
            raise TokenizerError(f"cannot read {d / 'tokenizer.json'}: {e}") from e
        kind = "tokenizers"
    elif (d / "tokenizer.model").is_file():
        import sentencepiece as spm

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
    fmt = chat_format or _infer_chat_format(cfg.get("model_type"), has_im)
    if fmt in ("internlm2", "chatml"):
        for tok in (IM_START, IM_END):  # a chat format forced on a vocab that has them as pieces
            if tok not in special and piece_id(tok) is not None:
                special[tok] = piece_id(tok)
    default_system: Any = DEFAULT
    if fmt == "chatml":
        default_system = default_system_from_template(tcfg.get("chat_template"))
    tok = Tokenizer(backend, name=name, special_tokens=special, bos_id=bos_id, eos_id=eos_id, add_bos=bool(add_bos),
                    chat_format=fmt, default_system=default_system, unk_id=unk_id)
    if extra_stops:
        tok.stop_ids = list(dict.fromkeys([*tok.stop_ids, *(int(i) for i in extra_stops)]))
        tok.fingerprint = tok._compute_fingerprint()
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
        p.write_bytes(tok._b.serialized())
    written.append(p)
    m = d / META_FILENAME
    m.write_text(json.dumps(tok.meta(), indent=2, ensure_ascii=False), encoding="utf-8")
    written.append(m)
    return written


# ----------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------
# Pre-tokenizer regexes by GGUF ``tokenizer.ggml.pre`` name (the format's published values).
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_PRE_GPT2 = {"gpt2", "default", "mpt", "olmo", "jais", "trillion"}
_PRE_DIGITS_GPT2 = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
_PRE_LLAMA3 = {"llama-bpe", "llama3", "falcon3", "pixtral", "dbrx", "smaug-bpe"}
_PRE_QWEN2 = {"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan"}


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Reads the key/value metadata of a little-endian GGUF (v2/v3) file, skipping tensors.

    Much faster than building a full ``gguf.GGUFReader`` for a large vocabulary.

    Args:
        path: the ``.gguf`` file.

    Returns:
        key -> value (str, int, float, bool, or list of those).

    Raises:
        TokenizerError: not a GGUF file or an unsupported version/type.
    """
    import mmap

    import numpy as np

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:4] != b"GGUF":
            raise TokenizerError(f"{path}: not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack_from("<IQQ", mm, 4)
        if version not in (2, 3):
            raise TokenizerError(f"{path}: unsupported GGUF version {version}")
        pos = 24

        def read_str(pos: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", mm, pos)
            pos += 8
            return mm[pos:pos + n].decode("utf-8", errors="replace"), pos + n

        def read_val(vt: int, pos: int) -> tuple[Any, int]:
            if vt == 8:
                return read_str(pos)
            if vt in _GGUF_SCALARS:
                fmt = _GGUF_SCALARS[vt]
                return struct.unpack_from(fmt, mm, pos)[0], pos + struct.calcsize(fmt)
            if vt == 9:
                et, n = struct.unpack_from("<IQ", mm, pos)
                pos += 12
                if et in _GGUF_SCALARS:
                    fmt = _GGUF_SCALARS[et]
                    size = struct.calcsize(fmt)
                    arr = np.frombuffer(mm, dtype=np.dtype(fmt), count=n, offset=pos)
                    return arr.tolist(), pos + size * n
                out = []
                for _ in range(n):
                    v, pos = read_val(et, pos)
                    out.append(v)
                return out, pos
            raise TokenizerError(f"{path}: unsupported GGUF value type {vt}")

        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = read_str(pos)
            (vt,) = struct.unpack_from("<I", mm, pos)
            meta[key], pos = read_val(vt, pos + 4)
        return meta


def _gguf_value(reader, key: str, default: Any = None) -> Any:
    if isinstance(reader, Mapping):
        return reader.get(key, default)
    f = reader.fields.get(key)
    if f is None:
        return default
    if hasattr(f, "contents"):
        return f.contents()
    from gguf import GGUFValueType

    def scalar(part, vtype):
        if vtype == GGUFValueType.STRING:
            return bytes(part).decode("utf-8", errors="replace")
        v = part.tolist()
        return v[0] if isinstance(v, list) and len(v) == 1 else v

    if f.types[0] == GGUFValueType.ARRAY:
        return [scalar(f.parts[i], f.types[-1]) for i in f.data]
    return scalar(f.parts[f.data[0]], f.types[0])


def _byte_level_pre(pre: str):
    from tokenizers import Regex, pre_tokenizers

    pre = (pre or "default").lower()
    if pre in _PRE_DIGITS_GPT2:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]), False
    if pre in _PRE_LLAMA3 or pre in _PRE_QWEN2:
        regex = _LLAMA3_REGEX if pre in _PRE_LLAMA3 else _QWEN2_REGEX
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]), pre in _PRE_LLAMA3
    if pre not in _PRE_GPT2:
        warnings.warn(f"GGUF pre-tokenizer {pre!r} is not known; using the GPT-2 split", stacklevel=3)
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False


def _is_chat_control(token: str) -> bool:
    return bool(re.fullmatch(r"<\|[^|\s]+\|>|\[UNUSED_TOKEN_\d+\]", token))


def tokenizer_from_gguf(path, chat_format: str | None = None) -> Tokenizer:
    """Builds the tokenizer described by a GGUF file's metadata.

    Supports ``tokenizer.ggml.model`` ``"gpt2"`` (byte-level BPE from ``tokens`` + ``merges``,
    pre-tokenizer chosen by ``tokenizer.ggml.pre``) and ``"llama"`` (SentencePiece BPE from
    ``tokens`` + ``scores`` + ``token_type``, identity normalization, dummy prefix from
    ``tokenizer.ggml.add_space_prefix``). Control tokens (type 3) are special; user-defined tokens
    (type 4) spelled like ``<|...|>`` are treated as special too, other user-defined tokens are
    matched in text.

    Args:
        path: the ``.gguf`` file (its metadata is read by :func:`read_gguf_metadata`), or an
            open ``gguf.GGUFReader``.
        chat_format: force a chat format; by default ``internlm2`` for the internlm2
            architecture, ``chatml`` when ``<|im_start|>`` is a token, else ``plain``.

    Returns:
        The tokenizer; its default system prompt is read from ``tokenizer.chat_template``.

    Raises:
        TokenizerError: missing tokenizer metadata or an unsupported tokenizer model.
    """
    from_reader = hasattr(path, "fields")
    reader = path if from_reader else read_gguf_metadata(path)
    model = _gguf_value(reader, "tokenizer.ggml.model")
    tokens = _gguf_value(reader, "tokenizer.ggml.tokens")
    if not model or not tokens:
        raise TokenizerError(f"{path}: no tokenizer metadata (tokenizer.ggml.model / tokens)")
    tokens = [str(t) for t in tokens]
    types = [int(t) for t in (_gguf_value(reader, "tokenizer.ggml.token_type") or [_SP_NORMAL] * len(tokens))]
    arch = str(_gguf_value(reader, "general.architecture", "") or "")
    if from_reader:
        gname = str(_gguf_value(reader, "general.name") or "gguf")
    else:  # "SmolLM2-135M-Instruct.Q4_1.gguf" -> "smollm2-135m-instruct"
        gname = re.sub(r"[.-](?:[qQ]\d\w*|[iI][qQ]\d\w*|[fF](?:16|32)|[bB][fF]16)$", "", Path(str(path)).stem)
    gname = gname.strip().lower().replace(" ", "-")
    bos_id = _gguf_value(reader, "tokenizer.ggml.bos_token_id")
    eos_id = _gguf_value(reader, "tokenizer.ggml.eos_token_id")
    unk_id = _gguf_value(reader, "tokenizer.ggml.unknown_token_id")
    template = _gguf_value(reader, "tokenizer.chat_template")
    special: dict[str, int] = {}
    user_defined: list[tuple[str, int]] = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == _SP_CONTROL or (ty == _SP_USER_DEFINED and _is_chat_control(t)):
            special[t] = i
        elif ty == _SP_USER_DEFINED:
            user_defined.append((t, i))

    if model == "gpt2":
        from tokenizers import AddedToken, decoders, models
        from tokenizers import Tokenizer as HFTokenizer

        merges_raw = _gguf_value(reader, "tokenizer.ggml.merges") or []
        merges = []
        for m in merges_raw:
            a, sep, b = str(m).partition(" ")
            if not sep:
                raise TokenizerError(f"{path}: malformed merge {m!r}")
            merges.append((a, b))
        vocab = {t: i for i, t in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise TokenizerError(f"{path}: duplicate tokens in tokenizer.ggml.tokens")
        pre_name = str(_gguf_value(reader, "tokenizer.ggml.pre", "default") or "default")
        pre_tok, ignore_merges = _byte_level_pre(pre_name)
        bpe = models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False,
                         ignore_merges=ignore_merges)
        backend = HFTokenizer(bpe)
        backend.pre_tokenizer = pre_tok
        backend.decoder = decoders.ByteLevel()
        if special:
            backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
        if user_defined:
            backend.add_tokens([AddedToken(t, special=False, normalized=False) for t, _ in user_defined])
        for t, i in [*special.items(), *user_defined]:
            if backend.token_to_id(t) != i:
                raise TokenizerError(f"{path}: token {t!r} did not keep id {i}")
        add_bos_default = False
    elif model == "llama":
        import sentencepiece as spm

        scores = _gguf_value(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
        add_prefix = _gguf_value(reader, "tokenizer.ggml.add_space_prefix", True)
        pieces = []
        for t, s, ty in zip(tokens, scores, types):
            pieces.append((t, float(s), ty if ty in (1, 2, 3, 4, 5, 6) else _SP_NORMAL))
        if _SP_UNKNOWN not in types:
            raise TokenizerError(f"{path}: SentencePiece vocabulary without an unknown token")
        proto = _sp_model_from_pieces(pieces, add_dummy_prefix=bool(add_prefix), byte_fallback=_SP_BYTE in types)
        try:
            backend = spm.SentencePieceProcessor(model_proto=proto)
        except Exception as e:  # noqa: BLE001
            raise TokenizerError(f"{path}: cannot build a SentencePiece model: {e}") from e
        add_bos_default = True
    else:
        raise TokenizerError(f"{path}: unsupported GGUF tokenizer model {model!r} (supported: gpt2, llama)")

    add_bos = _gguf_value(reader, "tokenizer.ggml.add_bos_token", add_bos_default)
    fmt = chat_format or _infer_chat_format(arch, IM_START in tokens and IM_END in tokens)
    if fmt in ("internlm2", "chatml"):
        for t in (IM_START, IM_END):
            if t not in special and t in tokens:
                special[t] = tokens.index(t)
    default_system: Any = DEFAULT
    if fmt == "chatml":
        default_system = default_system_from_template(template)
    if unk_id is not None and not (0 <= int(unk_id) < len(types) and types[int(unk_id)] == _SP_UNKNOWN):
        unk_id = None  # gpt2 GGUFs often name a control token as "unknown"; it is never produced
    name = f"{gname} (gguf)"
    return Tokenizer(backend, name=name, special_tokens=special, bos_id=bos_id, eos_id=eos_id, add_bos=bool(add_bos),
                     chat_format=fmt, default_system=default_system, unk_id=unk_id)
