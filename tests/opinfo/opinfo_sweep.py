"""PyTorch's OpInfo database through ``torch.compile(backend="dojo")``.

Every ``op_db`` entry that supports float32 on CPU is run on up to two of its samples,
compiled with ``dynamic=False`` after ``torch._dynamo.reset()``, and compared with eager
(``assert_close(atol=1e-4, rtol=1e-4, equal_nan=True)``; the state of tensor inputs after the
call is compared too, so a lost in-place update counts as a wrong result). Each entry gets one
status, the worst over its samples:

    wrong     the compiled result differs from eager (the worst outcome: silent)
    crash     an exception that is not a clean torch_dojo.DojoError (Python errors inside
              torch_dojo, "internal error" panics, a dead or hung worker process)
    error     a clean DojoError, or an exception torch.compile raises with the aot_eager
              backend as well (not torch-dojo's doing)
    fallback  results match; some nodes of a dojo graph ran eagerly on the host
    mesh      results match; every dojo graph ran whole on the mesh
    skip      nondeterministic output (empty*, random ops whose stream differs) or eager
              itself fails on every sample

The expected status of every entry is checked in as ``expected.tsv`` beside this file; the
test in ``tests/python/test_opinfo.py`` fails when reality differs in either direction.

Entries run in worker processes (``--worker``), fed one entry at a time, so a segfault or a
hang is recorded as a crash of that entry and the sweep goes on with a new worker.

    python tests/opinfo/opinfo_sweep.py [--full | --stride N] [--jobs J] [--update] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TABLE = HERE / "expected.tsv"
#: Detailed results of the last sweep (not checked in).
RESULTS = Path(os.environ.get("DOJO_OPINFO_RESULTS", ROOT / "target" / "opinfo" / "results.json"))

STATUSES = ("mesh", "fallback", "wrong", "crash", "error", "skip")
#: Worst first: an entry's status is the worst over its samples.
_SEVERITY = {"wrong": 0, "crash": 1, "error": 2, "fallback": 3, "mesh": 4, "skip": 5}

#: Samples per entry (the table is made with 2; more is for hunting bugs: --samples).
MAX_SAMPLES = int(os.environ.get("DOJO_OPINFO_SAMPLES", "2"))
ATOL = RTOL = 1e-4
#: Every Nth entry (sorted by name, variant) is the stratified subset `make test` runs.
SUBSET_STRIDE = 4
#: Seconds one entry may take in a worker before it is killed and recorded as a crash.
ENTRY_TIMEOUT = float(os.environ.get("DOJO_OPINFO_TIMEOUT", "900"))

#: Outputs that are uninitialised memory.
NONDETERMINISTIC = {"empty", "empty_like", "empty_permuted", "empty_strided", "new_empty", "new_empty_strided"}
#: Ops that draw random numbers: when the compiled result differs from eager under the same
#: seed, the entry is skipped (the RNG stream on the mesh or around graph breaks may differ).
RANDOM = {
    "bernoulli", "cauchy", "exponential", "geometric", "log_normal", "multinomial", "normal",
    "rand_like", "randint", "randint_like", "randn", "randn_like", "uniform",
    "nn.functional.alpha_dropout", "nn.functional.dropout", "nn.functional.dropout1d",
    "nn.functional.dropout2d", "nn.functional.dropout3d", "nn.functional.feature_alpha_dropout",
    "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d",
    "nn.functional.rrelu", "nn.functional.multi_head_attention_forward",
}

_PROTOCOL = "@@dojo-opinfo@@ "
_INTERNAL = re.compile(r"\binternal( error)?:|\bplease report\b")
NO_GRAPH = "(no graph reached dojo: Dynamo ran the op)"


def key_of(name: str, variant: str) -> str:
    return f"{name}.{variant}" if variant else name


@dataclass
class Result:
    name: str
    variant: str
    status: str
    #: One line: why (wrong/crash/error/skip) or which ops fell back (fallback).
    reason: str = ""
    seconds: float = 0.0
    #: Per sample: status, reason, graphs, nodes, fallback nodes, traceback of crashes.
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return key_of(self.name, self.variant)


# --------------------------------------------------------------------------------------
# The table


def read_table(path: Path = TABLE) -> dict[str, tuple[str, str]]:
    """key → (status, reason)."""
    table: dict[str, tuple[str, str]] = {}
    if not path.exists():
        return table
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, variant, status, *rest = line.split("\t")
        table[key_of(name, variant)] = (status, rest[0] if rest else "")
    return table


def write_table(rows: dict[tuple[str, str], tuple[str, str]], path: Path = TABLE) -> None:
    """rows: (name, variant) → (status, reason)."""
    counts = {s: 0 for s in STATUSES}
    for status, _ in rows.values():
        counts[status] += 1
    header = [
        "# Expected status of every PyTorch OpInfo entry (op_db, float32 on CPU) compiled with",
        '# torch.compile(backend="dojo"), checked by tests/python/test_opinfo.py. Statuses:',
        "#   mesh: all on the mesh, matches eager | fallback: matches, some nodes ran eagerly |",
        "#   wrong: differs from eager | crash: not a clean DojoError | error: clean DojoError or",
        "#   torch.compile fails with aot_eager too | skip: nondeterministic or eager fails.",
        "# Regenerate: DOJO_OPINFO_UPDATE=1 make test-opinfo (the reason column is informational).",
        "# Counts: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + f", total {len(rows)}",
        "# name\tvariant\tstatus\treason",
    ]
    lines = [f"{n}\t{v}\t{s}\t{_one_line(r)}" for (n, v), (s, r) in sorted(rows.items())]
    path.write_text("\n".join(header + lines) + "\n")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).replace("\t", " ").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# One entry (inside a worker)


def entries() -> list:
    """The op_db entries that support float32 on CPU, sorted by (name, variant)."""
    import torch
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]
    return sorted(ops, key=lambda op: (op.name, op.variant_test_name))


def subset(keys: list[str], stride: int = SUBSET_STRIDE) -> list[str]:
    """Every ``stride``-th key of the sorted list: deterministic and spread over the alphabet
    (so over op families: unary, binary, reductions, nn.functional, linalg, ...)."""
    return [k for i, k in enumerate(keys) if i % stride == 0]


def _clone(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.clone() if value.layout == torch.strided else value.detach().clone()
    if type(value) in (list, tuple):
        return type(value)(_clone(v) for v in value)
    if type(value) is dict:
        return {k: _clone(v) for k, v in value.items()}
    return value


def _flatten(value: Any, leaves: list) -> Any:
    """Replace each tensor in nested list/tuple/dict by its index in ``leaves``."""
    import torch

    if isinstance(value, torch.Tensor):
        leaves.append(value)
        return _Slot(len(leaves) - 1)
    if type(value) in (list, tuple):
        return type(value)(_flatten(v, leaves) for v in value)
    if type(value) is dict:
        return {k: _flatten(v, leaves) for k, v in value.items()}
    return value


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def _fill(template: Any, tensors: tuple) -> Any:
    if isinstance(template, _Slot):
        return tensors[template.index]
    if type(template) in (list, tuple):
        return type(template)(_fill(v, tensors) for v in template)
    if type(template) is dict:
        return {k: _fill(v, tensors) for k, v in template.items()}
    return template


def _bind(op, sample) -> tuple[Any, list]:
    """(function of the sample's tensors, the tensors): constants are closed over."""
    leaves: list = []
    template = _flatten((sample.input, tuple(sample.args), dict(sample.kwargs)), leaves)
    fn = op.op

    def call(*tensors):
        inp, args, kwargs = _fill(template, tensors)
        return fn(inp, *args, **kwargs)

    return call, leaves


def _compare(got: Any, want: Any, where: str = "output") -> None:
    """assert_close on tensors (nested in tuples/lists/dicts); anything else must be equal."""
    import torch

    if isinstance(want, torch.Tensor) or isinstance(got, torch.Tensor):
        if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor)):
            raise AssertionError(f"{where}: got {type(got).__name__}, expected {type(want).__name__}")
        try:
            torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL, equal_nan=True)
        except AssertionError as e:
            raise AssertionError(f"{where}: {_one_line(e, 400)}") from None
        return
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        if len(got) != len(want):
            raise AssertionError(f"{where}: {len(got)} items, expected {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{where}[{i}]")
        return
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            raise AssertionError(f"{where}: keys {sorted(got)}, expected {sorted(want)}")
        for k in want:
            _compare(got[k], want[k], f"{where}[{k!r}]")
        return
    if isinstance(want, float) and isinstance(got, float) and want != want and got != got:
        return  # nan == nan
    if got != want:
        raise AssertionError(f"{where}: {got!r} != {want!r}")


def _seeded(fn, *args):
    import torch

    torch.manual_seed(0)
    return fn(*args)


def _dojo_error(exc: BaseException):
    """The torch_dojo.DojoError in the chain of ``exc`` (Dynamo wraps backend errors)."""
    from torch_dojo import DojoError

    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DojoError):
            return e
        # Not __context__: an exception raised while handling a DojoError is not a clean one.
        stack.extend([getattr(e, "inner_exception", None), e.__cause__])
    return None


def _innermost(exc: BaseException) -> BaseException:
    e = exc
    while True:
        inner = getattr(e, "inner_exception", None) or e.__cause__
        if inner is None or inner is e:
            return e
        e = inner


def _where(exc: BaseException) -> str:
    """The innermost torch_dojo frame of the traceback (or the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "torch_dojo" in f.filename]
    f = (own or frames or [None])[-1]
    return "" if f is None else f" at {Path(f.filename).name}:{f.lineno} in {f.name}"


def _head(text: str, lines: int = 3) -> str:
    """The first lines of a message, up to its first blank line, on one line."""
    head = []
    for line in str(text).strip().splitlines():
        if not line.strip():
            break
        head.append(line.strip())
    return " | ".join(head[:lines])


def _describe(exc: BaseException) -> str:
    inner = _innermost(exc)
    return f"{type(inner).__name__}: {_head(inner)}{_where(inner)}"


def _compile_with(backend: str, fn, tensors: list):
    import torch
    import torch._dynamo

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=backend, dynamic=False)
    return _seeded(compiled, *tensors)


def run_sample(op, sample) -> dict[str, Any]:
    """One sample: eager twice (determinism), then dojo; a dict with status and reason."""
    import torch
    from torch_dojo import backend

    fn, leaves = _bind(op, sample)
    try:
        want_inputs = _clone(leaves)
        want = _seeded(fn, *want_inputs)
    except Exception as e:  # noqa: BLE001 - eager failing makes the sample untestable
        return {"status": "skip", "reason": f"eager fails: {_describe(e)}"}
    try:
        again_inputs = _clone(leaves)
        _compare(_seeded(fn, *again_inputs), want)
        _compare(again_inputs, want_inputs, "inputs after the call")
    except Exception as e:  # noqa: BLE001
        return {"status": "skip", "reason": f"eager is nondeterministic: {_one_line(e, 200)}"}

    first_graph = len(backend.fallback_stats)
    got_inputs = _clone(leaves)
    try:
        got = _compile_with("dojo", fn, got_inputs)
    except Exception as e:  # noqa: BLE001 - classified below
        return _classify_exception(e, fn, leaves)
    finally:
        stats = backend.fallback_stats[first_graph:]
    info = {
        "graphs": len(stats),
        "nodes": sum(s["nodes"] for s in stats),
        "fallback_nodes": sum(s["fallback_nodes"] for s in stats),
        "fallback_ops": sorted({op_name for s in stats for op_name, *_ in s["ops"]}),
    }
    try:
        _compare(got, want)
        _compare(got_inputs, want_inputs, "inputs after the call")
    except AssertionError as e:
        if op.name in RANDOM:
            return {"status": "skip", "reason": f"random op, stream differs: {_one_line(e, 200)}", **info}
        return {"status": "wrong", "reason": _one_line(e, 400) + _reference_note(fn, leaves, want), **info}
    if info["fallback_nodes"]:
        return {"status": "fallback", "reason": " ".join(info["fallback_ops"]), **info}
    if not info["graphs"]:
        # Dynamo ran the op itself (a graph break, or nothing left to compute): not the mesh.
        return {"status": "fallback", "reason": NO_GRAPH, **info}
    return {"status": "mesh", "reason": "", **info}


def _reference_note(fn, leaves, want) -> str:
    """Whether the same decomposed graphs run eagerly (aot_autograd with dojo's decompositions
    and no dojo) match eager: tells a dojo bug from a decomposition's numerics."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch_dojo import backend

    reference = aot_autograd(
        fw_compiler=lambda gm, _: make_boxed_func(gm.forward),
        bw_compiler=lambda gm, _: make_boxed_func(gm.forward),
        decompositions=backend.decompositions(),
    )
    try:
        got = _compile_with(reference, fn, _clone(leaves))
        _compare(got, want)
    except Exception as e:  # noqa: BLE001
        return f" [the decomposed graph run eagerly differs too: {_one_line(e, 120)}]"
    return " [the decomposed graph run eagerly matches: dojo computes it wrong]"


def _classify_exception(exc: BaseException, fn, leaves) -> dict[str, Any]:
    dojo_error = _dojo_error(exc)
    if dojo_error is not None:
        text = str(dojo_error).strip()
        # A compiler bug reported as an error (a panic, invalid IR, "internal: ...") is a crash.
        status = "crash" if _INTERNAL.search(text) else "error"
        return {"status": status, "reason": f"{type(dojo_error).__name__}: {_head(text)}"}
    # Not torch-dojo's doing when torch.compile fails the same way without it.
    try:
        _compile_with("aot_eager", fn, _clone(leaves))
    except Exception as e:  # noqa: BLE001
        if type(_innermost(e)) is type(_innermost(exc)):
            return {"status": "error", "reason": f"aot_eager fails too: {_describe(e)}"}
    return {
        "status": "crash",
        "reason": _describe(exc),
        "traceback": "".join(traceback.format_exception(_innermost(exc)))[-6000:],
    }


def run_entry(op) -> Result:
    import torch
    import torch._dynamo
    from torch_dojo import backend

    start = time.perf_counter()
    result = Result(op.name, op.variant_test_name, "skip")
    if op.name in NONDETERMINISTIC or getattr(op, "has_nondeterministic_output", False):
        result.reason = "nondeterministic output (uninitialised memory)"
        return result
    try:
        torch.manual_seed(0)
        samples = []
        for sample in op.sample_inputs("cpu", torch.float32):
            samples.append(sample)
            if len(samples) == MAX_SAMPLES:
                break
    except Exception as e:  # noqa: BLE001
        result.reason = f"sample_inputs fails: {_describe(e)}"
        return result
    if not samples:
        result.reason = "no float32 samples"
        return result
    for sample in samples:
        try:
            outcome = run_sample(op, sample)
        except Exception as e:  # noqa: BLE001 - a bug of this harness is a crash of the entry
            outcome = {"status": "crash", "reason": f"harness: {_describe(e)}", "traceback": traceback.format_exc()}
        outcome["sample"] = _one_line(repr(sample), 300)
        result.samples.append(outcome)
        torch._dynamo.reset()
        backend.compiled_graphs.clear()
        backend.fallback_stats.clear()
    worst = min(result.samples, key=lambda s: _SEVERITY[s["status"]])
    result.status = worst["status"]
    if result.status == "skip":
        # Only entries where every sample is skipped are skipped; otherwise the tested ones count.
        result.reason = worst["reason"]
    else:
        tested = [s for s in result.samples if s["status"] != "skip"]
        result.status = min(tested, key=lambda s: _SEVERITY[s["status"]])["status"]
        if result.status == "fallback":
            ops = sorted({o for s in tested for o in s.get("fallback_ops", [])})
            no_graph = any(s["reason"] == NO_GRAPH for s in tested)
            result.reason = " ".join(ops + ([NO_GRAPH] if no_graph else []))
        elif result.status == "mesh":
            result.reason = ""
        else:
            reasons = [s["reason"] for s in tested if s["status"] == result.status]
            result.reason = reasons[0] + (f" (+{len(reasons) - 1} more sample)" if len(reasons) > 1 else "")
    result.seconds = time.perf_counter() - start
    return result


def worker() -> None:
    """Read keys from stdin, one a line; write a protocol line per key as it starts and ends."""
    import warnings

    import torch
    import torch._dynamo

    import torch_dojo  # noqa: F401 - registers the backend
    from torch_dojo import backend

    warnings.simplefilter("ignore")
    torch._dynamo.config.cache_size_limit = 64
    ops = {key_of(op.name, op.variant_test_name): op for op in entries()}
    out = sys.stdout
    print(_PROTOCOL + json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        key = line.strip()
        if not key:
            continue
        print(_PROTOCOL + json.dumps({"start": key}), file=out, flush=True)
        result = run_entry(ops[key])
        print(_PROTOCOL + json.dumps({"result": asdict(result)}), file=out, flush=True)
        backend.compiled_graphs.clear()
        backend.fallback_stats.clear()


# --------------------------------------------------------------------------------------
# The sweep (parent process)


class _Worker:
    def __init__(self, log_dir: Path, index: int):
        env = dict(os.environ)
        env["DOJO_CACHE"] = "0"  # every entry is compiled, nothing is read from a cache
        for var in ("DOJO_DUMP_DIR", "TORCH_LOGS", "TORCH_COMPILE_DEBUG"):
            env.pop(var, None)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONFAULTHANDLER"] = "1"
        self.stderr_path = log_dir / f"worker{index}.stderr"
        self.stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=ROOT,
            env=env,
        )
        self.buffer = b""
        self.key: str | None = None
        self.started = 0.0
        self.ready = False

    def send(self, key: str) -> None:
        self.key = key
        self.started = time.monotonic()
        self.proc.stdin.write((key + "\n").encode())
        self.proc.stdin.flush()

    def messages(self) -> Iterable[dict]:
        chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        if not chunk:
            raise EOFError
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace")
            if text.startswith(_PROTOCOL):
                yield json.loads(text[len(_PROTOCOL):])

    def stderr_tail(self, chars: int = 4000) -> str:
        self.stderr.flush()
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stderr.close()


def sweep(keys: list[str], jobs: int = 2, progress=None, timeout: float = ENTRY_TIMEOUT) -> dict[str, Result]:
    """Run ``keys`` in ``jobs`` worker processes; a dead or hung worker's entry is a crash."""
    import tempfile

    log_dir = Path(tempfile.mkdtemp(prefix="dojo-opinfo-"))
    pending = list(keys)
    results: dict[str, Result] = {}
    workers: list[_Worker] = []
    spawned = 0

    def spawn() -> _Worker:
        nonlocal spawned
        spawned += 1
        return _Worker(log_dir, spawned)

    def finish(w: _Worker, result: Result) -> None:
        results[result.key] = result
        w.key = None
        if progress:
            progress(result, len(results), len(keys))

    def dead(w: _Worker, why: str) -> None:
        key = w.key
        tail = w.stderr_tail()
        w.kill()
        workers.remove(w)
        if key is not None:
            name, variant = _KEYS.get(key, (key, ""))
            finish(w, Result(name, variant, "crash", why, time.monotonic() - w.started, [{"status": "crash", "reason": why, "traceback": tail}]))
        elif not w.ready:
            raise RuntimeError(f"an OpInfo worker failed to start ({why}):\n{tail}")
        if pending:
            workers.append(spawn())

    try:
        for _ in range(max(1, min(jobs, len(pending)))):
            workers.append(spawn())
        while workers:
            for w in [w for w in workers if w.key is None and w.ready]:
                if pending:
                    w.send(pending.pop(0))
                else:
                    workers.remove(w)
                    w.close()
            if not workers:
                break
            readable, _, _ = select.select([w.proc.stdout for w in workers], [], [], 5.0)
            for w in list(workers):
                if w.proc.stdout in readable:
                    try:
                        for msg in list(w.messages()):
                            if "ready" in msg:
                                w.ready = True
                            elif "result" in msg:
                                finish(w, Result(**msg["result"]))
                    except EOFError:
                        code = w.proc.wait()
                        why = f"worker died: signal {signal.Signals(-code).name}" if code < 0 else f"worker exited with {code}"
                        dead(w, why)
                elif w.key is not None and time.monotonic() - w.started > timeout:
                    dead(w, f"timeout: no result after {timeout:.0f} s")
    finally:
        for w in workers:
            w.kill()
    return results


#: key → (name, variant); filled by main/all_keys (keys alone are ambiguous: names have dots).
_KEYS: dict[str, tuple[str, str]] = {}


def all_keys() -> list[str]:
    """Keys of every float32 CPU entry, sorted. Imports op_db (~5 s)."""
    keys = []
    for op in entries():
        key = key_of(op.name, op.variant_test_name)
        _KEYS[key] = (op.name, op.variant_test_name)
        keys.append(key)
    return keys


def counts(statuses: Iterable[str]) -> dict[str, int]:
    c = {s: 0 for s in STATUSES}
    for s in statuses:
        c[s] += 1
    return c


def format_counts(c: dict[str, int]) -> str:
    return " / ".join(f"{s} {c[s]}" for s in STATUSES) + f" (total {sum(c.values())})"


def compare(results: dict[str, Result], table: dict[str, tuple[str, str]], full: bool = False) -> list[str]:
    """Lines describing every entry whose status differs from the table (empty: all agree);
    after a full sweep also the table's entries that op_db no longer has."""
    diff = []
    if full:
        diff += [f"  gone        {key}: in the table, not in op_db" for key in sorted(set(table) - set(results))]
    for key in sorted(results):
        r = results[key]
        want = table.get(key, (None, ""))[0]
        if want is None:
            diff.append(f"  new entry   {key}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
        elif want != r.status:
            better = _SEVERITY.get(r.status, 9) > _SEVERITY.get(want, 9) if "skip" not in (want, r.status) else None
            word = {True: "better", False: "WORSE ", None: "changed"}[better]
            diff.append(f"  {word}  {key}: expected {want}, got {r.status}" + (f" ({r.reason})" if r.reason else ""))
    return diff


def update_table(results: dict[str, Result], keys: list[str], full: bool) -> None:
    """Write the results into the table: all rows after a full sweep (entries gone from
    op_db are dropped), only the rows that ran otherwise."""
    old = read_table()
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    if not full:
        for key, (status, reason) in old.items():
            if key in _KEYS:
                rows[_KEYS[key]] = (status, reason)
    for key, r in results.items():
        rows[(r.name, r.variant)] = (r.status, r.reason)
    write_table(rows)


def save_results(results: dict[str, Result]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({k: asdict(r) for k, r in sorted(results.items())}, indent=1))


def report(results: dict[str, Result]) -> str:
    """Counts, then every wrong and crashing entry with its reason."""
    lines = ["OpInfo sweep: " + format_counts(counts(r.status for r in results.values()))]
    for status in ("wrong", "crash"):
        bad = [r for r in results.values() if r.status == status]
        if bad:
            lines.append(f"{status}:")
            lines += [f"  {r.key}: {r.reason}" for r in sorted(bad, key=lambda r: r.key)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help="every entry (default: the subset)")
    parser.add_argument("--stride", type=int, default=SUBSET_STRIDE, help="subset: every Nth entry")
    parser.add_argument("--only", nargs="*", help="these entry keys (name or name.variant)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("DOJO_OPINFO_JOBS", "2")))
    parser.add_argument("--update", action="store_true", help="rewrite the table with the results")
    parser.add_argument("--samples", type=int, help="samples per entry (default 2; the table assumes 2)")
    args = parser.parse_args(argv)
    if args.samples:
        if args.update and args.samples != 2:
            parser.error("the table is made with 2 samples per entry")
        os.environ["DOJO_OPINFO_SAMPLES"] = str(args.samples)  # the workers read it
    if args.worker:
        worker()
        return 0
    keys = all_keys()
    if args.only:
        unknown = [k for k in args.only if k not in _KEYS]
        if unknown:
            parser.error(f"unknown entries: {unknown}")
        keys = args.only
    elif not args.full:
        keys = subset(keys, args.stride)
    start = time.monotonic()

    def progress(r: Result, done: int, total: int) -> None:
        print(f"[{done:4d}/{total}] {r.status:8s} {r.seconds:6.1f}s {r.key}" + (f": {r.reason}" if r.reason else ""), flush=True)

    results = sweep(keys, args.jobs, progress)
    print(f"\n{len(keys)} entries in {time.monotonic() - start:.0f} s with {args.jobs} worker(s)")
    save_results(results)
    print(report(results))
    diff = compare(results, read_table(), full=args.full)
    if args.update:
        update_table(results, keys, args.full)
        print(f"wrote {TABLE}")
    elif diff:
        print("differences from the table:\n" + "\n".join(diff))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
