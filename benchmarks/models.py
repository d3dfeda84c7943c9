"""The coverage issue's models through backend="dojo": per model and mode (inference, one
training step), the nodes that fell back to eager, the compile time (Dynamo + AOTAutograd +
capture + compiler, first call minus one eager call) and the largest difference from eager.

    .venv/bin/python benchmarks/models.py [name ...]      (make bench-models)

Not a test: it prints a table for the notes. The models are the ones tests/python/test_models.py
pins (random weights, offline).
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import test_models as tm  # noqa: E402

from torch_dojo import backend, cache  # noqa: E402


def measure(name: str, train: bool) -> str:
    torch._dynamo.reset()
    backend.fallback_stats.clear()
    torch.manual_seed(0)
    model, inputs = tm.MODELS[name][0]()
    model.train(train)
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, backend="dojo")
    first = len(backend.compiled_graphs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.set_grad_enabled(train):
            t0 = time.perf_counter()
            want = tm.logits(reference(*inputs))
            eager = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = tm.logits(compiled(*inputs))
            total = time.perf_counter() - t0
        diff = tm.rel(got.detach(), want.detach())
        if train:
            want.square().mean().backward()
            got.square().mean().backward()
            # Each gradient relative to its own size, but at least 1e-3 of the model's largest
            # gradient: some (a bias feeding a normalisation) are zero up to rounding noise of
            # ~1e-12 on both sides, where a ratio would mean nothing.
            pairs = [(p.grad, q.grad) for p, q in zip(model.parameters(), reference.parameters()) if q.grad is not None]
            floor = 1e-3 * max(q.abs().max().item() for _, q in pairs)
            grads = [(p - q).abs().max().item() / max(q.abs().max().item(), floor) for p, q in pairs]
            diff = max(diff, max(grads))
    records = backend.compiled_graphs[first:]
    compiler = sum(r.compile_seconds for r in records)
    fallback = sum(s["fallback_nodes"] for s in backend.fallback_stats)
    nodes = sum(s["nodes"] for s in backend.fallback_stats)
    mode = "train" if train else "infer"
    return (
        f"{name:20s} {mode:5s} nodes {nodes:5d} fallback {fallback:3d}  compiler {compiler:6.2f} s  "
        f"forward call {total:7.2f} s (eager {eager:.3f} s)  max rel diff {diff:.1e}"
    )


def main() -> None:
    cache.configure(enabled=False)
    names = sys.argv[1:] or list(tm.MODELS)
    for name in names:
        for train in (False, True):
            try:
                print(measure(name, train), flush=True)
            except Exception as e:  # noqa: BLE001 - a table row says what failed
                print(f"{name:20s} {'train' if train else 'infer':5s} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}", flush=True)


if __name__ == "__main__":
    main()
