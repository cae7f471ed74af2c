"""Incremental detokenization: feed generated ids one at a time, get newly completed text.

Contract: the concatenation of every :meth:`StreamDecoder.push` and the final
:meth:`StreamDecoder.flush` equals ``Tokenizer.decode(all_ids, skip_special)``. Like ``decode``,
the stream is cut into runs of ordinary ids at every special id; each run is decoded on its own:

* ``tokenizers`` backends: ``tokenizers.decoders.DecodeStream`` (it holds back incomplete UTF-8
  and keeps the decoder's context, e.g. SentencePiece-style leading spaces).
* SentencePiece backends: DecodeStream needs a ``tokenizers.Tokenizer``, so a small window does
  the same: decode the already emitted tokens plus the pending ones, emit the difference, hold
  text back while it ends in an incomplete UTF-8 sequence (U+FFFD).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from tokenizers.decoders import DecodeStream

from longctx.errors import TokenizerError

__all__ = ["StreamDecoder"]


class _WindowRun:
    """One run of ordinary ids decoded incrementally with a plain ``decode(ids) -> str``."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window
        self._read = 0  # end of the already emitted tokens
        self._prefix_text = ""

    def _step(self, final: bool) -> str:
        text = self._decode(self._ids[self._prefix:])
        if not final and (text.endswith("\ufffd") or len(text) < len(self._prefix_text)):
            return ""
        out = text[len(self._prefix_text):]
        self._prefix, self._read = self._read, len(self._ids)
        self._prefix_text = self._decode(self._ids[self._prefix:self._read])
        return out

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        return self._step(final=False)

    def flush(self) -> str:
        return self._step(final=True) if self._read < len(self._ids) else ""


class _DecodeStreamRun:
    """One run of ordinary ids decoded by ``tokenizers.decoders.DecodeStream``."""

    def __init__(self, tk) -> None:
        self._tk = tk
        self._stream = DecodeStream(skip_special_tokens=False)
        self._ids: list[int] = []
        self._emitted = 0  # characters returned so far

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        out = self._stream.step(self._tk, token_id) or ""
        self._emitted += len(out)
        return out

    def flush(self) -> str:
        # DecodeStream has no flush: held-back bytes are what the whole run's decode adds.
        return self._tk.decode(self._ids, skip_special_tokens=False)[self._emitted:] if self._ids else ""


class StreamDecoder:
    """Incremental detokenizer (built by ``Tokenizer.stream_decoder``).

    Args:
        decode: decodes a run of ordinary ids (the backend's decode).
        backend_size: ordinary ids are ``0 <= id < backend_size``.
        specials: special id -> its content.
        hf_tokenizer: the ``tokenizers.Tokenizer`` backend (runs use ``DecodeStream``), or None.
        skip_special: drop special tokens (else they appear as their content).
    """

    def __init__(self, decode: Callable[[list[int]], str], backend_size: int, specials: Mapping[int, str],
                 hf_tokenizer=None, skip_special: bool = True) -> None:
        self._decode, self._size, self._specials = decode, backend_size, specials
        self._hf = hf_tokenizer
        self._skip = skip_special
        self._run = self._new_run()

    def _new_run(self):
        return _DecodeStreamRun(self._hf) if self._hf is not None else _WindowRun(self._decode)

    def push(self, token_id: int) -> str:
        """Adds one token id.

        Args:
            token_id: the next generated id.

        Returns:
            The text completed by this token ("" while a multi-byte character is incomplete).

        Raises:
            TokenizerError: an id outside the vocabulary.
        """
        i = int(token_id)
        if i in self._specials:
            out = self.flush()
            return out if self._skip else out + self._specials[i]
        if not 0 <= i < self._size:
            raise TokenizerError(f"token id {i} is outside the vocabulary (size {self._size})")
        return self._run.push(i)

    def flush(self) -> str:
        """Returns any held-back text (incomplete bytes become U+FFFD) and starts a new run."""
        out = self._run.flush()
        self._run = self._new_run()
        return out
