"""Tokenizers: one :class:`Tokenizer` over a ``tokenizers`` or ``sentencepiece`` backend.

Map of the package:

* :mod:`~longctx.tokenizer.core` -- :class:`Tokenizer`: plain-text encode (never a special id),
  offsets, decode, control tokens by id, fingerprint.
* :mod:`~longctx.tokenizer.chat` -- chat formats (internlm2, chatml, plain) as text pieces and
  control-token ids, apart from any tokenizer.
* :mod:`~longctx.tokenizer.streaming` -- incremental detokenization (``DecodeStream``).
* :mod:`~longctx.tokenizer.files` -- :func:`load_tokenizer` / :func:`save_tokenizer_json` for a
  model directory.
* :mod:`~longctx.tokenizer.gguf` -- :func:`tokenizer_from_gguf` from GGUF metadata;
  :mod:`~longctx.tokenizer.pretokenize` -- the byte-level pre-tokenizers it needs.
* :mod:`~longctx.tokenizer.spm` -- SentencePiece backend and model-proto edits.
"""
from longctx.errors import TokenizerError
from longctx.tokenizer.chat import (
    CHAT_FORMATS,
    DEFAULT,
    INTERNLM2_SYSTEM_PROMPT,
    Segment,
    default_system_from_template,
)
from longctx.tokenizer.core import Tokenizer
from longctx.tokenizer.files import META_FILENAME, load_tokenizer, save_tokenizer_json
from longctx.tokenizer.gguf import tokenizer_from_gguf
from longctx.tokenizer.streaming import StreamDecoder

__all__ = [
    "CHAT_FORMATS", "DEFAULT", "INTERNLM2_SYSTEM_PROMPT", "META_FILENAME", "Segment", "StreamDecoder", "Tokenizer",
    "TokenizerError", "default_system_from_template", "load_tokenizer", "save_tokenizer_json", "tokenizer_from_gguf",
]
