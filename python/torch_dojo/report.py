"""What the last simulated run cost: ``last_report()`` as a dict, ``format_report()`` as text."""

from __future__ import annotations

from typing import Any

from . import backend

__all__ = ["last_report", "format_report"]


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


def _seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3f} {unit}"
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
