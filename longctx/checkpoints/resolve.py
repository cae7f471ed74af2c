"""What a model path points to: the one resolver every loader goes through.

:func:`resolve` turns ``None`` (the embedded default model), a checkpoint directory or a ``.gguf``
file into a :class:`CheckpointSpec`. The spec is cheap to make (it only checks that the path
exists); its configuration, weight files and tokenizer source are read on first use, so ``info``
can show a config-only directory and the transformers backend can fall back to its own config.
A ``.gguf`` file means exactly that file; a directory means its config.json + weights (or, with
no config.json, its first GGUF in name order).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from longctx.checkpoints.default_model import DEFAULT_MODEL_DISPLAY, DEFAULT_MODEL_NAME, default_model_dir
from longctx.checkpoints.readers import gguf_model_config, weight_files
from longctx.engine.config import ModelConfig, load_config
from longctx.errors import ConfigError
from longctx.tokenizer import Tokenizer, load_tokenizer, tokenizer_from_gguf

__all__ = ["CheckpointSpec", "resolve"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


@dataclass(frozen=True)
class CheckpointSpec:
    """A resolved model location.

    Attributes:
        model_dir: the checkpoint directory (for a ``.gguf`` file, the folder holding it).
        gguf_file: the ``.gguf`` file the user named, else None.
        is_default: the embedded default model.
        display: how the model is shown (``"default:SmolLM2-135M-Instruct"`` or the path given).
    """

    model_dir: Path
    gguf_file: Path | None = None
    is_default: bool = False
    display: str = ""

    @cached_property
    def weights(self) -> tuple[str, tuple[Path, ...]]:
        """``(format, files)``: ``"safetensors"`` | ``"bin"`` | ``"gguf"`` and the weight files.

        Raises:
            WeightError: no weights, or an index naming a missing shard.
        """
        if self.gguf_file is not None:
            return "gguf", (self.gguf_file,)
        fmt, files = weight_files(self.model_dir)
        return fmt, tuple(files)

    @property
    def format(self) -> str:
        return self.weights[0]

    @property
    def has_config_json(self) -> bool:
        return self.gguf_file is None and (self.model_dir / "config.json").is_file()

    @cached_property
    def config(self) -> ModelConfig:
        """The model configuration: the GGUF's metadata, else ``config.json``.

        Raises:
            ConfigError, WeightError: unreadable or unsupported configuration.
        """
        if self.gguf_file is not None:
            cfg = gguf_model_config(self.gguf_file)
        elif not self.has_config_json and self.format == "gguf":
            cfg = gguf_model_config(self.weights[1][0])
        else:
            cfg = load_config(self.model_dir)
        if self.is_default:
            cfg.name = DEFAULT_MODEL_NAME
        return cfg

    @property
    def tokenizer_source(self) -> Path | None:
        """Where the tokenizer is read from: a ``.gguf`` file, a directory with tokenizer files, or
        None (weights only: token-id input works, text input raises)."""
        if self.gguf_file is not None:
            return self.gguf_file
        if any((self.model_dir / f).is_file() for f in _TOKENIZER_FILES):
            return self.model_dir
        if self.format == "gguf":
            return self.weights[1][0]
        return None

    def load_tokenizer(self) -> Tokenizer | None:
        """The checkpoint's tokenizer (None for a weights-only directory)."""
        src = self.tokenizer_source
        if src is None:
            return None
        return tokenizer_from_gguf(src) if src.suffix == ".gguf" else load_tokenizer(src)


def resolve(path: str | Path | None = None) -> CheckpointSpec:
    """Resolves a model path.

    Args:
        path: None (the embedded default model, converted once into a cached checkpoint), a
            checkpoint directory, or a ``.gguf`` file.

    Raises:
        ConfigError: the path does not exist, or is a file other than ``.gguf``.
        WeightError: the default model is not installed.
    """
    if path is None:
        return CheckpointSpec(default_model_dir(), is_default=True, display=DEFAULT_MODEL_DISPLAY)
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return CheckpointSpec(p.parent, gguf_file=p, display=str(p))
    if not p.exists():
        raise ConfigError(f"model directory not found: {p}")
    if not p.is_dir():
        raise ConfigError(f"model path is not a directory or .gguf file: {p}")
    return CheckpointSpec(p, display=str(p))
