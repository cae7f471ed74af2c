"""NIAH results files: the one reader, the crash-safe writer and the summary (no torch).

A results file is JSONL, one record per (cell, trial) with the fields of ``docs/design.md``.
Next to it, ``<results>.config.json`` holds the run configuration: the settings that affect
results (model, its config hash, tokenizer, rope scaling, dtype, task and options, haystack
sha256, seed, chat/system/answer prefix...), their hash (``config_hash``) and the ``run_id``
(derived from that hash, so shards and resumed runs of one configuration share it), and
``<results>.summary.json`` the per-cell and per-length statistics (:func:`summarize`).

Reading (one policy for every reader: :func:`read_records`, :func:`load_results`, and
:class:`ResultsFile` when it resumes):

* a torn last line (the process was killed mid-write: the last non-blank line is not valid
  JSON) is skipped with a :class:`ResultsWarning` -- and cut off by the writer;
* any other bad line (not JSON, not an object, no task / target_length / target_depth / trial,
  a non-finite number, a score outside [0, 1]) raises :class:`ResultsError` naming ``file:line``;
* the identity of a result is its cell, :func:`cell_key` = (task, target_length, target_depth,
  trial), within its run (``run_id``): a later copy of a cell replaces an earlier one.

Writing (:class:`ResultsFile`): every record is appended as one line, flushed and
``os.fsync``-ed before :meth:`ResultsFile.append` returns; results of a different configuration
are refused (:class:`ConfigMismatchError`) unless ``force``, which moves the old files aside to
``<results>.bak-<timestamp>`` -- never deleted; JSON side files are written atomically; an
exclusive lock (``fcntl.flock``, where available) keeps two runs from writing one file.
"""
from __future__ import annotations

from longctx.errors import ConfigMismatchError, OutputError, ResultsError, ResultsWarning

import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from longctx.niah.stats import summarize

__all__ = [
    "ConfigMismatchError", "ResultsError", "ResultsFile", "ResultsWarning", "cell_key", "config_hash",
    "config_path", "summary_path", "write_json_atomic", "read_records", "load_results", "check_results_file",
]

KEY_FIELDS = ("task", "target_length", "target_depth", "trial")
Warn = Callable[[str], None]


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


def summary_path(results: str | os.PathLike) -> Path:
    """``<results>.summary.json`` next to the results file."""
    p = Path(results)
    return p.with_name(p.name + ".summary.json")


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


# --------------------------------------------------------------------------- reading
def _number(obj: dict, name: str, where: str, *, optional: bool = False) -> Optional[float]:
    v = obj.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ResultsError(f"{where}: {name} is not a number ({v!r})")
    if not math.isfinite(v):
        raise ResultsError(f"{where}: {name} is not a finite number")
    return v


def _check_record(obj: Any, where: str) -> dict:
    """A copy of one parsed line as a record (length and trial int, depth float), or ResultsError."""
    if not isinstance(obj, dict):
        raise ResultsError(f"{where}: expected one JSON object per line, got {type(obj).__name__}")
    missing = [k for k in KEY_FIELDS if obj.get(k) is None]
    if missing:
        raise ResultsError(f"{where}: record has no {' or '.join(missing)}; is this a NIAH results file?")
    rec = dict(obj)
    length, trial = _number(obj, "target_length", where), _number(obj, "trial", where)
    if length != int(length) or trial != int(trial):
        raise ResultsError(f"{where}: target_length and trial must be whole numbers")
    rec["target_length"], rec["trial"] = int(length), int(trial)
    rec["target_depth"] = float(_number(obj, "target_depth", where))
    _number(obj, "depth", where, optional=True)
    score = _number(obj, "score", where, optional=True)
    if score is not None and not 0.0 <= score <= 1.0:
        raise ResultsError(f"{where}: score {score!r} is outside [0, 1]")
    return rec


def _parse(data: bytes, name: str) -> tuple[list[dict], Optional[tuple[int, int]]]:
    """Records of a file's bytes and, for a torn last line, (its byte offset, its line number)."""
    lines = data.split(b"\n")  # "\n" only: JSON strings may hold raw U+2028 and friends
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    records, offset, torn = [], 0, None
    for i, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        where = f"{name}:{i + 1}"
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            if i == last:
                torn = (start, i + 1)
                break
            why = "not UTF-8" if isinstance(e, UnicodeDecodeError) else e.msg
            raise ResultsError(f"{where}: not valid JSON ({why}); is this a JSONL results file?") from None
        records.append(_check_record(obj, where))
    return records, torn


def _default_warn(msg: str) -> None:
    warnings.warn(msg, ResultsWarning, stacklevel=4)


def _dedupe(records: Iterable[dict], key: Callable[[dict], tuple]) -> list[dict]:
    kept: dict[tuple, dict] = {}
    for rec in records:
        kept.pop(key(rec), None)  # a later copy replaces the earlier one (and takes its place in order)
        kept[key(rec)] = rec
    return list(kept.values())


def read_records(path: str | os.PathLike, *, warn: Optional[Warn] = None) -> list[dict]:
    """The records of one results file, one per cell (the later copy wins); nothing is changed.

    Raises:
        ResultsError: the file is missing or unreadable, or a line other than the last is bad.
    """
    p = Path(path)
    if not p.exists():
        raise ResultsError(f"results file not found: {p}")
    if not p.is_file():
        raise ResultsError(f"not a results file (is a directory?): {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ResultsError(f"cannot read {p}: {e.strerror or e}") from None
    records, torn = _parse(data, str(p))
    if torn is not None:
        (warn or _default_warn)(f"{p}:{torn[1]}: skipping a torn last line (incomplete JSON) left by an "
                                f"interrupted run")
    return _dedupe(records, record_key)


def load_results(paths: Sequence[str | os.PathLike] | str | os.PathLike, *,
                 warn: Optional[Warn] = None) -> list[dict]:
    """Read and merge one or more results files (for example the shards of one run).

    Records of one run (``run_id``) and one cell (:func:`cell_key`) are de-duplicated, keeping
    the last one read (files in the given order). The result is ordered by run (first read
    first), then task, length, depth and trial.

    Raises:
        ResultsError: no paths, a file that :func:`read_records` refuses, or a file without records.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ResultsError("no results files given")
    merged: list[dict] = []
    for p in paths:
        recs = read_records(p, warn=warn)
        if not recs:
            raise ResultsError(f"{p}: no records")
        merged += recs
    runs: dict[str, int] = {}
    for rec in merged:
        runs.setdefault(str(rec.get("run_id")), len(runs))
    merged = _dedupe(merged, lambda r: (str(r.get("run_id")), *record_key(r)))
    return sorted(merged, key=lambda r: (runs[str(r.get("run_id"))], *record_key(r)))


# --------------------------------------------------------------------------- the writer
class ResultsFile:
    """An append-only, resumable JSONL results file with its configuration and summary alongside.

    Args:
        path: the JSONL file (parents are created).
        settings: everything that affects results (hashed; stored in the config file).
        info: other facts about the run (grid, shard, device, command line...), stored in the
            config file but not hashed.
        force: on a configuration mismatch, move the old files aside and start fresh.
        warn: called with a one-line message for repairs (default:
            ``warnings.warn(..., ResultsWarning)``).
        log_run: append this run (``info`` and the start time) to the config file's ``runs`` history
            on opening; with False the caller does it with :meth:`log_run` once it knows the run has
            cells to compute, so a resumed run that finds everything done leaves the history as it is.

    Raises:
        ConfigMismatchError: the file holds another configuration's results and not ``force``.
        ResultsError: a bad line other than the last (the file is left as it is).
        ValueError: the path is a directory, or another run holds the file's lock.
    """

    def __init__(self, path: str | os.PathLike, settings: dict, *, info: Optional[dict] = None,
                 force: bool = False, warn: Optional[Warn] = None, log_run: bool = True) -> None:
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
        self._log_on_open = log_run
        if self.path.is_dir():
            raise ValueError(f"results path is a directory: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open(force)

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, force: bool) -> None:
        self._fh = open(self.path, "ab")
        self._lock()
        try:
            self._load()
        except ResultsError:
            self._unlock_close()
            raise
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
        else:
            self._repair()
        self._write_config(stored)
        self.write_summary()

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

    def _load(self) -> None:
        """Reads the records with the one reading policy; changes nothing (see :meth:`_repair`)."""
        data = self.path.read_bytes()
        records, torn = _parse(data, str(self.path))
        self._cut = (torn[0], len(data) - torn[0]) if torn is not None else None
        self._add_newline = torn is None and bool(data) and not data.endswith(b"\n")
        self.records = _dedupe(records, record_key)
        self._done = {record_key(r) for r in self.records}

    def _repair(self) -> None:
        """Cuts a torn last line off, or gives a complete last record back its newline."""
        if self._cut is not None:
            keep, cut = self._cut
            self._fh.truncate(keep)
            self.repaired_bytes = cut
            self._warn(f"{self.path}: removed a torn last line ({cut} bytes) left by an interrupted run; "
                       f"that cell will be run again")
        elif self._add_newline:
            self._fh.write(b"\n")
        else:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())

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

    def _write_config(self, stored: Optional[dict], *, log_run: Optional[bool] = None) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        same = bool(stored) and stored.get("config_hash") == self.config_hash
        runs = list(stored.get("runs") or []) if same else []
        if self._log_on_open if log_run is None else log_run:
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

    def log_run(self) -> None:
        """Appends this run to the config file's ``runs`` history (see the ``log_run`` argument)."""
        self._write_config(self._stored_config(), log_run=True)

    def write_summary(self) -> Path:
        """(Re)writes ``<results>.summary.json`` from the records (:func:`summarize`); returns its path.

        Done on every open (so a forced restart never leaves the old summary beside new results)
        and by the runner at the end of a sweep. The summary is derived data: the results file
        regenerates it.
        """
        path = summary_path(self.path)
        write_json_atomic(path, {"format": "longctx-niah-summary/1", "results": self.path.name,
                                 "run_id": self.run_id, "config_hash": self.config_hash, **summarize(self.records)})
        return path

    # -- queries and appends ---------------------------------------------------------------------
    def is_done(self, task: Any, target_length: Any, target_depth: Any, trial: Any) -> bool:
        return cell_key(task, target_length, target_depth, trial) in self._done

    def append(self, record: dict) -> None:
        """Appends one record as a line; flushed and fsync-ed before returning."""
        if self._fh is None:
            raise ValueError(f"results file {self.path} is closed")
        rec = _jsonable({"run_id": self.run_id, **record, "run_config_hash": self.config_hash})
        line = json.dumps(rec, ensure_ascii=False, allow_nan=False, default=str) + "\n"
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


def check_results_file(path: str | os.PathLike) -> None:
    """Refuses an existing ``path`` that is not a results file of longctx (before anything is written).

    A path is ours when it does not exist, is empty, has a ``<path>.config.json`` of format
    ``longctx-niah-results/*``, or its first line is a results record (a JSON object with the
    fields ``task``, ``target_length``, ``target_depth`` and ``trial``). Nothing is read beyond the
    first line and nothing is changed.

    Raises:
        OutputError: a folder, an unreadable file, or a file of something else (one line).
    """
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
