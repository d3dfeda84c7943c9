"""The persistent compile cache: a graph compiled once is loaded, not recompiled, by later
processes.

* Where: ``$DOJO_CACHE_DIR``, else ``$XDG_CACHE_HOME/torch_dojo``, else
  ``~/.cache/torch_dojo``. ``DOJO_CACHE=0`` (or ``configure(enabled=False)``) turns it off.
* Key: SHA-256 of the captured graph JSON (ops, attributes, input shapes and dtypes), the
  options that shape the Program (all but ``dump_ir``), the torch-dojo version and a
  fingerprint of the native extension (so a rebuilt compiler never reads stale entries).
* Entry ``<key>.dojo``: one JSON header line (format, key, section sizes, SHA-256 of the
  rest), then the Program JSON as it is, then the stages (a JSON list of ``[name, IR]``).
  Loading checks the header, the sizes and the checksum, then ``_native.load_compiled`` parses
  and validates the Program; an entry that fails any check is reported with a warning,
  deleted and recompiled, never run.
* Writes go to a temporary file in the same directory and are renamed into place
  (``os.replace``), so a reader sees a whole entry or none even with concurrent writers.
  They run on one background thread, off the compile's critical path (serializing and
  hashing a Program of tens of megabytes costs about as much as compiling it); the process
  finishes them before it exits, and ``flush()`` waits for them.
* Size: when the entries pass ``DOJO_CACHE_MAX_MB`` (default 1024), the least recently used
  ones (a load refreshes an entry's modification time) are deleted down to 3/4 of it. The
  directory is measured on the first write of a process and every 32 writes after.

Cost, measured (tests/python/test_cache.py prints it): the compiler is fast today, and a load
costs about as much as a compile (0.3-1.3x "speedup" on a 3-layer MLP; 5-8 MB Programs load
in 60-120 ms against 75-80 ms to compile) because ``CompiledGraph::from_saved`` parses the
Program JSON twice (version check, then the Program), validates it and serializes it again.
The cache pays off once compiling costs more than reading a Program back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _native
from .logs import logger

__all__ = ["CompileResult", "compile_graph", "configure", "enabled", "directory", "entry_key", "clear", "prune", "max_bytes", "flush"]

#: Version of the entry layout; part of every key.
FORMAT = 2
_SUFFIX = ".dojo"
#: Options that do not change the Program (left out of the key).
_NOT_IN_KEY = frozenset({"dump_ir", "strict_numerics"})
_OFF = frozenset({"0", "false", "no", "off"})
_DEFAULT_MAX_MB = 1024
#: Writes between two measurements of the directory's size.
_PRUNE_EVERY = 32
_writes = 0

_enabled: bool | None = None
_directory: Path | None = None
#: The background writer and its unfinished writes, by entry path.
_writer: ThreadPoolExecutor | None = None
_pending: dict[Path, Future] = {}
_pending_lock = threading.RLock()


@dataclass(frozen=True)
class CompileResult:
    """A compiled graph and where it came from."""

    graph: Any  # _native.CompiledGraph
    #: "compiler" or "cache".
    source: str
    #: Wall seconds spent compiling or loading.
    seconds: float
    #: The cache key (None when the cache is off).
    key: str | None


def configure(*, enabled: bool | None = None, directory: str | os.PathLike | None = None) -> None:
    """Override ``DOJO_CACHE`` / ``DOJO_CACHE_DIR`` for this process (None: back to the env)."""
    global _enabled, _directory
    _enabled = enabled
    _directory = None if directory is None else Path(directory).expanduser()


def enabled() -> bool:
    """Whether compiles read and write the cache."""
    if _enabled is not None:
        return _enabled
    return os.environ.get("DOJO_CACHE", "1").strip().lower() not in _OFF


def directory() -> Path:
    """The cache directory (created on first write)."""
    if _directory is not None:
        return _directory
    if env := os.environ.get("DOJO_CACHE_DIR", "").strip():
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base).expanduser() / "torch_dojo"


def clear() -> int:
    """Delete every entry of the cache directory; returns how many were deleted."""
    flush()
    removed = 0
    for path in directory().glob(f"*{_SUFFIX}"):
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def entry_key(graph_json: str, options: dict[str, Any]) -> str:
    """The cache key of a graph compiled with ``options``."""
    keyed = {k: v for k, v in sorted(options.items()) if k not in _NOT_IN_KEY}
    h = hashlib.sha256()
    for part in (f"format {FORMAT}", _native.__version__, _extension_fingerprint(), json.dumps(keyed), graph_json):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def compile_graph(graph_json: str, options: dict[str, Any]) -> CompileResult:
    """The compiled graph for ``graph_json``: from the cache when it holds a sound entry,
    else from the compiler (and then stored)."""
    start = time.perf_counter()
    if not enabled():
        graph = _native.compile_graph(graph_json, json.dumps(options))
        return CompileResult(graph, "compiler", time.perf_counter() - start, None)
    key = entry_key(graph_json, options)
    path = directory() / f"{key}{_SUFFIX}"
    _wait_for(path)
    graph = _load(path, key)
    if graph is not None:
        return CompileResult(graph, "cache", time.perf_counter() - start, key)
    graph = _native.compile_graph(graph_json, json.dumps(options))
    seconds = time.perf_counter() - start
    _store_later(path, key, graph)
    return CompileResult(graph, "compiler", seconds, key)


def _store_later(path: Path, key: str, graph) -> None:
    """Queues the entry's write on the background writer."""
    global _writer
    with _pending_lock:
        if _writer is None:
            # Its worker is joined when the interpreter exits: queued writes are not lost.
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch-dojo-cache")
        future = _writer.submit(_store_logged, path, key, graph)
        _pending[path] = future
        future.add_done_callback(lambda f: _forget(path, f))


def _forget(path: Path, future: Future) -> None:
    with _pending_lock:
        if _pending.get(path) is future:
            del _pending[path]


def _store_logged(path: Path, key: str, graph) -> None:
    try:
        _store(path, key, graph)
    except Exception as e:  # a failed write is a cache miss later, never an error now
        logger.warning("cannot write the compile cache entry %s: %s", path, e)


def _wait_for(path: Path) -> None:
    with _pending_lock:
        future = _pending.get(path)
    if future is not None:
        future.result()


def flush() -> None:
    """Waits until every compile cache write of this process has finished."""
    with _pending_lock:
        futures = list(_pending.values())
    for f in futures:
        f.result()


def _load(path: Path, key: str):
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        logger.warning("cannot read compile cache entry %s: %s; compiling instead", path, e)
        return None
    try:
        program_json, stages = _checked_sections(data, key)
        graph = _native.load_compiled(program_json, stages)
        _touch(path)
        return graph
    except (ValueError, TypeError, _native.DojoError) as e:
        warnings.warn(
            f"torch-dojo: compile cache entry {path} is corrupt ({e}); it was deleted and the "
            f"graph is compiled again",
            RuntimeWarning,
            stacklevel=2,
        )
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _checked_sections(data: bytes, key: str) -> tuple[str, list[tuple[str, str]]]:
    """Program JSON and stages of an entry after checking header, sizes and checksum
    (ValueError if any check fails)."""
    end = data.find(b"\n")
    if end < 0:
        raise ValueError("no header line (truncated?)")
    header = json.loads(data[:end])  # json.JSONDecodeError is a ValueError
    body = memoryview(data)[end + 1 :]  # no copies of the (megabytes of) Program
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("key") != key:
        raise ValueError("the header does not match this cache format and key")
    program_bytes, stages_bytes = header.get("program_bytes"), header.get("stages_bytes")
    if not isinstance(program_bytes, int) or not isinstance(stages_bytes, int):
        raise ValueError("the header has no section sizes")
    if program_bytes + stages_bytes != len(body):
        raise ValueError(f"{len(body)} bytes after the header, expected {program_bytes + stages_bytes} (truncated?)")
    if header.get("sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError("checksum mismatch")
    stages = json.loads(bytes(body[program_bytes:]))
    if not isinstance(stages, list):
        raise ValueError("the stages are not a list")
    return str(body[:program_bytes], "utf-8"), [(str(name), str(text)) for name, text in stages]


def _store(path: Path, key: str, graph) -> None:
    program = graph.program_json().encode()
    stages = json.dumps(graph.stages()).encode()
    digest = hashlib.sha256(program)
    digest.update(stages)
    header = {
        "format": FORMAT,
        "key": key,
        "torch_dojo": _native.__version__,
        "program_bytes": len(program),
        "stages_bytes": len(stages),
        "sha256": digest.hexdigest(),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        # No fsync: the rename is atomic for readers, and an entry a crash left torn fails its
        # size or checksum check on load and is compiled again (fsync of a Program of tens
        # of megabytes would cost more than compiling it).
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            f.write(program)
            f.write(stages)
        os.replace(tmp, path)  # atomic: readers see the old entry, none, or this one whole
        tmp = None
        _after_write(path.parent)
    except OSError as e:
        logger.warning(
            "cannot write the compile cache entry %s: %s; set DOJO_CACHE_DIR to a writable "
            "directory or DOJO_CACHE=0 to turn the cache off",
            path,
            e,
        )
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def max_bytes() -> int:
    """The size the cache directory is kept under (``DOJO_CACHE_MAX_MB``)."""
    value = os.environ.get("DOJO_CACHE_MAX_MB", "").strip()
    try:
        return int(float(value) * 2**20) if value else _DEFAULT_MAX_MB * 2**20
    except ValueError:
        logger.warning("DOJO_CACHE_MAX_MB=%r is not a number of MiB; using %d", value, _DEFAULT_MAX_MB)
        return _DEFAULT_MAX_MB * 2**20


def prune(directory_: Path | None = None, limit: int | None = None) -> int:
    """Delete least recently used entries until the cache is under 3/4 of ``limit`` (if it is
    over ``limit``); returns how many were deleted."""
    directory_ = directory() if directory_ is None else directory_
    limit = max_bytes() if limit is None else limit
    entries = []
    try:
        with os.scandir(directory_) as it:
            for e in it:
                if e.name.endswith(_SUFFIX):
                    try:
                        st = e.stat()
                        entries.append((st.st_mtime_ns, st.st_size, e.path))
                    except OSError:
                        pass  # deleted meanwhile by another process
    except OSError:
        return 0
    total = sum(size for _, size, _ in entries)
    if total <= limit:
        return 0
    removed = 0
    for _, size, path in sorted(entries):
        if total <= limit * 3 // 4:
            break
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
        total -= size
    logger.info("compile cache over %d MiB: deleted the %d least recently used entries", limit >> 20, removed)
    return removed


def _after_write(directory_: Path) -> None:
    global _writes
    if _writes % _PRUNE_EVERY == 0:
        prune(directory_)
    _writes += 1


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


_FINGERPRINT: str | None = None


def _extension_fingerprint() -> str:
    """Size and modification time of the native extension: changes with every rebuild."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        try:
            st = os.stat(_native.__file__)
            _FINGERPRINT = f"{st.st_size}:{st.st_mtime_ns}"
        except (AttributeError, OSError):
            _FINGERPRINT = "unknown"
    return _FINGERPRINT
