"""SentencePiece models: the backend adapter and edits of the model proto (sentencepiece's own
``sentencepiece_model_pb2.ModelProto``).

Piece types (``ModelProto.SentencePiece.Type``) use the same numbers as GGUF's
``tokenizer.ggml.token_type``: NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6.
"""
from __future__ import annotations

from collections.abc import Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

__all__ = ["NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE", "SPBackend", "model_from_pieces"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def with_control(model: bytes, ids: set[int]) -> bytes:
    """Returns the serialized model with the pieces ``ids`` retyped CONTROL (never matched in text)."""
    proto = pb.ModelProto.FromString(model)
    for i in ids:
        proto.pieces[i].type = CONTROL
    return proto.SerializeToString()


def model_from_pieces(pieces: Sequence[tuple[str, float, int]], *, add_dummy_prefix: bool,
                      byte_fallback: bool) -> bytes:
    """Serializes a SentencePiece BPE model (identity normalization) from ``(piece, score, type)``.

    Args:
        pieces: the vocabulary in id order (GGUF ``tokens``, ``scores``, ``token_type``).
        add_dummy_prefix: whether text gets a leading "▁" (GGUF ``add_space_prefix``).
        byte_fallback: whether unknown characters become ``<0xNN>`` byte pieces.

    Returns:
        The ``ModelProto`` bytes, loadable by ``SentencePieceProcessor(model_proto=...)``.
    """
    proto = pb.ModelProto()
    for piece, score, ptype in pieces:
        p = proto.pieces.add(piece=piece, score=float(score))
        if ptype != NORMAL:
            p.type = ptype
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(pieces)
    proto.trainer_spec.byte_fallback = byte_fallback
    norm = proto.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = add_dummy_prefix
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    return proto.SerializeToString()


class SPBackend:
    """``sentencepiece.SentencePieceProcessor`` adapter.

    Plain text is encoded with a copy of the model in which every forbidden (special) piece is
    retyped CONTROL, so SentencePiece neither matches user-defined symbols such as
    ``<|im_end|>`` atomically in the text nor reaches them by merges.
    """

    kind = "sentencepiece"

    def __init__(self, sp: spm.SentencePieceProcessor, forbidden: set[int]) -> None:
        self.sp = sp
        self.model = sp.serialized_model_proto()
        n = sp.get_piece_size()
        retype = {i for i in forbidden
                  if 0 <= i < n and not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))}
        self.plain = spm.SentencePieceProcessor(model_proto=with_control(self.model, retype)) if retype else sp

    def size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.plain.encode(text, out_type=int)

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        res = self.plain.encode(text, out_type="offset_mapping")
        return list(res["ids"]), [tuple(o) for o in res["offsets"]]

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
