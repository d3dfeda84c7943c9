"""torch_dojo.report(): the numbers per graph (checked against the simulator's profile and the
Program's target), the text table, the HTML with its pictures, and the Chrome trace."""

import base64
import json
import re

import pytest
import torch

import torch_dojo
from torch_dojo import backend


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def train_step(mesh: str = "d1") -> torch_dojo.Report:
    torch.compile(mlp(), backend="dojo", options={"mesh": mesh})(torch.randn(32, 64)).square().mean().backward()
    return torch_dojo.report(last=2)


def test_numbers_follow_from_the_profile_and_the_target():
    report = train_step()
    assert [g.name for g in report] == ["forward", "backward"]
    for g, record in zip(report, backend.compiled_graphs[-2:]):
        p = record.last_profile
        target = json.loads(record.graph.program_json())["target"]
        peak = target["clock_hz"] * target["fp32_flops_per_cycle"]  # FP32 FLOP/s per core
        assert g.simulated_seconds == p["simulated_seconds"] > 0
        assert g.tflops == pytest.approx(p["flops"] / p["simulated_seconds"] / 1e12)
        assert g.utilisation == pytest.approx(p["flops"] / (p["simulated_seconds"] * p["cores_used"] * peak))
        assert 0 < g.utilisation <= 1
        assert g.cores_used == p["cores_used"] <= g.cores_available == 354
        assert g.peak_sram_bytes == p["peak_sram_bytes"] <= g.sram_bytes_per_core
        assert g.mesh_bytes == p["mesh_bytes"] > 0 and g.host_bytes == p["host_bytes"] > 0
        assert g.chip_edge_bytes == 0  # one D1: no chip edge to cross
        assert 0 < g.roofline_efficiency <= 1  # simulated time never beats the roofline
        assert g.roofline_efficiency == pytest.approx(p["roofline_seconds"] / p["simulated_seconds"])
        assert g.mesh_shape == (18, 20) and len(g.disabled_cores) == 6
        assert g.compiled_by in ("compiler", "cache") and g.runs == 1

        # Top ops: ranked, and the same totals as the timeline.
        spans = [e for e in g.trace if e["ph"] == "X"]
        assert [op.busy_seconds for op in g.top_ops] == sorted((op.busy_seconds for op in g.top_ops), reverse=True)
        assert sum(op.share for op in g.top_ops) <= 1 + 1e-9
        top = g.top_ops[0]
        assert top.count == sum(1 for e in spans if e["name"] == top.name)
        assert "MatMul" in {op.name for op in g.top_ops}

        # Heatmap data: busy / simulated time of each core that worked, within the mesh.
        assert len(g.core_utilisation) == len(p["busy_seconds_per_core"])
        assert all(0 <= r < 18 and 0 <= c < 20 and 0 <= u <= 1 + 1e-9 for (r, c), u in g.core_utilisation.items())
    assert report.simulated_seconds == pytest.approx(sum(g.simulated_seconds for g in report))


def test_the_table_reads_as_a_report():
    text = str(train_step())
    assert text.startswith("torch-dojo report: most recent run of 2 graph(s) on the simulated mesh 'd1'")
    for label in (
        "simulated time",
        "achieved",
        "utilisation of FP32 peak",
        "roofline efficiency",
        "cores used",
        "peak SRAM per core",
        "bytes over mesh links",
        "bytes over chip edges",
        "bytes to/from host (HBM)",
        "compiled by",
    ):
        assert re.search(rf"^{re.escape(label)}\s{{2,}}\S", text, re.M), label
    assert re.search(r"^roofline efficiency\s+[\d.]+ %\s+[\d.]+ %$", text, re.M)
    assert re.search(r"forward #\d+\s+backward #\d+", text)
    assert re.search(r"^\s+MatMul\s+\d+\s+[\d.]+ [num]?s\s+[\d.]+ %$", text, re.M)
    assert repr(torch_dojo.report(last=2)) == text


def test_html_has_the_table_a_heatmap_and_a_timeline_per_graph():
    html = train_step()._repr_html_()
    assert "<table>" in html and "roofline efficiency" in html
    images = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,([^']+)'", html)
    assert [alt.split(": ")[1] for alt, _ in images] == ["per-core utilisation", "timeline"] * 2
    for _, data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")


def test_save_trace_writes_a_chrome_trace(tmp_path):
    report = train_step()
    path = report.save_trace(tmp_path / "step.json")
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert list(processes.values()) == [g.label for g in report]
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and all(e["dur"] >= 0 and e["ts"] >= 0 and e["pid"] in processes for e in spans)
    # Every span ends within its graph's simulated time (trace times are microseconds).
    for pid, g in enumerate(report):
        end = max(e["ts"] + e["dur"] for e in spans if e["pid"] == pid)
        assert end <= g.simulated_seconds * 1e6 * (1 + 1e-9)


def test_last_selects_the_most_recently_run_graphs():
    train_step()
    with torch.no_grad():
        torch.compile(mlp(), backend="dojo", dynamic=False)(torch.randn(4, 64))
    assert [g.name for g in torch_dojo.report(last=1)] == ["inference"]
    assert [g.name for g in torch_dojo.report(last=3)] == ["forward", "backward", "inference"]
    with pytest.raises(ValueError, match="positive"):
        torch_dojo.report(last=0)


def test_a_report_of_nothing_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(backend, "compiled_graphs", [])
    report = torch_dojo.report()
    assert len(report) == 0
    assert str(report) == "torch-dojo report: no dojo-compiled graph has run yet"
    assert "no dojo-compiled graph has run yet" in report._repr_html_()
    with pytest.raises(ValueError, match="run the compiled model first"):
        report.save_trace(tmp_path / "x.json")


def test_chip_edge_bytes_count_links_between_chips():
    from torch_dojo.report import _chip_edge_bytes

    core = lambda r, c: {"row": r, "col": c}  # noqa: E731
    profile = {
        "link_bytes": [
            [{"from": core(0, 19), "to": core(0, 20)}, 100],  # crosses the edge between chips
            [{"from": core(17, 0), "to": core(18, 0)}, 10],  # crosses
            [{"from": core(0, 0), "to": core(0, 1)}, 1000],  # stays on chip 0
        ]
    }
    assert _chip_edge_bytes(profile, {"core_grid": [18, 20]}) == 110


def test_graphs_without_trace_or_target_report_what_they_have(fake_driver):
    with torch.no_grad():
        torch.compile(mlp(), backend="dojo", dynamic=False)(torch.randn(2, 64))
    (g,) = torch_dojo.report(last=1)
    assert g.simulated_seconds == 2.5e-6 and g.utilisation is None and g.top_ops == []
    text = str(torch_dojo.report(last=1))
    assert "2.500 us" in text and "utilisation of FP32 peak   n/a" in text
    assert "No per-core profile or timeline" in torch_dojo.report(last=1)._repr_html_()


def test_to_dict_is_plain_data():
    data = train_step().to_dict()
    json.dumps(data)
    assert [d["name"] for d in data] == ["forward", "backward"]
    assert data[0]["top_ops"][0].keys() == {"name", "count", "busy_seconds", "share"}
