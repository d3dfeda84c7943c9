"""Shared helpers of the benchmark scripts: fresh child processes with cold caches, medians,
and the ratio lines they print.

Benchmarks compare torch-dojo with PyTorch on the same machine in the same run and print
ratios, never a lone absolute time (shared machines are noisy). They are not tests: a slow
machine prints a ratio above its goal and the script still exits 0.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]


def child(script: str, args: list[str], timeout: float = 1800) -> dict[str, Any]:
    """Runs ``python script args`` in a fresh process with cold caches: a new empty
    ``TORCHINDUCTOR_CACHE_DIR`` and ``DOJO_CACHE_DIR`` (the compile cache is on, as users
    have it, but empty), no progress bars. Returns the JSON object the child printed last,
    or ``{"error": ...}``."""
    with tempfile.TemporaryDirectory(prefix="dojo-bench-") as tmp:
        env = dict(os.environ)
        env.update(
            TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor"),
            DOJO_CACHE_DIR=str(Path(tmp) / "dojo"),
            TRITON_CACHE_DIR=str(Path(tmp) / "triton"),
            TQDM_DISABLE="1",
        )
        env.pop("DOJO_CACHE", None)
        env.pop("DOJO_DUMP_DIR", None)
        proc = subprocess.run(
            [sys.executable, str(Path(script).resolve()), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:300]}"}


def emit(result: dict[str, Any]) -> None:
    """The child's answer: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def median_seconds(fn: Callable[[], Any], repeat: int, min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls (more while the total stays under
    ``min_seconds``)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 50:
            break
    return statistics.median(times)


def interleaved_medians(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median wall time of each of ``fns``, called in turn ``repeat`` times (a, b, a, b, ...)
    so that a busy machine slows both sides alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def ratio_line(name: str, ratio: float | None, goal: float, unit: str = "x", note: str = "") -> str:
    """``name  ratio (goal <= g)  meets goal | MISSES goal  note``; ``ratio`` None: n/a."""
    if ratio is None:
        return f"{name:58s} n/a {note}".rstrip()
    verdict = "meets goal" if ratio <= goal else "MISSES goal"
    return f"{name:58s} {ratio:8.3f}{unit} (goal <= {goal:g}{unit})  {verdict}  {note}".rstrip()


def na(reason: str) -> str:
    return f"({reason})"
