"""Crash-safe NIAH results files (no torch).

A results file is JSONL, one record per (cell, trial) with the fields of ``docs/design.md``.
Next to it, ``<results>.config.json`` holds the run configuration: the settings that affect
results (model, its config hash, tokenizer, rope scaling, dtype, task and options, haystack
sha256, seed, chat/system/answer prefix...), their hash (``config_hash``) and the ``run_id``
(derived from that hash, so shards and resumed runs of one configuration share it).

Guarantees:

* every record is appended as one line, flushed and ``os.fsync``-ed before :meth:`append`
  returns (the next cell starts only after that);
* on open, a torn last line (the process was killed mid-write: no trailing newline, or the
  last line is not valid JSON) is cut off with a warning; complete lines are never lost;
* a rerun resumes: :meth:`ResultsFile.is_done` tells which cells are already present, keyed
  by (task, target_length, target_depth, trial);
* results of a different configuration are refused (:class:`ConfigMismatchError`, one line)
  unless ``force``: then the old files are moved aside to ``<results>.bak-<timestamp>`` (and
  ``<results>.config.json.bak-<timestamp>``) -- never deleted -- and the run starts fresh;
* ``<results>.config.json`` is written atomically (temporary file + ``os.replace``);
* an exclusive lock (``fcntl.flock``, where available) keeps two runs from writing one file.
"""
from __future__ import annotations

from longctx.errors import ResultsWarning, ConfigMismatchError

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

__all__ = [
    "ConfigMismatchError",
    "ResultsFile",
    "ResultsWarning",
    "cell_key",
    "config_hash",
    "config_path",
    "write_json_atomic",
]

KEY_FIELDS = ("task", "target_length", "target_depth", "trial")


def cell_key(task: Any, target_length: Any, target_depth: Any, trial: Any) -> tuple:
    """The identity of a result: (task, target_length, target_depth rounded to 1e-6, trial)."""
    return (str(task), int(target_length), round(float(target_depth), 6), int(trial))


def record_key(rec: dict) -> tuple:
    return cell_key(*(rec[k] for k in KEY_FIELDS))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)


def config_hash(settings: dict) -> str:
    """sha256 (first 16 hex digits) of the canonical JSON of ``settings``."""
    return hashlib.sha256(_canonical(settings).encode("utf-8")).hexdigest()[:16]


def config_path(results: str | os.PathLike) -> Path:
    """``<results>.config.json`` next to the results file."""
    p = Path(results)
    return p.with_name(p.name + ".config.json")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as pretty JSON via a temporary file in the same folder and ``os.replace``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    data = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    _fsync_dir(p.parent)


def _backup_name(path: Path, stamp: str) -> Path:
    cand = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while cand.exists():
        cand = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return cand


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_keys(va, vb, f"{prefix}{k}.")
        elif _canonical(va) != _canonical(vb):
            out.append(f"{prefix}{k}")
    return out


def _jsonable(obj: Any) -> Any:
    """NaN/inf floats become None (strict JSON); everything else passes."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalars
        return _jsonable(obj.item())
    return obj


class ResultsFile:
    """An append-only, resumable JSONL results file with its configuration alongside.

    Args:
        path: the JSONL file (parents are created).
        settings: everything that affects results (hashed; stored in the config file).
        info: other facts about the run (grid, shard, device, command line...), stored in the
            config file but not hashed.
        force: on a configuration mismatch, move the old files aside and start fresh.
        warn: called with a one-line message for repairs and skips (default:
            ``warnings.warn(..., ResultsWarning)``).

    Raises:
        ConfigMismatchError: the file holds another configuration's results and not ``force``.
        ValueError: the path is a directory, or another run holds the file's lock.
    """

    def __init__(self, path: str | os.PathLike, settings: dict, *, info: Optional[dict] = None,
                 force: bool = False, warn: Optional[Callable[[str], None]] = None) -> None:
        self.path = Path(path)
        self.config_file = config_path(self.path)
        self.settings = json.loads(_canonical(settings))
        self.config_hash = config_hash(self.settings)
        self.run_id = f"niah-{self.config_hash[:12]}"
        self.info = dict(info or {})
        self._warn = warn or (lambda msg: warnings.warn(msg, ResultsWarning, stacklevel=3))
        self.records: list[dict] = []
        self._done: set[tuple] = set()
        self.backups: list[Path] = []
        self.repaired_bytes = 0
        self._fh = None
        if self.path.is_dir():
            raise ValueError(f"results path is a directory: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open(force)

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, force: bool) -> None:
        self._fh = open(self.path, "ab")
        self._lock()
        self._repair_tail()
        self._load()
        stored = self._stored_config()
        mismatch = self._mismatch(stored)
        if mismatch is not None:
            if not force:
                self._unlock_close()
                raise ConfigMismatchError(
                    f"{self.path} holds results of another configuration ({mismatch}); use --force to move it "
                    f"aside and start fresh, or choose another --out")
            self._move_aside()
            self._fh = open(self.path, "ab")
            self._lock()
            self.records, self._done = [], set()
        self._write_config(stored)

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise ValueError(f"another run is writing {self.path} (the file is locked)") from None

    def _unlock_close(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None

    def _repair_tail(self) -> None:
        """Cuts a torn last line: no trailing newline, or a last line that is not JSON."""
        with open(self.path, "rb") as f:
            data = f.read()
        if not data:
            return
        keep = len(data)
        if not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1  # 0 when the only line is torn
        elif keep > 0:
            # A complete-looking last line that does not parse is a torn write too (e.g. NUL padding).
            start = data.rfind(b"\n", 0, keep - 1) + 1
            line = data[start:keep].strip()
            if line:
                try:
                    json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    keep = start
        if keep < len(data):
            cut = len(data) - keep
            self._fh.truncate(keep)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.repaired_bytes = cut
            self._warn(f"{self.path}: removed a torn last line ({cut} bytes) left by an interrupted run; "
                       f"that cell will be run again")

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        for i, raw in enumerate(data.split(b"\n")):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                key = record_key(rec)
            except (UnicodeDecodeError, ValueError, KeyError, TypeError):
                self._warn(f"{self.path}:{i + 1}: skipping a line that is not a results record")
                continue
            self.records.append(rec)
            self._done.add(key)

    def _stored_config(self) -> Optional[dict]:
        if not self.config_file.is_file():
            return None
        try:
            obj = json.loads(self.config_file.read_text(encoding="utf-8"))
            return obj if isinstance(obj, dict) else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}

    def _mismatch(self, stored: Optional[dict]) -> Optional[str]:
        """None when the existing results may be resumed, else what differs."""
        if stored is not None and stored.get("config_hash") not in (None, self.config_hash):
            diff = _diff_keys(stored.get("settings") or {}, self.settings)
            return "differs in " + ", ".join(diff[:6]) + (" ..." if len(diff) > 6 else "") if diff else \
                f"config hash {stored.get('config_hash')} != {self.config_hash}"
        if self.records:
            hashes = {r.get("run_config_hash") for r in self.records}
            if hashes != {self.config_hash}:
                if stored is None or stored == {}:
                    return "its records have no matching configuration file"
                return "its records carry another configuration hash"
        return None

    def _move_aside(self) -> None:
        self._unlock_close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for p in (self.path, self.config_file):
            if p.exists():
                dst = _backup_name(p, stamp)
                os.replace(p, dst)
                self.backups.append(dst)
        _fsync_dir(self.path.parent)
        self._warn(f"moved the previous results aside: {', '.join(str(b) for b in self.backups)}")

    def _write_config(self, stored: Optional[dict]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        same = bool(stored) and stored.get("config_hash") == self.config_hash
        runs = list(stored.get("runs") or []) if same else []
        runs.append({"started": now, **self.info})
        write_json_atomic(self.config_file, {
            "format": "longctx-niah-results/1",
            "results": self.path.name,
            "run_id": self.run_id,
            "config_hash": self.config_hash,
            "settings": self.settings,
            "created": stored.get("created", now) if same else now,
            "runs": runs[-50:],
        })

    # -- queries and appends ---------------------------------------------------------------------
    def is_done(self, task: Any, target_length: Any, target_depth: Any, trial: Any) -> bool:
        return cell_key(task, target_length, target_depth, trial) in self._done

    def done_keys(self) -> set[tuple]:
        return set(self._done)

    def append(self, record: dict) -> None:
        """Appends one record as a line; flushed and fsync-ed before returning."""
        if self._fh is None:
            raise ValueError(f"results file {self.path} is closed")
        rec = dict(record)
        rec.setdefault("run_id", self.run_id)
        rec["run_config_hash"] = self.config_hash
        line = json.dumps(_jsonable(rec), ensure_ascii=False, allow_nan=False, default=str) + "\n"
        self._fh.write(line.encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records.append(rec)
        self._done.add(record_key(rec))

    def close(self) -> None:
        self._unlock_close()

    def __enter__(self) -> "ResultsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_records(path: str | os.PathLike) -> list[dict]:
    """The complete records of a results file (a torn last line is ignored; nothing is changed)."""
    out = []
    data = Path(path).read_bytes()
    for raw in data.split(b"\n")[: -1 if not data.endswith(b"\n") else None]:
        if raw.strip():
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


def iter_keys(records: Iterable[dict]) -> list[tuple]:
    return [record_key(r) for r in records]


def check_results_file(path: str | os.PathLike) -> None:
    """Refuses an existing ``path`` that is not a results file of longctx (before anything is written).

    A path is ours when it does not exist, is empty, has a ``<path>.config.json`` of format
    ``longctx-niah-results/*``, or its first line is a results record (a JSON object with the
    fields ``task``, ``target_length``, ``target_depth`` and ``trial``). Nothing is read beyond the
    first line and nothing is changed.

    Raises:
        OutputError: a folder, an unreadable file, or a file of something else (one line).
    """
    from longctx.errors import OutputError

    p = Path(path)
    if not p.exists():
        return
    if p.is_dir():
        raise OutputError(f"--out {p} is a folder, not a results file")
    if not p.is_file():
        raise OutputError(f"--out {p} is not a regular file")
    try:
        cfg = json.loads(config_path(p).read_text(encoding="utf-8"))
        if isinstance(cfg, dict) and str(cfg.get("format", "")).startswith("longctx-niah-results/"):
            return
    except (OSError, ValueError):
        pass
    try:
        with open(p, "rb") as f:
            first = f.readline(1 << 20)
    except OSError as e:
        raise OutputError(f"cannot read --out {p}: {e.strerror or e}") from None
    if not first.strip():
        if p.stat().st_size == 0:
            return
    else:
        try:
            rec = json.loads(first.decode("utf-8"))
            if isinstance(rec, dict) and all(k in rec for k in KEY_FIELDS):
                return
        except (UnicodeDecodeError, ValueError):
            pass
    raise OutputError(f"--out {p} exists and is not a longctx results file; choose another --out "
                      f"(the file was left untouched)")
