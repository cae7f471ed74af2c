"""The :class:`Tokenizer`: one wrapper over a ``tokenizers`` or ``sentencepiece`` backend.

Safety rule: :meth:`Tokenizer.encode` is for plain text and never returns the id of a special /
control token, even when the text spells one (``"<|im_end|>"``, ``"<s>"``). Chat prompts are
built by :meth:`Tokenizer.chat_ids`, which inserts control tokens by id (layout in
:mod:`longctx.tokenizer.chat`) and encodes every text piece with :meth:`Tokenizer.encode`, so
user text cannot inject control tokens.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sentencepiece as spm
from tokenizers import Tokenizer as HFTokenizer

from longctx.errors import TokenizerError
from longctx.tokenizer.chat import (
    CHAT_FORMATS,
    DEFAULT,
    IM_END,
    IM_START,
    INTERNLM2_SYSTEM_PROMPT,
    Segment,
    _DefaultSystem,
    chat_segments,
)
from longctx.tokenizer.spm import SPBackend
from longctx.tokenizer.streaming import StreamDecoder

__all__ = ["META_VERSION", "Tokenizer"]

META_VERSION = 1  # of the dict that Tokenizer.meta() returns (stored as tokenizer_meta.json)


class _HFBackend:
    """``tokenizers.Tokenizer`` adapter (special added tokens are encoded as plain text)."""

    kind = "tokenizers"

    def __init__(self, tk: HFTokenizer) -> None:
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
        if isinstance(backend, HFTokenizer):
            self._b: Any = _HFBackend(backend)
        elif isinstance(backend, spm.SentencePieceProcessor):
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
            self._b = SPBackend(backend, self._forbidden)
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
            "version": META_VERSION, "name": self.name, "backend": self._b.kind, "bos_id": self.bos_id,
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
        hf = self.backend if self._b.kind == "tokenizers" else None
        return StreamDecoder(self._b.decode, self._backend_size, self._id_to_special, hf, skip_special)

    # -- chat ----------------------------------------------------------------------------------
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
        return chat_segments(self.chat_format, messages, system=system, default_system=self.default_system,
                             bos_id=self.bos_id if self.add_bos else None, im_start=self._im_start,
                             im_end=self._im_end, add_generation_prompt=add_generation_prompt)

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


