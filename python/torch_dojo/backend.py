"""The ``dojo`` torch.compile backend.

``dojo(gm, example_inputs, options=None, mode=None)`` is a plain function (an
``aot_autograd(...)`` object used as a backend drops ``options``): it validates the options,
then runs AOTAutograd with the core ATen decompositions, so every forward, backward and
inference graph reaches :func:`_compile` as aten OpOverloads. Each graph is captured to JSON
(:mod:`torch_dojo.capture`), compiled by the native driver and returned as a boxed callable
that runs on the simulated mesh.

The backend is registered under "dojo" when torch_dojo is imported, and through the
``torch_dynamo_backends`` entry point, so ``backend="dojo"`` works without the import.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch._dynamo
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._decomp import core_aten_decompositions, get_decompositions

from . import _native, attention, cache, logs
from .capture import capture_json
from .errors import model_source_on_error, with_model_source
from ._native import DeviceError, InvalidInputError, UnsupportedOpError
from .partition import find_unsupported, format_unsupported, split

__all__ = ["dojo", "compile_count", "compiled_graphs", "fallback_stats", "phase_seconds", "DEFAULT_OPTIONS", "PRECISIONS", "FALLBACKS"]

aten = torch.ops.aten

#: Options the backend understands, with their defaults.
DEFAULT_OPTIONS: dict[str, Any] = {
    "mesh": "d1",
    "precision": "fp32",
    "dump_ir": False,
    "fallback": "eager",
    "egraph": False,
    "strict_numerics": False,
    "plan": "default",
    "parallel": "auto",
}
#: Limits of the e-graph optimizer that ``options={"egraph": {...}}`` may set.
EGRAPH_LIMITS = ("iters", "nodes", "time_ms")
#: Rules of the e-graph optimizer that ``options={"egraph": {...: False}}`` turns off:
#: ``epilogues`` (elementwise chains into a matmul's kernel; on by default), ``winograd`` (3x3
#: convolutions as Winograd F(2x2, 3x3), equal within f32 tolerance, not bit for bit; on by
#: default with ``precision="fp32"``, off under a precision policy unless set to True).
EGRAPH_SWITCHES = ("epilogues", "winograd")
#: Precision policies: the storage format of matmul/conv operands (accumulation is f32).
#: ``bf16``: bf16; ``cfloat16``: cf16_shp; ``cfloat8``: cf8_143 forward, cf8_152 for
#: gradients. Biases follow the spec's rule D7 (weights from their values, activations and
#: gradients from an amax history of the last runs).
PRECISIONS = ("fp32", "bf16", "cfloat16", "cfloat8")
#: Placement plans of ``lower-to-d1``: ``default``, or ``naive``, the baseline it is measured
#: against (every op's result row-split over all cores, no reshard optimisation).
PLANS = ("default", "naive")
#: Parallelism over the chips of a multi-chip mesh: ``auto`` runs a graph whose batch can be
#: split (CNN inference and training, GPT-2-style inference) data-parallel, one slice of the
#: batch per chip, or per block of chips when chips are to spare (``split-batch``; default
#: plan only; unsplit when a part does not fit its chips); ``none`` spreads each op over the
#: chips instead.
PARALLEL = ("auto", "none")

#: Number of graphs (forward, backward, inference) compiled since import; tests assert it.
compile_count = 0


@dataclass
class CompiledRecord:
    """One compiled graph and the profile of its most recent run."""

    name: str
    graph: Any  # _native.CompiledGraph
    options: dict[str, Any]
    runs: int = 0
    #: The profile of the graph's runs without ``numerics`` (the same for every run: the
    #: timing never depends on the values; parsed at the first run) and the last run's numerics.
    _summary: dict[str, Any] | None = field(default=None, repr=False)
    _numerics: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: "compiler" or "cache", and the wall seconds it took.
    compiled_by: str = "compiler"
    compile_seconds: float = 0.0
    #: Increases with every run of any graph (orders reports by recency).
    run_order: int = 0
    #: Wall seconds of the most recent run (tensors in, simulation, tensors out).
    last_run_seconds: float = 0.0

    @property
    def last_profile(self) -> dict[str, Any] | None:
        """The simulator's profile of the most recent run (``_native.CompiledGraph.last_profile``):
        simulated time, cores, SRAM, traffic, roofline, per-op profiles, ``numerics``; None
        before the first run."""
        return None if self._summary is None else {**self._summary, "numerics": self._numerics}

    @property
    def egraph_stats(self) -> list[dict[str, Any]]:
        """What the e-graph optimizer did, one dict per function (see
        ``_native.CompiledGraph.egraph_stats``); empty when ``egraph`` is off or the graph came
        from the compile cache."""
        stats = getattr(self.graph, "egraph_stats", None)
        return json.loads(stats()) if stats is not None else []


#: Every graph compiled in this process, in compile order (for reports).
compiled_graphs: list[CompiledRecord] = []
#: Where compile time goes, in the order it was spent: ``(phase, graph name, wall seconds)``.
#: Phases: ``backend`` (one whole backend call: AOTAutograd with every phase below inside it;
#: the Dynamo graph's name), ``check`` (asking the compiler which nodes it cannot run),
#: ``capture`` (FX graph to JSON), ``compile`` (the native compiler or the compile cache,
#: including the cache write). The native compiler's own steps are in each record's
#: ``graph.timings()``. Benchmarks read slices of it; nothing is ever removed.
phase_seconds: list[tuple[str, str, float]] = []
_backend_calls = itertools.count(1)

#: The record whose run finished last.
last_run: CompiledRecord | None = None
_run_order = itertools.count(1)


def dojo(gm: torch.fx.GraphModule, example_inputs: list, options: dict | None = None, mode: str | None = None):
    """The torch.compile backend: ``torch.compile(model, backend="dojo", options={...})``."""
    opts = validate_options(options)
    if mode not in (None, "default"):
        warnings.warn(f"torch-dojo ignores torch.compile mode={mode!r}", stacklevel=2)

    started = time.perf_counter()

    def compiler(name: str) -> Callable:
        def compile_graph(graph: torch.fx.GraphModule, inputs: list) -> Callable:
            if _is_symbolic(graph):
                return _compile_per_shape(graph, name, opts)
            with model_source_on_error(graph):  # errors name the model's source line
                return _compile_with_fallback(graph, name, opts)

        return compile_graph

    compiled = aot_autograd(
        fw_compiler=compiler("forward"),
        bw_compiler=compiler("backward"),
        inference_compiler=compiler("inference"),
        decompositions=decompositions(),
        partition_fn=partition_fn,
    )(gm, example_inputs)
    phase_seconds.append(("backend", f"dynamo graph {next(_backend_calls)}", time.perf_counter() - started))
    return compiled


def validate_options(options: dict | None) -> dict[str, Any]:
    """Options with defaults filled in; raises InvalidInputError naming what is wrong."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidInputError(f"torch-dojo options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise InvalidInputError(
            f"unknown torch-dojo option(s) {', '.join(map(repr, unknown))}; "
            f"valid options are {', '.join(map(repr, DEFAULT_OPTIONS))}"
        )
    opts = {**DEFAULT_OPTIONS, **options}
    if not isinstance(opts["mesh"], str):
        raise InvalidInputError(f"option 'mesh' must be a string such as 'd1', got {opts['mesh']!r}")
    if opts["precision"] not in PRECISIONS:
        raise InvalidInputError(
            f"option 'precision'={opts['precision']!r} is not a precision policy; choose one of "
            f"{', '.join(map(repr, PRECISIONS))}"
        )
    if opts["plan"] not in PLANS:
        raise InvalidInputError(f"option 'plan' must be one of {', '.join(map(repr, PLANS))}, got {opts['plan']!r}")
    if opts["parallel"] not in PARALLEL:
        raise InvalidInputError(f"option 'parallel' must be one of {', '.join(map(repr, PARALLEL))}, got {opts['parallel']!r}")
    if opts["fallback"] not in FALLBACKS:
        raise InvalidInputError(
            f"option 'fallback' must be one of {', '.join(map(repr, FALLBACKS))}, got {opts['fallback']!r}"
        )
    eg = opts["egraph"]
    bad_limits = isinstance(eg, dict) and any(
        not isinstance(v, bool)
        if k in EGRAPH_SWITCHES
        else k not in EGRAPH_LIMITS or isinstance(v, bool) or not isinstance(v, int) or v < 0
        for k, v in eg.items()
    )
    if not isinstance(eg, (bool, dict)) or bad_limits:
        raise InvalidInputError(
            f"option 'egraph' must be True, False or a dict of limits {EGRAPH_LIMITS} with non-negative ints "
            f"and switches {EGRAPH_SWITCHES} (True/False), got {eg!r}"
        )
    for flag in ("dump_ir", "strict_numerics"):
        if not isinstance(opts[flag], bool):
            raise InvalidInputError(f"option {flag!r} must be True or False, got {opts[flag]!r}")
    return opts


_DECOMPOSITIONS: dict | None = None


def _core_aten_table() -> dict:
    """The core ATen decompositions without the ~500 entries that only restate
    CompositeImplicitAutograd ops' own kernels (AOTAutograd decomposes those while tracing
    anyway): building them took 75 ms of the first compile, the rest takes 1 ms."""
    try:
        from torch._decomp import _core_aten_decompositions_post_autograd
    except ImportError:  # a torch without it: the whole public table
        return dict(core_aten_decompositions())
    return _core_aten_decompositions_post_autograd()


def partition_fn(joint, joint_inputs, **kwargs):
    """How a training graph splits into forward and backward: AOTAutograd's min-cut
    partitioner (Inductor's choice), which saves fewer activations for the backward and
    recomputes cheap elementwise ops there instead (never random ones). On a mesh the forward
    stores the saved activations to DIP HBM and the backward loads them: GPT-2 124M at batch
    8, seq 512 saved 8.0 GB with the default partitioner."""
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    return min_cut_rematerialization_partition(joint, joint_inputs, **kwargs)


def decompositions() -> dict:
    """The core ATen decompositions, plus composite ops decomposed into mesh primitives."""
    global _DECOMPOSITIONS
    if _DECOMPOSITIONS is None:
        table = _core_aten_table()
        # Composite ops become the primitives the mesh runs (reductions, elementwise math).
        table.update(
            get_decompositions(
                [
                    aten._native_batch_norm_legit_functional,
                    aten.t,
                    aten._softmax,
                    aten._log_softmax,
                    aten._softmax_backward_data,
                    aten._log_softmax_backward_data,
                    aten.native_layer_norm,
                    aten.gelu,
                    aten.gelu_backward,
                    aten.silu,
                    aten.silu_backward,
                    aten.hardswish,
                    aten.hardswish_backward,
                    aten.hardsigmoid,
                    aten.hardsigmoid_backward,
                    aten.tanh_backward,
                    aten.sigmoid_backward,
                    # Training dropout: a mask from `rand_like`, which runs on the mesh.
                    aten.native_dropout,
                ]
            )
        )
        # PyTorch 2.13's own decomposition of the CPU flash-attention op gives wrong gradients
        # under AOTAutograd (off by ~100x against a hand-written attention); torch-dojo
        # decomposes the forward and backward ops itself (attention.py).
        table.update(attention.decompositions())
        # Embedding gradients have their own mesh kernel (the decomposition is an index_put).
        table.pop(aten.embedding_dense_backward.default, None)
        _DECOMPOSITIONS = table
    return _DECOMPOSITIONS


#: Static specialisations kept per graph with symbolic shapes; beyond this many distinct input
#: shapes the least recently used one is dropped (and compiled again if it comes back).
SHAPE_CACHE_SIZE = 8


def _is_symbolic(gm: torch.fx.GraphModule) -> bool:
    """Whether a graph has symbolic sizes (dynamic=True, or Dynamo's automatic dynamic shapes
    after a second distinct shape)."""
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        vals = val if isinstance(val, (tuple, list)) else [val]
        for v in vals:
            if isinstance(v, torch.SymInt) or (
                isinstance(v, torch.Tensor) and any(isinstance(d, torch.SymInt) for d in v.shape)
            ):
                return True
    return False


def _compile_per_shape(gm: torch.fx.GraphModule, name: str, opts: dict[str, Any]) -> Callable:
    """A graph with symbolic sizes, compiled once per distinct set of concrete input shapes:
    the mesh Program is static, so each shape gets its own (re-traced with the sizes baked in),
    kept in a least-recently-used cache of SHAPE_CACHE_SIZE entries."""
    from collections import OrderedDict

    from torch.fx.experimental.proxy_tensor import make_fx

    specialised: OrderedDict[tuple, Callable] = OrderedDict()

    def run(*args):
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else ("value", a) for a in args)
        fn = specialised.get(key)
        if fn is None:
            positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
            values = list(args)

            def static(*tensors):
                full = list(values)
                for i, t in zip(positions, tensors):
                    full[i] = t
                return gm(*full)

            with model_source_on_error(gm):
                static_gm = make_fx(static, tracing_mode="fake")(*[args[i] for i in positions])
                # Sizes the graph returns (a forward saves them for its backward) are now
                # constants: the mesh part returns only the tensors.
                out = next(n for n in static_gm.graph.nodes if n.op == "output")
                results = list(out.args[0]) if isinstance(out.args[0], (tuple, list)) else [out.args[0]]
                constants = {i: r for i, r in enumerate(results) if not isinstance(r, torch.fx.Node)}
                out.args = ([r for r in results if isinstance(r, torch.fx.Node)],)
                static_gm.recompile()
                compiled = _compile_with_fallback(static_gm, name, opts)
            fn = specialised[key] = (positions, compiled, constants, len(results))
            if len(specialised) > SHAPE_CACHE_SIZE:
                specialised.popitem(last=False)
        specialised.move_to_end(key)
        positions, compiled, constants, count = fn
        tensors = iter(compiled([args[i] for i in positions]))
        return [constants[i] if i in constants else next(tensors) for i in range(count)]

    return make_boxed_func(run)


#: What to do with ops the mesh cannot run: run them eagerly on the host, or raise.
FALLBACKS = ("eager", "error")

#: Per compiled graph: {"graph", "nodes", "fallback_nodes", "ops"} (tests assert on it).
fallback_stats: list[dict[str, Any]] = []


def _compile_with_fallback(gm: torch.fx.GraphModule, name: str, opts: dict[str, Any]) -> Callable:
    """Compile ``gm`` whole when the mesh can run every node; otherwise split off the nodes
    it cannot run (they run eagerly) or, with ``fallback="error"``, raise listing them all."""
    started = time.perf_counter()
    unsupported = find_unsupported(gm, name)
    phase_seconds.append(("check", name, time.perf_counter() - started))
    fallback_stats.append(
        {"graph": name, "nodes": unsupported.total, "fallback_nodes": len(unsupported.nodes), "ops": unsupported.ops}
    )
    if not unsupported.needs_split:
        return _compile(gm, name, opts)
    if not unsupported.nodes:  # only graph constants: every part runs on the mesh
        return make_boxed_func(split(gm, unsupported, lambda sub, i: _compile(sub, f"{name}.part{i}", opts)))
    message = format_unsupported(name, unsupported)
    if opts["fallback"] == "error":
        err = UnsupportedOpError(message + "\nWith options={'fallback': 'eager'} they run on the host instead.")
        err.ops = tuple(unsupported.ops)
        raise err
    warnings.warn(with_model_source(message, gm, unsupported.ops), stacklevel=2)
    parts = split(gm, unsupported, lambda sub, i: _compile(sub, f"{name}.part{i}", opts))
    return make_boxed_func(parts)


def _compile(gm: torch.fx.GraphModule, name: str, opts: dict[str, Any]) -> Callable:
    global compile_count
    with logs.compile_progress(name) as progress:
        started = time.perf_counter()
        graph_json = capture_json(gm, name)
        phase_seconds.append(("capture", name, time.perf_counter() - started))
        progress.step("compile")
        started = time.perf_counter()
        result = cache.compile_graph(graph_json, opts)  # the compiler, or the compile cache
        phase_seconds.append(("compile", name, time.perf_counter() - started))
    compiled = result.graph
    compile_count += 1
    record = CompiledRecord(
        name=name, graph=compiled, options=opts, compiled_by=result.source, compile_seconds=result.seconds
    )
    compiled_graphs.append(record)
    logs.log_compiled(len(compiled_graphs), record)
    logs.dump_stages(len(compiled_graphs), name, compiled.stages())
    if opts["dump_ir"]:
        for stage, text in compiled.stages():
            print(f"// ----- torch-dojo {name} graph #{len(compiled_graphs)}: {stage} -----", file=sys.stderr)
            print(text, file=sys.stderr)
    output_is_none = [o is None for o in json.loads(graph_json)["outputs"]]

    random = compiled.uses_random

    def run(*args):
        global last_run
        # Dropout masks: a fresh seed per call from torch's generator, so torch.manual_seed
        # makes a run reproducible (the values are the mesh's own, not eager's bits).
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item()) if random else 0
        started = time.perf_counter()
        outs = compiled.run(list(args), seed)
        record.last_run_seconds = time.perf_counter() - started
        record.runs += 1
        if record._summary is None:
            record._summary = json.loads(compiled.last_profile())
        record._numerics = json.loads(compiled.last_numerics())
        record.run_order = next(_run_order)
        _check_numerics(record, opts["strict_numerics"])
        last_run = record
        if len(outs) == len(output_is_none):  # the driver kept placeholders for null outputs
            result = [None if is_none else out for is_none, out in zip(output_is_none, outs)]
        else:
            it = iter(outs)
            result = [None if is_none else next(it) for is_none in output_is_none]
        if _VERIFY:
            _verify_against_eager(gm, name, args, result)
        return result

    return make_boxed_func(run)


class NumericsWarning(UserWarning):
    """A conversion to a storage format saturated (Overflow) or met a NaN (Invalid)."""


def _check_numerics(record: CompiledRecord, strict: bool) -> None:
    """Warn (or with ``strict_numerics`` raise DeviceError) when a run's conversions to the
    policy's formats raised Overflow or Invalid, naming each tensor."""
    bad = [
        n
        for n in (record.last_profile or {}).get("numerics", [])
        if n["flags"]["overflow"] or n["flags"]["invalid"]
    ]
    if not bad:
        return
    lines = [
        f"  {n['name']} ({n['dtype'].lower()}, bias {n['bias']}, amax {n['amax']}): "
        f"{n['flags']['overflow']} overflow (saturated), {n['flags']['invalid']} invalid (NaN became 0)"
        for n in bad
    ]
    message = (
        f"torch-dojo: precision {record.options['precision']!r}: conversions of the {record.name} graph "
        f"raised status flags:\n" + "\n".join(lines) + "\nThe values were clamped to the format's range; "
        "the bias follows the amax of earlier runs (a value that jumps saturates once)."
    )
    if strict:
        raise DeviceError(message + " (strict_numerics=True)")
    warnings.warn(message, NumericsWarning, stacklevel=3)


#: DOJO_VERIFY=1: run every compiled graph eagerly too and fail on the first differing output.
_VERIFY = os.environ.get("DOJO_VERIFY", "") not in ("", "0")


def _verify_against_eager(gm: torch.fx.GraphModule, name: str, args, result) -> None:
    """Compare a mesh result with eager execution of the same FX graph (a debugging aid)."""
    with torch.no_grad():
        want = gm(*args)
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    sources = out_node.args[0] if isinstance(out_node.args[0], (tuple, list)) else [out_node.args[0]]
    # Tolerances relative to the graph's largest output: a gradient that is zero up to
    # rounding (e.g. of a bias softmax ignores) is noise on both sides.
    floats = [w for w in want if isinstance(w, torch.Tensor) and w.is_floating_point() and w.numel()]
    scale = max((w.abs().max().item() for w in floats), default=1.0)
    for i, (got, exp) in enumerate(zip(result, want)):
        if not isinstance(exp, torch.Tensor) or got is None:
            continue
        ok = torch.allclose(got.to(exp.dtype), exp, rtol=1e-4, atol=1e-4 * max(scale, 1e-30), equal_nan=True)
        if not ok:
            diff = (got.to(exp.dtype).float() - exp.float()).abs().max().item()
            raise DeviceError(
                f"DOJO_VERIFY: output {i} (node `{sources[i]}`) of the {name} graph differs from eager "
                f"by {diff:.3e} (largest magnitude {scale:.3e})"
            )


def register() -> None:
    """Register "dojo" with Dynamo, once.

    Dynamo raises on a duplicate name, and when it resolves ``backend="dojo"`` through the
    entry point it imports this package and *then* registers what the entry point names. So
    registering here is skipped when the entry point is already discovered (Dynamo registers
    it itself right after this import) or "dojo" is registered; otherwise (import before any
    lookup, or a source tree without the entry point) it registers directly, and a later
    lookup finds it registered and never loads the entry point.
    """
    from importlib.metadata import EntryPoint

    from torch._dynamo.backends import registry

    if "dojo" in registry._COMPILER_FNS or isinstance(registry._BACKENDS.get("dojo"), EntryPoint):
        return
    torch._dynamo.register_backend(dojo, name="dojo")
