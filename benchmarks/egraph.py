"""The e-graph optimizer on TENSAT's benchmark models (issue 6, "Measured"): per model, the
graph, what ``egraph-optimize`` did to it (ops and modelled cost before/after, e-graph size,
iterations, stop reason, optimisation time, rules applied) and the simulated time on ``d1``
with the pass off and on, next to TENSAT's published speedup and the goal of at most 1 s of
optimisation per model.

    .venv/bin/python benchmarks/egraph.py [MODEL ...] [--timeout S] [--json FILE]   (make bench-egraph)

Models (PyTorch versions of TENSAT's; inference, eval mode, random weights, batch 1):

- ``bert``: one BERT-base encoder layer (transformers ``BertLayer``: hidden 768, 12 heads,
  intermediate 3072, eager attention), 128 tokens.
- ``resnext50``: torchvision ``resnext50_32x4d``.
- ``nasnet_a``: NasNet-A as in TASO's ``examples/nasnet_a.py`` (written here): per stage five
  normal cells (separable 3x3 convs, 3x3 average pools, identities, pairwise adds, a concat)
  and a reduction cell (separable 7x7/5x5/3x3 convs with stride 2, max and average pools);
  TASO's 3 stages from 128 channels on 1x128x56x56 if that fits, else smaller inputs, else
  one stage. Average pools are depthwise convolutions with constant weights (no
  ``avg_pool2d`` lowering yet).
- ``nasrnn``: the NasRNN cell of TASO's ``examples/nasrnn.py`` (written here), unrolled over 5
  steps, hidden 512: per step 8 ``x @ W + h @ U`` combinations sharing ``x`` and ``h``, then
  relu/sigmoid/tanh with adds and muls.
- ``inception_v3``, ``squeezenet`` (1.1), ``vgg19``: torchvision (Inception-v3's average pools
  run on the host: its graph is cut in parts). VGG-19's classifier streams its weights from
  the host (a 25088 x 4096 matmul: 411 MB, about all of d1's SRAM); if the whole model did not
  fit, its ``features`` would be tried.

Each model tries its inputs largest first (``SIZES``: 224 x 224, or 299 x 299 for
Inception-v3, then smaller) and uses the first that compiles and runs on ``d1`` with the pass
off and on; a model that fits at none prints "does not fit" with the compiler's reasons. Both settings compile and run the same input in a
fresh process (empty compile cache); outputs must equal eager within ``REL_TOL`` (largest
difference over the largest magnitude), otherwise the line says MISMATCH and the script exits
1. Speedup % = (simulated time off / on - 1) x 100, as TENSAT reports it. The cost is the
pass's own model of the mesh (seconds); "opt time" is the pass's wall time summed over the
model's graphs. Not a test: timings are printed against goals.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import child, emit  # noqa: E402

#: TENSAT (Yang et al., MLSys 2021): published speedup of the optimised graph, in percent (as
#: issue 6 quotes them).
TENSAT_SPEEDUP = {
    "bert": 9.2,
    "resnext50": 8.8,
    "nasnet_a": 7.3,
    "nasrnn": 68.9,
    "inception_v3": 10.0,
    "squeezenet": 24.5,
    "vgg19": 8.9,
}
LABELS = {
    "bert": "BERT (base layer)",
    "resnext50": "ResNeXt-50",
    "nasnet_a": "NasNet-A",
    "nasrnn": "NasRNN",
    "inception_v3": "Inception-v3",
    "squeezenet": "SqueezeNet 1.1",
    "vgg19": "VGG-19",
}
#: Inputs tried in order: spatial size for the vision models, tokens for BERT, hidden size for
#: NasRNN; ``S:N`` for NasNet-A: S stages; ``features:N``: VGG-19 without its classifier (its 25088 x 4096 matmul alone is
#: 411 MB of weights, about all of d1's SRAM, whatever the input size; streamed from the host).
SIZES = {
    "bert": ("128", "64"),
    "resnext50": ("224", "160", "112"),
    "nasnet_a": ("3:56", "3:28", "3:14", "1:28", "1:14"),
    "nasrnn": ("512",),
    "inception_v3": ("299", "224", "160", "112"),
    "squeezenet": ("224", "160", "112"),
    "vgg19": ("224", "160", "features:224", "features:160", "features:112"),
}
OPT_SECONDS_GOAL = 1.0
REL_TOL = 1e-3


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def _nasnet_modules():
    import torch
    from torch import nn

    class ReluConv(nn.Module):
        """TASO's ``squeeze``/``fit``: a convolution with a fused ReLU."""

        def __init__(self, cin: int, cout: int, k: int, stride: int):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)

        def forward(self, x):
            return torch.relu(self.conv(x))

    class SepConv(nn.Module):
        """TASO's ``seperable_conv``: a grouped k x k conv (groups = out channels, depthwise
        when in = out) then a 1 x 1 conv."""

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
            super().__init__()
            self.depthwise = nn.Conv2d(cin, cout, k, stride, k // 2, groups=cout, bias=False)
            self.pointwise = nn.Conv2d(cout, cout, 1, bias=False)

        def forward(self, x):
            return self.pointwise(self.depthwise(x))

    class Avg3x3(nn.Module):
        """3 x 3 average pool, padding 1 counted as zeros, written as a depthwise convolution
        with constant 1/9 weights: ``aten.avg_pool2d`` has no mesh lowering yet and would run
        on the host, cutting the graph into parts the e-graph optimises separately."""

        def __init__(self, stride: int):
            super().__init__()
            self.stride = stride

        def forward(self, x):
            c = x.shape[1]
            weight = torch.full((c, 1, 3, 3), 1.0 / 9.0, dtype=x.dtype)
            return nn.functional.conv2d(x, weight, stride=self.stride, padding=1, groups=c)

    def avg(stride: int = 1):
        return Avg3x3(stride)

    class Normal(nn.Module):
        """TASO's ``normal_cell``: five sums of two branches, concatenated."""

        def __init__(self, prev_c: int, cur_c: int, c: int):
            super().__init__()
            self.squeeze = ReluConv(cur_c, c, 1, 1)
            self.fit = ReluConv(prev_c, c, 1, 1)  # TASO's fit: prev has cur's spatial size here
            self.sep = nn.ModuleList(SepConv(c, c, 3) for _ in range(5))
            self.pool = avg()

        def forward(self, prev, cur):
            cur = self.squeeze(cur)
            prev = self.fit(prev)
            s = self.sep
            return torch.cat(
                [
                    s[0](cur) + cur,
                    s[1](prev) + s[2](cur),
                    self.pool(cur) + prev,
                    self.pool(prev) + self.pool(prev),
                    s[3](prev) + s[4](prev),
                ],
                1,
            )

    class Reduction(nn.Module):
        """TASO's ``reduction_cell``: stride-2 branches, five sums concatenated."""

        def __init__(self, prev_c: int, cur_c: int, c: int):
            super().__init__()
            self.squeeze = ReluConv(cur_c, c, 1, 1)
            self.fit = ReluConv(prev_c, c, 1, 1)
            self.s7a, self.s5, self.s7b, self.s5b = SepConv(c, c, 7, 2), SepConv(c, c, 5, 2), SepConv(c, c, 7, 2), SepConv(c, c, 5, 2)
            self.s3 = SepConv(c, c, 3)
            self.max = nn.MaxPool2d(3, 2, 1)
            self.avg2, self.avg1 = avg(2), avg(1)

        def forward(self, prev, cur):
            cur = self.squeeze(cur)
            prev = self.fit(prev)
            o0 = self.s7a(prev) + self.s5(cur)
            o1 = self.max(cur) + self.s7b(prev)
            o2 = self.avg2(cur) + self.s5b(prev)
            o3 = self.max(cur) + self.s3(o0)
            o4 = self.avg1(o0) + o1
            return torch.cat([o0, o1, o2, o3, o4], 1)

    class NasNetA(nn.Module):
        """TASO's network: a 1x1 max pool, then per stage five normal cells and a reduction
        cell, doubling the cell width per stage."""

        def __init__(self, channels: int = 128, stages: int = 3):
            super().__init__()
            self.cells = nn.ModuleList()
            c_in, c = channels, channels
            for _ in range(stages):
                prev_c, cur_c = c_in, c_in
                for _ in range(5):
                    self.cells.append(Normal(prev_c, cur_c, c))
                    prev_c, cur_c = cur_c, 5 * c
                c *= 2
                self.cells.append(Reduction(prev_c, cur_c, c))
                c_in = 5 * c

        def forward(self, x):
            x = nn.functional.max_pool2d(x, 1)
            prev = cur = x
            for cell in self.cells:
                prev, cur = cur, cell(prev, cur)
                if isinstance(cell, Reduction):
                    prev = cur
            return cur

    return NasNetA


def _nasrnn_module():
    import torch
    from torch import nn

    class NasRNN(nn.Module):
        """TASO's NasRNN: per step, 8 ``x @ W_i + h @ U_i`` (fresh weights per step and
        combination), combined as in TASO's ``nas_node``; the state starts as a weight."""

        def __init__(self, hidden: int = 512, length: int = 5):
            super().__init__()
            self.length = length
            weight = lambda: nn.Parameter(torch.randn(hidden, hidden) * hidden**-0.5)  # noqa: E731
            self.w = nn.ParameterList(weight() for _ in range(8 * length))
            self.u = nn.ParameterList(weight() for _ in range(8 * length))
            self.state = nn.Parameter(torch.randn(1, hidden))

        def forward(self, *xs):
            h = self.state
            for step, x in enumerate(xs):
                t = [x @ self.w[8 * step + i] + h @ self.u[8 * step + i] for i in range(8)]
                m0 = torch.relu(t[0]) + torch.sigmoid(t[3])
                m1 = torch.sigmoid(t[1]) + torch.tanh(t[2])
                m2 = torch.sigmoid(t[4]) * torch.tanh(t[5])
                m3 = torch.sigmoid(t[6]) * torch.relu(t[7])
                m4 = torch.sigmoid(m1) + torch.tanh(m2)
                m5 = torch.tanh(m0) * torch.tanh(m3)
                m6 = torch.tanh(m4) * torch.tanh(m5)
                h = torch.tanh(m6)
            return h

    return NasRNN


def build(name: str, spec: str):
    """(model in eval mode, inputs, input description) for a model at one entry of SIZES."""
    import torch

    variant, _, size_text = spec.rpartition(":")
    size = int(size_text)
    torch.manual_seed(0)
    if name == "bert":
        import transformers
        from transformers.models.bert.modeling_bert import BertLayer

        cfg = transformers.BertConfig(
            hidden_size=768, num_attention_heads=12, intermediate_size=3072, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
        )
        cfg._attn_implementation = "eager"

        class Layer(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = BertLayer(cfg)

            def forward(self, h):
                out = self.layer(h)
                return out[0] if isinstance(out, tuple) else out

        return Layer().eval(), (torch.randn(1, size, 768),), f"1x{size}x768"
    if name == "nasrnn":
        model = _nasrnn_module()(hidden=size).eval()
        return model, tuple(torch.randn(1, size) for _ in range(model.length)), f"5 steps x 1x{size}"
    if name == "nasnet_a":
        stages = int(variant)
        model = _nasnet_modules()(stages=stages).eval()
        return model, (torch.randn(1, 128, size, size),), f"1x128x{size}x{size}, {stages} stage{'s' * (stages > 1)}"
    import torchvision.models as tv

    if name == "resnext50":
        model = tv.resnext50_32x4d(weights=None)
    elif name == "inception_v3":
        model = tv.inception_v3(weights=None, aux_logits=False, init_weights=True)
    elif name == "squeezenet":
        model = tv.squeezenet1_1(weights=None)
    elif name == "vgg19":
        model = tv.vgg19(weights=None)
        if variant == "features":
            model = model.features
    else:
        raise ValueError(f"unknown model {name!r}; models: {', '.join(TENSAT_SPEEDUP)}")
    shape = f"1x3x{size}x{size}" + (f" ({variant})" if variant else "")
    return model.eval(), (torch.randn(1, 3, size, size),), shape


# ---------------------------------------------------------------------------------------
# Child: one model, both settings
# ---------------------------------------------------------------------------------------


def _reason(e: BaseException) -> tuple[str, str]:
    """("capacity" | "error", first line) of what went wrong, looking through wrappers."""
    from torch_dojo import CapacityError

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, CapacityError):
            return "capacity", str(seen).splitlines()[0][:200]
        seen = getattr(seen, "inner_exception", None) or seen.__cause__ or seen.__context__
    first = (str(e).splitlines() or [""])[0]
    return "error", f"{type(e).__name__}: {first[:200]}"


def _rel(got, want) -> float:
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def _one_setting(model, inputs, want, egraph: bool) -> dict[str, Any]:
    import torch
    import torch._dynamo

    from torch_dojo import backend

    torch._dynamo.reset()
    first = len(backend.compiled_graphs)
    fallback_first = len(backend.fallback_stats)
    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1", "egraph": egraph})
    started = time.perf_counter()
    with torch.no_grad():
        got = compiled(*inputs)
    seconds = time.perf_counter() - started
    records = backend.compiled_graphs[first:]
    stats = [s for r in records for s in r.egraph_stats]
    ops = 0
    for r in records:
        # dojo ops after legalize-aten + the first dce: the graph the e-graph pass sees.
        dce = next((text for stage, text in r.graph.stages() if stage == "dce"), "")
        ops += sum(1 for line in dce.splitlines() if '= "dojo.' in line)
    profiles = [r.last_profile or {} for r in records]
    slowest = max(profiles, key=lambda p: p.get("simulated_seconds") or 0.0, default={})
    return {
        "graphs": len(records),
        "ops": ops,
        # The binding roofline term of the slowest graph, and roofline / simulated over all.
        "bound": slowest.get("roofline_bound"),
        "roofline_seconds": sum(p.get("roofline_seconds") or 0.0 for p in profiles),
        "host_bytes": sum(p.get("host_bytes") or 0 for p in profiles),
        "fallback_nodes": sum(s["fallback_nodes"] for s in backend.fallback_stats[fallback_first:]),
        "simulated_seconds": sum((r.last_profile or {}).get("simulated_seconds") or 0.0 for r in records),
        "compile_seconds": sum(r.compile_seconds for r in records),
        "first_call_seconds": seconds,
        "rel_diff": _rel(got, want),
        "egraph": stats,
    }


def run_child(name: str, sizes: list[str]) -> None:
    import torch

    import torch_dojo  # noqa: F401

    torch.set_num_threads(1)  # the simulator has the cores; eager here is only a reference
    started = time.perf_counter()
    attempts = []
    for size in sizes:
        model, inputs, shape = build(name, size)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = model(*inputs)
            result: dict[str, Any] = {"model": name, "input": shape, "attempts": attempts}
            try:
                result["off"] = _one_setting(model, inputs, want, False)
            except Exception as e:  # noqa: BLE001 - the reason is the result
                kind, why = _reason(e)
                attempts.append({"input": shape, "kind": kind, "reason": why})
                if kind == "capacity":
                    continue
                result.update(error=why, wall_seconds=time.perf_counter() - started)
                emit(result)
                return
            try:
                result["on"] = _one_setting(model, inputs, want, True)
            except Exception as e:  # noqa: BLE001
                kind, why = _reason(e)
                if kind == "capacity":  # the optimised graph does not fit where the input does
                    attempts.append({"input": shape, "kind": kind, "reason": f"with egraph on (off fits, {_us(result['off']['simulated_seconds'])} us): {why}"})
                    continue
                result["on"] = {"error": why, "kind": kind}
        result["wall_seconds"] = time.perf_counter() - started
        emit(result)
        return
    emit({"model": name, "does_not_fit": True, "attempts": attempts, "wall_seconds": time.perf_counter() - started})


# ---------------------------------------------------------------------------------------
# Parent: the table
# ---------------------------------------------------------------------------------------


def _us(s: float | None) -> str:
    return "n/a" if s is None else f"{s * 1e6:.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def _summary(on: dict[str, Any]) -> dict[str, Any]:
    """The e-graph statistics of a model summed over its graphs (stop reasons joined)."""
    st = on.get("egraph") or []
    applied: dict[str, int] = {}
    for s in st:
        for rule, n in (s.get("applied") or {}).items():
            applied[rule] = applied.get(rule, 0) + n
    return {
        "ops_before": sum(s["ops_before"] for s in st),
        "ops_after": sum(s["ops_after"] for s in st),
        "cost_before": sum(s["cost_before"] for s in st),
        "cost_after": sum(s["cost_after"] for s in st),
        "enodes": sum(s["enodes"] for s in st),
        "eclasses": sum(s["eclasses"] for s in st),
        "iterations": max((s["iterations"] for s in st), default=0),
        "stop": ", ".join(sorted({s["stop_reason"] for s in st})) or "n/a",
        "extractor": ", ".join(sorted({s["extractor"] for s in st})) or "n/a",
        "seconds": sum(s["seconds"] for s in st),
        "applied": applied,
    }


def _bound(run: dict[str, Any]) -> str:
    """``host 98%``: the roofline term binding the slowest graph, and roofline / simulated."""
    if not run.get("bound") or not run.get("simulated_seconds"):
        return "n/a"
    return f"{run['bound']} {100 * run['roofline_seconds'] / run['simulated_seconds']:.0f}%"


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _stop(reason: str) -> str:
    """``time limit 1.295439616 s`` -> ``time limit 1.30 s``."""
    return re.sub(r"\d+\.\d{3,}", lambda m: f"{float(m.group()):.2f}", reason)


def report(results: list[dict[str, Any]]) -> int:
    """Prints the table and the notes per model; returns the number of failures (outputs that
    differ from eager, errors other than not fitting)."""
    failures = 0
    header = (
        f"{'model':17s} {'input':24s} {'ops':>12s} {'modelled cost (us)':>24s} {'simulated on d1 (us)':>25s} "
        f"{'TENSAT':>6s} {'bound off':>10s} {'e-nodes/classes':>15s} {'iter':>4s} {'opt s':>6s} {'rel diff off/on':>15s} {'wall s':>6s}  stop"
    )
    sub = (
        f"{'':17s} {'':24s} {'before->after':>12s} {'before->after    gain':>24s} {'off -> on      speedup':>25s}"
    )
    lines = [header, sub, "-" * len(header)]
    notes: list[str] = []
    for r in results:
        name = r["model"]
        label = LABELS.get(name, name)
        tried = [f"{a['input']}: {_short(a['reason'])}" for a in r.get("attempts", [])]
        wall = f"{r.get('wall_seconds', 0):6.0f}"
        if r.get("does_not_fit"):
            lines.append(f"{label:17s} does not fit d1 at any input tried (see notes), {r.get('wall_seconds', 0):.0f} s")
            notes.append(f"{label}: does not fit:\n    " + "\n    ".join(tried))
            continue
        if "error" in r and "off" not in r:
            failures += 1
            lines.append(f"{label:17s} {r.get('input', ''):24s} FAILED: {_short(r['error'], 120)}")
            continue
        off, on = r["off"], r.get("on", {})
        if "error" in on:
            failures += 1
            lines.append(f"{label:17s} {r['input']:24s} egraph off: {_us(off['simulated_seconds'])} us; egraph on FAILED: {_short(on['error'], 120)}")
            continue
        s = _summary(on)
        speedup = (off["simulated_seconds"] / on["simulated_seconds"] - 1) * 100 if on.get("simulated_seconds") else None
        gain = (s["cost_before"] / s["cost_after"] - 1) * 100 if s["cost_after"] else None
        ok = all(d <= REL_TOL for d in (off["rel_diff"], on["rel_diff"]))
        failures += not ok
        diffs = "/".join(f"{d:.0e}" for d in (off["rel_diff"], on["rel_diff"])) + ("" if ok else " MISMATCH")
        opt = f"{s['seconds']:.2f}" + ("" if s["seconds"] <= OPT_SECONDS_GOAL else "!")
        lines.append(
            f"{label:17s} {r['input']:24s} {s['ops_before']:>5d}->{s['ops_after']:<5d} "
            f"{_us(s['cost_before']):>7s}->{_us(s['cost_after']):<7s}{_pct(gain):>8s} "
            f"{_us(off['simulated_seconds']):>7s}->{_us(on['simulated_seconds']):<7s}{_pct(speedup):>9s} "
            f"{TENSAT_SPEEDUP[name]:>5.1f}% {_bound(off):>10s} {s['enodes']:>7d}/{s['eclasses']:<7d} {s['iterations']:>4d} {opt:>6s} {diffs:>15s} {wall}  {_stop(s['stop'])}"
        )
        rules = ", ".join(f"{k} x{v}" for k, v in sorted(s["applied"].items(), key=lambda kv: (-kv[1], kv[0]))) or "none"
        note = [
            f"{label}: rules applied: {rules}; extractor: {s['extractor']}; compile {off['compile_seconds']:.1f} s off, {on['compile_seconds']:.1f} s on"
        ]
        if off["graphs"] != 1 or on["graphs"] != 1:
            note.append(f"{off['graphs']} graph(s) ({off['fallback_nodes']} node(s) run eagerly on the host, split the graph; times are the mesh parts')")
        if tried:
            note.append("larger inputs tried first:\n    " + "\n    ".join(tried))
        notes.append("; ".join(note))
    print("\n".join(lines))
    print()
    print(
        f"speedup = simulated time off / on - 1 (as TENSAT's column); gain = modelled cost before / after - 1 (the pass's "
        f"cost model, summed over graphs); opt s = egraph-optimize wall time summed over graphs, goal <= {OPT_SECONDS_GOAL:g} s "
        f"('!' misses it); rel diff = max |compiled - eager| / max |eager| with the pass off / on, must be <= {REL_TOL:g}; "
        f"bound off = the roofline term binding the slowest graph with the pass off and roofline / simulated time (a run at "
        f"~100% of a host bound loads every weight from the host and no rewrite that keeps those bytes can be faster)."
    )
    print()
    print("\n".join(notes))
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(TENSAT_SPEEDUP), help=f"models (default all): {', '.join(TENSAT_SPEEDUP)}")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per model (default 900)")
    parser.add_argument("--json", help="also write every model's raw result to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.sizes.split(","))
        return 0
    unknown = [m for m in args.models if m not in TENSAT_SPEEDUP]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(TENSAT_SPEEDUP)}")
    results = []
    started = time.perf_counter()
    for name in args.models:
        t0 = time.perf_counter()
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        try:
            r = child(__file__, ["--child", name, "--sizes", ",".join(SIZES[name])], timeout=args.timeout)
        except Exception as e:  # noqa: BLE001 - a timeout is a line of the table
            r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        r.setdefault("model", name)
        r.setdefault("wall_seconds", time.perf_counter() - t0)
        print(f"[{name}] {r.get('input', '')} done in {r['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
        results.append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    failures = report(results)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
