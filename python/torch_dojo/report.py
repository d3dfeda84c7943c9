"""What the simulated runs cost.

``report()`` returns a :class:`Report` of the most recent run of every dojo-compiled graph (or
of the ``last`` graphs that ran): per graph the simulated time, achieved TFLOPS, utilisation of
the FP32 peak, peak SRAM per core, bytes over mesh links, chip edges and the host (HBM), and
the top operations by busy time. ``print(report)`` gives a table; in Jupyter it renders as
HTML with a per-core utilisation heatmap and a timeline; ``report.save_trace("x.json")``
writes a Chrome trace that opens in Perfetto (ui.perfetto.dev) or ``chrome://tracing``.

Definitions (all from the simulator's profile and the Program's target, no constants here):

* utilisation = FLOPs / (simulated seconds x cores used x clock_hz x fp32_flops_per_cycle);
* busy time of an op kind = its durations summed over every unit of the timeline (core
  pipelines, DMA injection ports, DIP channels), so shares add up to 100 % per graph;
* per-core utilisation (heatmap) = the core's busy seconds / the graph's simulated seconds.

``last_report()`` (a dict) and ``format_report()`` (a few lines) describe the last run only.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import backend

__all__ = ["report", "Report", "GraphReport", "OpTime", "last_report", "format_report"]

#: Printed for the roofline while the profile has no roofline model.
ROOFLINE_NA = "n/a"
#: Op kinds listed per graph.
TOP_OPS = 5


@dataclass(frozen=True)
class OpTime:
    """One kind of timeline operation (``MatMul``, ``Copy``, ``Load``, ...) in one run."""

    name: str
    count: int
    busy_seconds: float
    #: Fraction of the run's busy time summed over all units.
    share: float


@dataclass
class GraphReport:
    """The most recent run of one compiled graph. Fields are None when the profile or the
    Program does not provide them."""

    name: str
    #: Position among the graphs compiled in this process (1-based), as in IR dump names.
    number: int
    runs: int
    #: "compiler" or "cache".
    compiled_by: str | None
    compile_seconds: float | None
    mesh: str | None
    simulated_seconds: float | None
    flops: int | None
    tflops: float | None
    utilisation: float | None
    roofline_efficiency: float | None
    cores_used: int | None
    cores_available: int | None
    peak_sram_bytes: int | None
    sram_bytes_per_core: int | None
    mesh_bytes: int | None
    chip_edge_bytes: int | None
    host_bytes: int | None
    top_ops: list[OpTime] = field(default_factory=list)
    #: The precision policy the graph was compiled with.
    precision: str = "fp32"
    #: Per tensor stored in a low-precision format (the profile's ``numerics``): name, dtype,
    #: the bias of the last run, the amax it converted and the status flags it raised.
    numerics: list[dict[str, Any]] = field(default_factory=list)
    #: What the e-graph optimizer did (option ``egraph``), one dict per function: ops and
    #: cost (the pass's model, seconds) before/after, e-graph size, iterations, stop reason,
    #: optimisation seconds, rules applied. Empty when it did not run (or the graph came from
    #: the compile cache).
    egraph: list[dict[str, Any]] = field(default_factory=list)
    #: (rows, cols) of core sites of the target.
    mesh_shape: tuple[int, int] | None = None
    #: (row, col) -> busy seconds / simulated seconds, for every core that did work.
    core_utilisation: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)
    disabled_cores: list[tuple[int, int]] = field(default_factory=list, repr=False)
    #: The Chrome trace events of the run (empty when the graph has no trace).
    trace: list[dict[str, Any]] = field(default_factory=list, repr=False)
    profile: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} #{self.number}"


class Report:
    """The most recent runs of dojo-compiled graphs; see the module doc."""

    def __init__(self, graphs: list[GraphReport]):
        self.graphs = graphs

    def __len__(self) -> int:
        return len(self.graphs)

    def __iter__(self) -> Iterator[GraphReport]:
        return iter(self.graphs)

    def __getitem__(self, i: int) -> GraphReport:
        return self.graphs[i]

    @property
    def simulated_seconds(self) -> float:
        """Simulated seconds summed over the graphs (e.g. forward + backward of a step)."""
        return sum(g.simulated_seconds or 0.0 for g in self.graphs)

    def to_dict(self) -> list[dict[str, Any]]:
        """The numbers per graph, as plain data (no trace or raw profile)."""
        out = []
        for g in self.graphs:
            d = {k: v for k, v in g.__dict__.items() if k not in ("trace", "profile", "core_utilisation", "disabled_cores")}
            d["top_ops"] = [op.__dict__ for op in g.top_ops]
            out.append(d)
        return out

    def save_trace(self, path: str | Path) -> Path:
        """Write the Chrome trace of every graph in the report (one process per graph) to
        ``path``; open it in Perfetto (ui.perfetto.dev) or ``chrome://tracing``."""
        events: list[dict[str, Any]] = []
        for pid, g in enumerate(self.graphs):
            events.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": g.label}})
            events.extend({**e, "pid": pid} for e in g.trace)
        if not any(g.trace for g in self.graphs):
            raise ValueError(
                "this report has no timeline to save: no dojo-compiled graph has run yet "
                "(run the compiled model first, then call torch_dojo.report())"
            )
        path = Path(path)
        path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}))
        return path

    def __str__(self) -> str:
        if not self.graphs:
            return "torch-dojo report: no dojo-compiled graph has run yet"
        mesh = ", ".join(sorted({g.mesh for g in self.graphs if g.mesh})) or "?"
        lines = [f"torch-dojo report: most recent run of {len(self.graphs)} graph(s) on the simulated mesh '{mesh}'"]
        lines += _table([""] + [g.label for g in self.graphs], [(label, [fmt(g) for g in self.graphs]) for label, fmt in _ROWS])
        for g in self.graphs:
            if g.top_ops:
                lines.append("")
                lines.append(f"top ops of {g.label} by time (summed over cores, DMA ports and DIP channels):")
                rows = [(op.name, [str(op.count), _seconds(op.busy_seconds), _percent(op.share)]) for op in g.top_ops]
                lines += ["  " + line for line in _table(["op", "count", "time", "share"], rows, numeric=True)]
            if g.numerics:
                lines.append("")
                lines.append(f"{g.precision} tensors of {g.label} (format, bias and flags of the last run):")
                lines += ["  " + line for line in _table(["tensor", "format", "bias", "amax", "flags"], _numerics_rows(g))]
            if g.egraph:
                lines.append("")
                lines.append(f"e-graph optimizer on {g.label}:")
                lines += ["  " + line for line in _egraph_lines(g)]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        if not self.graphs:
            return f"<p>{html.escape(str(self))}</p>"
        from . import viz

        parts = [
            "<div class='torch-dojo-report'>",
            f"<h3>torch-dojo report: most recent run of {len(self.graphs)} graph(s)</h3>",
            _html_table([""] + [g.label for g in self.graphs], [(label, [fmt(g) for g in self.graphs]) for label, fmt in _ROWS]),
        ]
        for g in self.graphs:
            parts.append(f"<h4>{html.escape(g.label)}</h4>")
            if g.top_ops:
                rows = [(op.name, [str(op.count), _seconds(op.busy_seconds), _percent(op.share)]) for op in g.top_ops]
                parts.append(_html_table(["top ops by time", "count", "time", "share"], rows))
            if g.numerics:
                parts.append(_html_table([f"{g.precision} tensor", "format", "bias", "amax", "flags"], _numerics_rows(g)))
            if g.egraph:
                parts.append("<p>e-graph optimizer:<br>" + "<br>".join(html.escape(line) for line in _egraph_lines(g)) + "</p>")
            parts.append(viz.figures_html(g))
        parts.append("</div>")
        return "\n".join(parts)


def report(last: int | None = None) -> Report:
    """The most recent run of every dojo-compiled graph that has run, in compile order; with
    ``last=n``, only the n graphs that ran most recently (``last=2`` after a training step:
    its forward and backward)."""
    ran = [(i, r) for i, r in enumerate(backend.compiled_graphs, 1) if r.last_profile is not None]
    if last is not None:
        if last < 1:
            raise ValueError(f"report(last={last}): last must be a positive number of graphs")
        ran = sorted(sorted(ran, key=lambda ir: getattr(ir[1], "run_order", 0))[-last:], key=lambda ir: ir[0])
    return Report([_graph_report(i, r) for i, r in ran])


def _graph_report(number: int, record) -> GraphReport:
    p: dict[str, Any] = record.last_profile or {}
    target = _target(record.graph)
    seconds = p.get("simulated_seconds")
    flops = p.get("flops")
    cores = p.get("cores_used")
    tflops = flops / seconds / 1e12 if flops is not None and seconds else None
    utilisation = None
    if flops is not None and seconds and cores and target.get("clock_hz") and target.get("fp32_flops_per_cycle"):
        utilisation = flops / (seconds * cores * target["clock_hz"] * target["fp32_flops_per_cycle"])
    mesh_shape = None
    if "chip_grid" in target and "core_grid" in target:
        (chip_r, chip_c), (core_r, core_c) = target["chip_grid"], target["core_grid"]
        mesh_shape = (chip_r * core_r, chip_c * core_c)
    disabled = [(c["row"], c["col"]) for c in target.get("disabled", [])]
    sram = target["sram_bytes"] - target.get("sram_reserve_bytes", 0) if "sram_bytes" in target else None
    trace = _trace(record.graph)
    return GraphReport(
        name=record.name,
        number=number,
        runs=record.runs,
        compiled_by=getattr(record, "compiled_by", None),
        compile_seconds=getattr(record, "compile_seconds", None),
        mesh=target.get("name") or record.options.get("mesh"),
        simulated_seconds=seconds,
        flops=flops,
        tflops=tflops,
        utilisation=utilisation,
        roofline_efficiency=p.get("roofline_efficiency"),
        cores_used=cores,
        cores_available=mesh_shape[0] * mesh_shape[1] - len(disabled) if mesh_shape else None,
        peak_sram_bytes=p.get("peak_sram_bytes"),
        sram_bytes_per_core=sram,
        mesh_bytes=p.get("mesh_bytes"),
        chip_edge_bytes=_chip_edge_bytes(p, target),
        host_bytes=p.get("host_bytes"),
        top_ops=_top_ops(trace),
        precision=record.options.get("precision", "fp32"),
        numerics=p.get("numerics", []),
        egraph=list(getattr(record, "egraph_stats", [])),
        mesh_shape=mesh_shape,
        core_utilisation={
            (c["row"], c["col"]): busy / seconds for c, busy in p.get("busy_seconds_per_core", []) if seconds
        },
        disabled_cores=disabled,
        trace=trace,
        profile=p,
    )


def _target(graph) -> dict[str, Any]:
    try:
        target = json.loads(graph.target_json())
    except (AttributeError, ValueError):
        return {}
    return target if isinstance(target, dict) else {}


def _trace(graph) -> list[dict[str, Any]]:
    last_trace = getattr(graph, "last_trace", None)
    if last_trace is None:
        return []
    events = json.loads(last_trace())
    return events if isinstance(events, list) else []


def _chip_edge_bytes(p: dict[str, Any], target: dict[str, Any]) -> int | None:
    """Bytes over links whose ends are on different chips."""
    if "link_bytes" not in p or "core_grid" not in target:
        return None
    rows, cols = target["core_grid"]
    chip = lambda c: (c["row"] // rows, c["col"] // cols)  # noqa: E731
    return sum(n for link, n in p["link_bytes"] if chip(link["from"]) != chip(link["to"]))


def _top_ops(trace: list[dict[str, Any]]) -> list[OpTime]:
    count: dict[str, int] = defaultdict(int)
    busy: dict[str, float] = defaultdict(float)
    for e in trace:
        if e.get("ph") == "X":
            count[e["name"]] += 1
            busy[e["name"]] += e.get("dur", 0.0) * 1e-6
    total = sum(busy.values())
    ranked = sorted(busy, key=lambda n: (-busy[n], n))[:TOP_OPS]
    return [OpTime(n, count[n], busy[n], busy[n] / total if total else 0.0) for n in ranked]


# The rows of the table: label, formatter of a GraphReport.
_ROWS = [
    ("simulated time", lambda g: _seconds(g.simulated_seconds)),
    ("achieved", lambda g: "n/a" if g.tflops is None else f"{g.tflops:.3g} TFLOPS"),
    ("utilisation of FP32 peak", lambda g: _percent(g.utilisation)),
    ("roofline efficiency", lambda g: ROOFLINE_NA if g.roofline_efficiency is None else _percent(g.roofline_efficiency)),
    ("cores used", lambda g: _plain(g.cores_used) + ("" if g.cores_available is None else f" of {g.cores_available}")),
    (
        "peak SRAM per core",
        lambda g: _bytes(g.peak_sram_bytes)
        + ("" if not g.sram_bytes_per_core or g.peak_sram_bytes is None else f" ({_percent(g.peak_sram_bytes / g.sram_bytes_per_core)} of {_bytes(g.sram_bytes_per_core)})"),
    ),
    ("bytes over mesh links", lambda g: _bytes(g.mesh_bytes)),
    ("bytes over chip edges", lambda g: _bytes(g.chip_edge_bytes)),
    ("bytes to/from host (HBM)", lambda g: _bytes(g.host_bytes)),
    ("runs", lambda g: str(g.runs)),
    (
        "compiled by",
        lambda g: "n/a" if g.compiled_by is None else f"{g.compiled_by}, {_seconds(g.compile_seconds, 2)}",
    ),
]


#: Low-precision tensors listed per graph (those with Overflow/Invalid first).
NUMERICS_ROWS = 12


def _numerics_rows(g: GraphReport) -> list[tuple[str, list[str]]]:
    ranked = sorted(g.numerics, key=lambda n: -(n["flags"]["overflow"] + n["flags"]["invalid"]))
    rows = []
    for n in ranked[:NUMERICS_ROWS]:
        raised = [f"{k} {v}" for k, v in sorted(n["flags"].items()) if v]
        rows.append((n["name"], [n["dtype"].lower(), str(n["bias"]), f"{n['amax']:.3g}", ", ".join(raised) or "-"]))
    if len(ranked) > NUMERICS_ROWS:
        rows.append((f"... {len(ranked) - NUMERICS_ROWS} more", ["", "", "", ""]))
    return rows


def _egraph_lines(g: GraphReport) -> list[str]:
    """Per function: ops and modelled cost before -> after, the e-graph, the time, the rules."""
    lines = []
    for s in g.egraph:
        before, after = s.get("cost_before") or 0.0, s.get("cost_after") or 0.0
        gain = f" ({_percent((before - after) / before)} cheaper)" if before > 0 else ""
        lines.append(
            f"@{s['func']}: ops {s['ops_before']} -> {s['ops_after']}, modelled cost {_seconds(before)} -> {_seconds(after)}{gain}; "
            f"e-graph {s['enodes']} nodes / {s['eclasses']} classes, {s['iterations']} iteration(s), stopped: {s['stop_reason']}, "
            f"{_seconds(s['seconds'])}"
        )
        applied = sorted((s.get("applied") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        if applied:
            lines.append("  rules applied: " + ", ".join(f"{name} x{n}" for name, n in applied))
    return lines


def _table(header: list[str], rows: list[tuple[str, list[str]]], numeric: bool = False) -> list[str]:
    """Aligned columns: labels left, values left (or right when ``numeric``)."""
    cells = [header] + [[label] + values for label, values in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for r in cells:
        values = [v.rjust(w) if numeric else v.ljust(w) for v, w in zip(r[1:], widths[1:])]
        out.append("   ".join([r[0].ljust(widths[0])] + values).rstrip())
    return out


def _html_table(header: list[str], rows: list[tuple[str, list[str]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr><th style='text-align:left'>" + html.escape(label) + "</th>"
        + "".join(f"<td style='text-align:right'>{html.escape(v)}</td>" for v in values) + "</tr>"
        for label, values in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def last_report() -> dict[str, Any] | None:
    """The profile of the most recent run of any dojo-compiled graph, or None before one.

    Keys: ``graph`` (forward/backward/inference), ``simulated_seconds``, ``cores_used``,
    ``peak_sram_bytes_per_core`` (the largest per-core peak), ``mesh_bytes`` (bytes moved over
    mesh links, payload x hops) and ``profile`` (the simulator's full profile).
    """
    record = backend.last_run
    if record is None or record.last_profile is None:
        return None
    p = record.last_profile
    return {
        "graph": record.name,
        "simulated_seconds": p.get("simulated_seconds"),
        "cores_used": p.get("cores_used"),
        "peak_sram_bytes_per_core": p.get("peak_sram_bytes"),
        "mesh_bytes": p.get("mesh_bytes"),
        "profile": p,
    }


def format_report(report: dict[str, Any] | None = None) -> str:
    """``last_report()`` (or the given report) as a few aligned lines."""
    r = last_report() if report is None else report
    if r is None:
        return "torch-dojo: no graph has run yet"
    rows = [
        ("graph", r["graph"]),
        ("simulated time", _seconds(r["simulated_seconds"])),
        ("cores used", _plain(r["cores_used"])),
        ("peak SRAM per core", _bytes(r["peak_sram_bytes_per_core"])),
        ("bytes over the mesh", _bytes(r["mesh_bytes"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _plain(v: Any) -> str:
    return "n/a" if v is None else str(v)


def _percent(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f} %" if 100 * x >= 0.1 or x == 0 else f"{100 * x:.2g} %"


def _seconds(s: float | None, digits: int = 3) -> str:
    if s is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.{digits}f} {unit}"
    return f"{s / 1e-9:.1f} ns"


def _bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
