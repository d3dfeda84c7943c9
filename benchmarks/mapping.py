"""The mapping benchmark (issue 5): how well ``lower-to-d1`` maps whole models onto ``tile``.

    .venv/bin/python benchmarks/mapping.py [--graphs DIR] [--mesh tile,d1] [--only NAME]   (make bench-mapping)

Workloads (random weights, all offline):

- ``resnet50``: torchvision ``resnet50(weights=None)``, batch 32, 3 x 224 x 224.
- ``gpt2``: transformers ``GPT2LMHeadModel(GPT2Config())`` (124M, 50257-word vocabulary),
  batch 8, sequence 512. When it does not fit (the embedding/LM head does not fit SRAM on
  ``tile``), ``gpt2-v1000``: the same model with a 1000-word vocabulary (as
  ``benchmarks/latency.py`` uses).

each as inference (``eval``, ``no_grad``: the ``inference`` graph) and as a training step
(``train``: the ``forward`` and ``backward`` graphs AOTAutograd captures for the model; the
loss, ``logits.square().mean()``, runs outside). Graphs are captured once, in a child process,
with the backend's own decompositions (``backend.decompositions()``) and ``capture_json``,
without calling the compiler, into ``--graphs`` (default ``/tmp/dojo-bench-mapping``; kept
between runs).

Each graph is then compiled and simulated by ``passes/examples/graph_bench`` (release build,
``--timing-only``: no values, they would take far too long at these sizes) per mesh and plan
(``default``: ours; ``naive``: ``lower-to-d1{plan=naive}``, every op's result row-split over all
cores of the block, no reshard optimisation; on the first mesh only: its Programs have ~10x
the instructions, slow to emit and simulate). Per workload it prints the simulated time of
the step (sum over its graphs), the roofline efficiency (roofline seconds / simulated
seconds, summed over graphs; goal >= 60%; the roofline of the cores the Program uses), on a
multi-chip first mesh the default plan's time without data parallelism over the chips
(``--parallel none``) and what data parallelism gains, the speedup of the default plan over the naive one
(goal >= 3x; when the naive plan does not fit the workload, measured on the next smaller
variant where it does) and the planning time (the compile's pass timings, ``lower-to-d1``
separately; goal <= 10 s for GPT-2 124M on ``tile``). A graph that does not compile prints
``does not fit: <the error>``. Not a test: numbers are printed against goals; exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRAPH_BENCH = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "examples" / "graph_bench"

#: (workload, mode, models): the first model is the workload as issue 5 states it, the others
#: variants tried in turn while the default plan does not fit ``tile``.
WORKLOADS = [
    ("resnet50 b32", "inference", ["resnet50", "resnet50-b8", "resnet50-b2"]),
    ("resnet50 b32", "train", ["resnet50", "resnet50-b8", "resnet50-b2"]),
    ("GPT-2 124M b8 s512", "inference", ["gpt2", "gpt2-v1000", "gpt2-v1000-s128"]),
    ("GPT-2 124M b8 s512", "train", ["gpt2", "gpt2-v1000", "gpt2-v1000-s128"]),
]
#: What each model name means, for the output.
MODEL_NOTES = {
    "resnet50": "batch 32",
    "resnet50-b8": "batch 8",
    "resnet50-b2": "batch 2",
    "gpt2": "50257 words, batch 8, sequence 512",
    "gpt2-v1000": "1000-word vocabulary, batch 8, sequence 512",
    "gpt2-v1000-s128": "1000-word vocabulary, batch 8, sequence 128",
}
GOAL_EFFICIENCY = 0.60
GOAL_SPEEDUP = 3.0
GOAL_PLANNING_S = 10.0


def build(model: str):
    """``(module, inputs)`` of a workload model, random weights: ``resnet50[-b<batch>]``
    (batch 32 by default), ``gpt2[-v<vocabulary>][-s<sequence>]`` (50257 words, sequence 512,
    batch 8)."""
    import torch

    torch.manual_seed(0)
    name, *opts = model.split("-")
    opt = {o[0]: int(o[1:]) for o in opts}
    if name == "resnet50":
        import torchvision

        return torchvision.models.resnet50(weights=None), (torch.randn(opt.get("b", 32), 3, 224, 224),)
    if name == "gpt2":
        import transformers

        vocab = opt.get("v", 50257)
        cfg = transformers.GPT2Config(vocab_size=vocab, use_cache=False)
        return transformers.GPT2LMHeadModel(cfg), (torch.randint(0, vocab, (8, opt.get("s", 512))),)
    raise ValueError(f"unknown model {model}")


def capture(model: str, mode: str, out: Path) -> None:
    """Child: capture the model's graphs for ``mode`` into ``out/<model>-<mode>-<i>-<name>.json``
    (the compiler is never called, and the graphs are not run: see ``compile_graph``;
    ``MAPPING_CAPTURE_EAGER=1`` runs them eagerly instead, the same graphs, minutes slower)."""
    import torch
    from torch._dynamo.backends.common import aot_autograd
    from functorch.compile import make_boxed_func

    from torch_dojo import backend
    from torch_dojo.capture import capture_json

    saved: list[tuple[str, str]] = []

    def compiler(name: str):
        def compile_graph(gm, _inputs):
            saved.append((name, capture_json(gm, name)))
            # The graph is not run: its outputs are empty tensors of the traced shapes and
            # strides (the forward's saved activations feed only the backward's capture).
            (outs,) = [n.args[0] for n in gm.graph.nodes if n.op == "output"]
            metas = [o.meta.get("val") if isinstance(o, torch.fx.Node) else o for o in outs]

            def run(args):
                args.clear()
                return [torch.empty_strided(v.shape, v.stride(), dtype=v.dtype) if isinstance(v, torch.Tensor) else v for v in metas]

            return make_boxed_func(gm.forward) if os.environ.get("MAPPING_CAPTURE_EAGER") else _boxed(run)

        return compile_graph

    capturing = aot_autograd(
        fw_compiler=compiler("forward"),
        bw_compiler=compiler("backward"),
        inference_compiler=compiler("inference"),
        decompositions=backend.decompositions(),
        partition_fn=backend.partition_fn,
    )
    m, inputs = build(model)
    warnings.simplefilter("ignore")
    c = torch.compile(m, backend=capturing, dynamic=False)
    if mode == "inference":
        m.eval()
        with torch.no_grad():
            c(*inputs)
    else:
        m.train()
        out_ = c(*inputs)
        logits = out_.logits if hasattr(out_, "logits") else out_
        logits.square().mean().backward()
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, text) in enumerate(saved):
        (out / f"{model}-{mode}-{i}-{name}.json").write_text(text)
    (out / f"{model}-{mode}.done").write_text(str(len(saved)))
    print(json.dumps({"graphs": len(saved)}))


def _boxed(fn):
    fn._boxed_call = True
    return fn


def graphs_of(model: str, mode: str, out: Path) -> list[Path] | str:
    """The captured graphs of a workload (capturing them first if needed), or an error."""
    if not (out / f"{model}-{mode}.done").exists():
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--capture", model, mode, "--graphs", str(out)],
            capture_output=True,
            text=True,
            env=dict(os.environ, TQDM_DISABLE="1", DOJO_CACHE="0"),
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return f"capture failed: {tail[:300]}"
        print(f"  (captured {model} {mode} in {time.perf_counter() - t0:.0f} s)", flush=True)
    return sorted(out.glob(f"{model}-{mode}-*.json"), key=lambda p: int(p.name.split("-")[-2]))


#: Address-space limit of one graph_bench run: the naive plan's Programs for resnet50 at batch
#: 32 would have ~10x the default's 18M instructions, more memory than this machine has (its
#: default-plan backward graph takes 13 GB).
MEMORY_LIMIT_BYTES = int(os.environ.get("DOJO_BENCH_MEMORY_GB", "20")) << 30


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def bench(graph: Path, mesh: str, plan: str, parallel: str = "auto") -> dict[str, Any]:
    """graph_bench's JSON for one graph (or ``{"error": ...}``), in at most
    ``MEMORY_LIMIT_BYTES`` (``DOJO_BENCH_MEMORY_GB``) and 900 s. ``parallel``: the compile
    option (``none``: no data parallelism over the chips)."""
    cmd = [str(GRAPH_BENCH), str(graph), "--mesh", mesh, "--plan", plan, "--parallel", parallel, "--timing-only", "--json"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    if proc.returncode < 0 or "memory allocation" in proc.stderr:
        return {"error": f"ran out of memory or was killed (limit {MEMORY_LIMIT_BYTES >> 30} GB, exit {proc.returncode})"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"graph_bench exit {proc.returncode}: {tail[:300]}"}


def step(graphs: list[Path], mesh: str, plan: str, parallel: str = "auto") -> dict[str, Any]:
    """One workload step (all its graphs) compiled with ``plan`` and timed on ``mesh``: sums
    over the graphs, or the first graph's error."""
    total: dict[str, Any] = {"simulated_s": 0.0, "roofline_s": 0.0, "compile_s": 0.0, "lower_s": 0.0, "passes_s": 0.0, "bounds": []}
    for g in graphs:
        r = bench(g, mesh, plan, parallel)
        if "error" in r:
            return {"error": f"{g.stem.split('-')[-1]}: {r['error']}"}
        total["simulated_s"] += r["simulated_s"]
        total["roofline_s"] += r["roofline_s"]
        total["compile_s"] += r["compile_s"]
        passes = {"split-batch", "legalize-aten", "dce", "egraph-optimize", "precision", "lower-to-d1"}
        total["passes_s"] += sum(s for name, s in r["timings"] if name in passes)
        total["lower_s"] += sum(s for name, s in r["timings"] if name == "lower-to-d1")
        total["bounds"].append(r["roofline_bound"])
    return total


def goal_line(name: str, value: float | None, goal: float, better: str, fmt: str, note: str = "") -> str:
    """``name  value (goal >= g)  meets goal | MISSES goal``; ``better`` is ``>=`` or ``<=``."""
    if value is None:
        return f"    {name:34s} n/a {note}".rstrip()
    ok = value >= goal if better == ">=" else value <= goal
    return f"    {name:34s} {fmt.format(value):>10s} (goal {better} {fmt.format(goal)})  {'meets goal' if ok else 'MISSES goal'}  {note}".rstrip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graphs", default="/tmp/dojo-bench-mapping", help="where captured graphs are kept")
    ap.add_argument("--mesh", default="tile,d1", help="meshes, the first is the goal's")
    ap.add_argument("--only", default="", help="only workloads whose name contains this (e.g. gpt2)")
    args = ap.parse_args()
    if not GRAPH_BENCH.exists():
        print(f"{GRAPH_BENCH} is missing: cargo build --release -p dojo-passes --example graph_bench")
        return
    out = Path(args.graphs)
    meshes = args.mesh.split(",")
    started = time.perf_counter()
    print(f"mapping benchmark (issue 5): default plan vs naive plan, timing-only simulation; graphs in {out}")
    for workload, mode, models in WORKLOADS:
        if args.only and args.only.lower() not in (workload + " " + " ".join(models)).lower():
            continue
        print(f"\n{workload} {mode}")
        naive_missing = False
        for i, model in enumerate(models):
            graphs = graphs_of(model, mode, out)
            if isinstance(graphs, str):
                print(f"  {model} ({MODEL_NOTES[model]}): {graphs}")
                continue
            ours = step(graphs, meshes[0], "default")
            if "error" in ours:
                print(f"  {model} ({MODEL_NOTES[model]}) does not fit: {ours['error']}")
                continue
            if naive_missing:
                # Only the speedup, on a smaller variant whose naive plan fits.
                n = step(graphs, meshes[0], "naive")
                if "error" in n:
                    print(f"  {model} ({MODEL_NOTES[model]}): naive plan does not fit either: {n['error']}")
                    continue
                print(f"  {model} ({MODEL_NOTES[model]}) on {meshes[0]}: default {ours['simulated_s'] * 1e3:.3f} ms, naive {n['simulated_s'] * 1e3:.3f} ms")
                print(goal_line("speedup over the naive plan", n["simulated_s"] / ours["simulated_s"], GOAL_SPEEDUP, ">=", "{:.2f}x", f"(at {MODEL_NOTES[model]})"))
                break
            print(f"  {model} ({MODEL_NOTES[model]}), {len(graphs)} graph(s): {', '.join(g.stem.split('-')[-1] for g in graphs)}")
            for mesh in meshes:
                d = ours if mesh == meshes[0] else step(graphs, mesh, "default")
                # The naive plan on the goal's mesh only (its Programs are ~10x larger: slow
                # to compile and simulate).
                n = step(graphs, mesh, "naive") if mesh == meshes[0] else {"error": "not run (naive plan on the first mesh only)"}
                print(f"   on {mesh}:")
                if "error" in d:
                    print(f"    default plan does not fit: {d['error']}")
                    continue
                eff = d["roofline_s"] / d["simulated_s"] if d["simulated_s"] > 0 else None
                print(f"    {'simulated time, default plan':34s} {d['simulated_s'] * 1e3:10.3f} ms  (roofline {d['roofline_s'] * 1e3:.3f} ms, bound {'/'.join(sorted(set(map(str, d['bounds']))))})")
                print(goal_line("roofline efficiency", eff, GOAL_EFFICIENCY, ">=", "{:.1%}"))
                if mesh == meshes[0] and mesh != "d1" and not mesh.startswith("d1:"):
                    # The default plan without data parallelism over the chips (split-batch).
                    w = step(graphs, mesh, "default", "none")
                    if "error" in w:
                        print(f"    default plan, parallel 'none': {w['error']}")
                    else:
                        print(f"    {'default plan, parallel none':34s} {w['simulated_s'] * 1e3:10.3f} ms  (data parallelism: {w['simulated_s'] / d['simulated_s']:.2f}x)")
                if "error" in n:
                    print(f"    naive plan{'' if n['error'].startswith('not run') else ' does not fit'}: {n['error']}")
                    speedup = None
                    naive_missing = naive_missing or (mesh == meshes[0] and i + 1 < len(models))
                else:
                    print(f"    {'simulated time, naive plan':34s} {n['simulated_s'] * 1e3:10.3f} ms  (roofline efficiency {n['roofline_s'] / n['simulated_s']:.1%})")
                    speedup = n["simulated_s"] / d["simulated_s"]
                print(goal_line("speedup over the naive plan", speedup, GOAL_SPEEDUP, ">=", "{:.2f}x"))
                gpt2 = model.startswith("gpt2") and mesh == "tile"
                note = f"(lower-to-d1 {d['lower_s']:.2f} s, compile {d['compile_s']:.2f} s; goal for GPT-2 124M on tile)"
                if gpt2:
                    print(goal_line("planning time (passes)", d["passes_s"], GOAL_PLANNING_S, "<=", "{:.2f} s", note))
                else:
                    print(f"    {'planning time (passes)':34s} {d['passes_s']:8.2f} s  (lower-to-d1 {d['lower_s']:.2f} s, compile {d['compile_s']:.2f} s)")
            if not naive_missing:
                break
            print("  (the naive plan does not fit; its speedup on the next variant that fits:)")
    print(f"\n(benchmark wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if "--capture" in sys.argv:
        i = sys.argv.index("--capture")
        capture(sys.argv[i + 1], sys.argv[i + 2], Path(sys.argv[sys.argv.index("--graphs") + 1]))
        sys.exit(0)
    main()
