"""Every user-facing exception of longctx, importable without torch.

Each message is one line that the CLI prints as ``error: <message>`` with exit code 2. Library callers
catch the typed class (or its builtin base: ``ValueError`` for bad input, ``OSError`` for files).
"""
from __future__ import annotations

__all__ = [
    "LongctxError", "ConfigError", "WeightError", "TokenizerError", "ContextLengthError", "ContextLimitError",
    "CacheFullError", "QAError", "DocumentError", "ConfigMismatchError", "ResultsError", "ResultsWarning",
    "DocumentTruncatedWarning", "ServeError", "ReportError", "GridError", "OutputError", "PlanLimitError",
    "TaskError",
]


class LongctxError(Exception):
    """Base of every longctx exception (one-line message)."""


class ConfigError(LongctxError, ValueError):
    """A configuration that cannot be used (one-line message)."""


class WeightError(LongctxError, ValueError):
    """A checkpoint whose weights cannot be loaded (one-line message naming the file or tensor)."""


class TokenizerError(LongctxError, ValueError):
    """A tokenizer that cannot be built or used (one-line message)."""


class ContextLengthError(LongctxError, ValueError):
    """A request longer than the context the model (or the user) allows."""

    @classmethod
    def for_request(cls, prompt_tokens: int, max_new_tokens: int, limit: int) -> "ContextLengthError":
        """The error for a prompt + answer budget beyond ``limit`` tokens (one wording everywhere)."""
        return cls(f"prompt of {prompt_tokens} tokens + {max_new_tokens} new tokens exceeds the allowed context of "
                   f"{limit} tokens")


class ContextLimitError(ContextLengthError):
    """A grid length (+ answer budget) beyond what the backend allows."""

    def __init__(self, length: int, budget: int, limit: int, n_bad: int) -> None:
        self.length, self.budget, self.limit, self.n_bad = length, budget, limit, n_bad
        more = f" ({n_bad} lengths of the grid are too long)" if n_bad > 1 else ""
        super().__init__(f"length {length} + answer budget {budget} = {length + budget} tokens exceeds the "
                         f"model's allowed context of {limit} tokens{more}")


class GridError(LongctxError, ValueError):
    """A size, length list, depth list or range that cannot be parsed or is out of bounds."""


class OutputError(LongctxError, OSError):
    """An output path that must not or cannot be written: a file that is not ours, a read-only
    folder, a full disk. Nothing that was there before is changed."""

    def __str__(self) -> str:  # OSError would format (errno, strerror); keep the one line as given
        return str(self.args[0]) if self.args else ""


class PlanLimitError(LongctxError, ValueError):
    """A sweep plan over the time or memory limit, run without ``--yes``."""


class CacheFullError(LongctxError, RuntimeError):
    """Writing past the capacity the request reserved."""


class QAError(LongctxError, ValueError):
    """A question-answering request that cannot be served (one-line message)."""


class DocumentError(QAError):
    """A document that cannot be read or is empty (one-line message)."""


class ConfigMismatchError(LongctxError, ValueError):
    """The results file holds results of another configuration."""


class TaskError(LongctxError, ValueError):
    """A NIAH task that cannot be made (unknown name, bad option for the task; one-line message)."""


class ResultsWarning(UserWarning):
    """Something in a results file was repaired or skipped."""


class DocumentTruncatedWarning(UserWarning):
    """The document did not fit and was trimmed under an ``overflow="truncate_*"`` policy."""


class ServeError(LongctxError, OSError):
    """The server cannot start: its address does not resolve or its port is in use (one-line message)."""


class ReportError(LongctxError, ValueError):
    """Results files that cannot be made into an HTML report (one-line message)."""


class ResultsError(LongctxError, ValueError):
    """A results file that cannot be read (message names ``file:line``), or results that cannot be compared."""
