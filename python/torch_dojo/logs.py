"""What torch-dojo tells people while it compiles: the ``torch_dojo`` logger, IR dumps and a
progress bar.

* Logging goes through ``logging.getLogger("torch_dojo")`` (silent unless configured). The
  environment variable ``DOJO_LOG=debug`` (or ``info``, ``warning``) attaches a stderr handler
  at that level at import: INFO says which graph compiled or came from the cache and how long
  it took, DEBUG adds each stage's IR size.
* ``DOJO_DUMP_DIR=dir`` writes the IR after every stage of every compiled graph to
  ``dir/<graph#>-<stage#>-<stage>.mlir`` (e.g. ``003-02-dce.mlir``), MLIR generic syntax that
  ``dojo-opt`` reads back.
* Compiling shows a tqdm progress bar per graph (capture, compile, done) in terminals and
  notebooks; it stays quiet when stderr is not a terminal (``disable=None``), and
  ``TQDM_DISABLE=1`` turns it off everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Iterator

__all__ = ["logger", "configure_from_env", "dump_dir", "dump_stages", "log_compiled", "compile_progress"]

#: The package logger; every torch-dojo module logs through it.
logger = logging.getLogger("torch_dojo")
logger.addHandler(logging.NullHandler())

_ENV_HANDLER: logging.Handler | None = None


def configure_from_env() -> None:
    """Attach a stderr handler at the level ``DOJO_LOG`` names (once; no-op when unset)."""
    global _ENV_HANDLER
    level_name = os.environ.get("DOJO_LOG", "").strip()
    if not level_name or _ENV_HANDLER is not None:
        return
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        logger.warning(
            "DOJO_LOG=%r is not a logging level; use debug, info, warning or error", level_name
        )
        return
    _ENV_HANDLER = logging.StreamHandler(sys.stderr)
    _ENV_HANDLER.setFormatter(logging.Formatter("torch_dojo %(levelname)s: %(message)s"))
    logger.addHandler(_ENV_HANDLER)
    logger.setLevel(level)


def dump_dir() -> Path | None:
    """The directory ``DOJO_DUMP_DIR`` names, or None when IR dumps are off."""
    value = os.environ.get("DOJO_DUMP_DIR", "").strip()
    return Path(value).expanduser() if value else None


def dump_stages(graph_number: int, graph_name: str, stages: list[tuple[str, str]]) -> list[Path]:
    """Write each stage's IR to ``DOJO_DUMP_DIR`` (if set); returns the files written."""
    directory = dump_dir()
    if directory is None:
        return []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for i, (stage, text) in enumerate(stages):
            path = directory / f"{graph_number:03d}-{i:02d}-{_file_safe(stage)}.mlir"
            header = f"// torch-dojo {graph_name} graph #{graph_number}, IR after stage {i} ({stage})\n"
            path.write_text(header + text + ("" if text.endswith("\n") else "\n"))
            written.append(path)
    except OSError as e:
        # A dump is a debugging aid: say why it failed, but let the model run.
        logger.warning("cannot write IR dumps to DOJO_DUMP_DIR=%s: %s; set it to a writable directory", directory, e)
        return []
    logger.info("wrote the IR of %s graph #%d after %d stage(s) to %s", graph_name, graph_number, len(written), directory)
    return written


# An op in MLIR generic syntax: `%0 = "dojo.matmul"(...)` or `"func.return"(...)`.
_OP_LINE = re.compile(r'^\s*(?:%[^=]+=\s*)?"[\w.]+"\(', re.MULTILINE)


def log_compiled(graph_number: int, record) -> None:
    """INFO: where a graph came from and how long it took; DEBUG: every stage (pass) with
    its time and IR size (a graph loaded from the cache has no pass times)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    how = "loaded from the compile cache" if record.compiled_by == "cache" else "compiled"
    logger.info("%s graph #%d %s in %.1f ms", record.name, graph_number, how, record.compile_seconds * 1e3)
    if logger.isEnabledFor(logging.DEBUG):
        seconds = record.graph.stage_seconds()
        for i, (stage, text) in enumerate(record.graph.stages()):
            ops = len(_OP_LINE.findall(text))
            took = f" in {seconds[i] * 1e3:.2f} ms" if i < len(seconds) else ""
            logger.debug("%s graph #%d after stage %d (%s)%s: %d ops", record.name, graph_number, i, stage, took, ops)


def _file_safe(stage: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stage).strip("_") or "stage"


def _tqdm():
    """tqdm's notebook bar inside a Jupyter kernel when ipywidgets can draw it, else the
    terminal bar. Outside a kernel nothing notebook-related is imported: ipywidgets and
    IPython take about 0.3 s to import, which the first compile would pay for nothing."""
    if _in_jupyter_kernel():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm


def _in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (which has IPython loaded already)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Progress:
    """Steps of one graph's compile on a tqdm bar."""

    STEPS = ("capture", "compile", "done")

    def __init__(self, bar, graph_name: str) -> None:
        self._bar = bar
        self._graph_name = graph_name
        self.step("capture")

    def step(self, what: str) -> None:
        """Show ``what`` as the current step (the bar redraws at once: steps are few)."""
        n = self.STEPS.index(what) if what in self.STEPS else self._bar.n
        self._bar.update(n - self._bar.n)
        self._bar.set_description_str(f"torch-dojo {self._graph_name}: {what}", refresh=True)


@contextlib.contextmanager
def compile_progress(graph_name: str) -> Iterator[_Progress]:
    """A progress bar for compiling one graph; the block calls ``step("compile")`` etc."""
    bar = _tqdm()(
        total=len(_Progress.STEPS) - 1,
        leave=False,
        disable=None,  # quiet when stderr is not a terminal (CI, pipes, pytest)
        bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}]",
    )
    try:
        progress = _Progress(bar, graph_name)
        yield progress
        progress.step("done")
    finally:
        bar.close()
