"""Pictures of a run for the HTML report (matplotlib, rendered to PNG without pyplot, so no
global backend or figure state is touched).

* :func:`utilisation_heatmap`: per-core busy time / simulated time at each core's (row, col)
  of the mesh; harvested cores are hatched grey, idle cores 0.
* :func:`timeline`: the run's timeline, one row per unit (core pipelines, DMA injection ports,
  DIP channels), bars coloured by operation.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .report import GraphReport

__all__ = ["utilisation_heatmap", "timeline", "png_base64", "figures_html"]

#: Units of one kind named on the timeline's axis; more are only counted.
_MAX_UNIT_LABELS = 32


def figures_html(g: GraphReport) -> str:
    """``<img>`` tags (PNG, base64) of the heatmap and timeline of ``g``, or a note saying why
    there are none."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "<p><i>Install matplotlib to see the utilisation heatmap and the timeline.</i></p>"
    imgs = []
    for title, make in (("per-core utilisation", utilisation_heatmap), ("timeline", timeline)):
        fig = make(g)
        if fig is not None:
            alt = html.escape(f"{g.label}: {title}")
            imgs.append(f"<img alt='{alt}' src='data:image/png;base64,{png_base64(fig)}'/>")
    return "\n".join(imgs) if imgs else "<p><i>No per-core profile or timeline for this graph.</i></p>"


def png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def utilisation_heatmap(g: GraphReport) -> Figure | None:
    """The mesh as a grid of cores coloured by utilisation (None without a mesh shape)."""
    if g.mesh_shape is None or not g.core_utilisation:
        return None
    import numpy as np
    from matplotlib.figure import Figure

    rows, cols = g.mesh_shape
    grid = np.zeros((rows, cols))
    for (r, c), u in g.core_utilisation.items():
        if r < rows and c < cols:
            grid[r, c] = u
    masked = np.ma.masked_array(grid, mask=np.zeros_like(grid, dtype=bool))
    for r, c in g.disabled_cores:
        if r < rows and c < cols:
            masked.mask[r, c] = True
    scale = min(0.3, 8.0 / max(rows, cols))
    fig = Figure(figsize=(max(3.5, cols * scale + 1.5), max(2.5, rows * scale + 0.8)))
    ax = fig.add_subplot()
    ax.set_facecolor("0.8")  # harvested cores show the background
    image = ax.imshow(masked, cmap="viridis", vmin=0.0, vmax=max(1e-9, float(grid.max())), interpolation="nearest")
    fig.colorbar(image, ax=ax, label="busy / simulated time")
    ax.set_title(f"{g.label}: per-core utilisation ({len(g.core_utilisation)} cores busy, grey: harvested)", fontsize=9)
    ax.set_xlabel("mesh column")
    ax.set_ylabel("mesh row")
    return fig


def timeline(g: GraphReport) -> Figure | None:
    """A Gantt chart of the run's timeline, one panel per kind of unit (core pipelines, DMA
    injection ports, DIP channels) so that the few DIP rows stay visible beside hundreds of
    cores (None without a trace)."""
    spans = [e for e in g.trace if e.get("ph") == "X"]
    if not spans:
        return None
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = {e["tid"]: e["args"]["name"] for e in g.trace if e.get("ph") == "M" and e.get("name") == "thread_name"}
    groups: dict[str, list[int]] = {}  # "core" -> tids, in trace order
    for tid in sorted({e["tid"] for e in spans}):
        groups.setdefault(names.get(tid, "unit").split(" ")[0], []).append(tid)
    ops = sorted({e["name"] for e in spans})
    colour = dict(zip(ops, _palette(len(ops))))
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for e in spans:
        bars.setdefault((e["tid"], e["name"]), []).append((e["ts"], max(e.get("dur", 0.0), 1e-6)))

    ratios = [max(3.0, min(len(tids), 40) ** 0.75) for tids in groups.values()]
    fig = Figure(figsize=(9, min(7.0, 1.0 + 0.25 * sum(ratios))))
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, (group, tids) in zip(axes, groups.items()):
        row = {tid: i for i, tid in enumerate(tids)}
        for (tid, op), spans_of in bars.items():
            if tid in row:
                ax.broken_barh(spans_of, (row[tid] - 0.4, 0.8), facecolors=colour[op], linewidth=0)
        ax.set_ylim(len(tids) - 0.5, -0.5)
        if len(tids) <= _MAX_UNIT_LABELS:
            ax.set_yticks(range(len(tids)), [names.get(t, str(t)) for t in tids], fontsize=6)
        else:
            ax.set_yticks([])
        ax.set_ylabel(f"{group}\n({len(tids)})", rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("simulated time (us)")
    axes[0].legend(handles=[Patch(color=colour[o], label=o) for o in ops], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    axes[0].set_title(f"{g.label}: timeline ({len(spans)} operations on {sum(map(len, groups.values()))} units)", fontsize=9)
    return fig


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
