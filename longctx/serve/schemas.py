"""Request schemas and the error type of ``longctx serve`` (pydantic models, torch-free).

Unknown request fields are accepted and ignored, as OpenAI clients send many; fields longctx does
not implement are refused with 400 by :meth:`SamplingRequest.check_supported` rather than ignored.
Every error is an :class:`APIError`, answered with OpenAI's body
``{"error": {"message", "type", "param", "code"}}``.
"""
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_STRINGS = 16
SEED_MIN, SEED_MAX = -(2 ** 63), 2 ** 64 - 1  # what torch.Generator.manual_seed accepts


class APIError(Exception):
    """An error answered with an OpenAI-style JSON body."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def validation_message(e: ValidationError) -> tuple[str, str | None]:
    """``("invalid request: <loc>: <msg>; ...", first location)`` for a pydantic error (at most 3 listed)."""
    errs = e.errors()
    parts, param = [], None
    for err in errs[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if param is None and loc:
            param = loc
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "invalid request: " + "; ".join(parts) + more, param


# ----------------------------------------------------------------------------------------------
# Request schemas (unknown fields are accepted and ignored, as OpenAI clients send many)
# ----------------------------------------------------------------------------------------------
class _Req(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Req):
    type: Literal["text"]
    text: str


class ChatMessage(_Req):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart], None] = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Req):
    include_usage: bool = False


class SamplingRequest(_Req):
    """Fields common to chat and text completions."""

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stop: Union[str, list[str], None] = None
    stop_token_ids: Optional[list[int]] = None  # vLLM extension
    ignore_eos: bool = False  # vLLM extension
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = 1
    frequency_penalty: Optional[float] = 0.0
    presence_penalty: Optional[float] = 0.0

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        if v is None:
            return []
        v = [v] if isinstance(v, str) else list(v)
        if len(v) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
        if any(s == "" for s in v):
            raise ValueError("stop strings must not be empty")
        return v

    def check_supported(self) -> None:
        if self.n not in (None, 1):
            raise APIError(400, "only n=1 is supported", param="n")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name) not in (None, 0, 0.0):
                raise APIError(400, f"{name} is not supported by longctx serve (send 0 or leave it out)", param=name)
        for name in ("logprobs", "top_logprobs", "logit_bias", "tools", "functions", "response_format"):
            extra = (self.model_extra or {}).get(name)
            if extra not in (None, False, {}, []):
                raise APIError(400, f"{name} is not supported by longctx serve", param=name)


class ChatRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)


class CompletionRequest(SamplingRequest):
    prompt: Union[str, list[int], list[str], list[list[int]]]
    echo: bool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = None


class TokenizeRequest(_Req):
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(_Req):
    model: Optional[str] = None
    tokens: list[int]

