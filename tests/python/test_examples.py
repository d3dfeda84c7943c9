"""The examples run as a user runs them: scripts in a fresh process, the notebook headless
through nbclient on an ipykernel kernel of this interpreter."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),  # with the test's own DOJO_CACHE_DIR
        timeout=600,
    )
    assert out.returncode == 0, f"{name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    diff = float(re.search(r"largest difference from eager PyTorch: (\S+)", out)[1])
    assert diff < 1e-4
    assert "torch-dojo report: most recent run of 1 graph(s)" in out and "inference #" in out


def test_train_writes_a_report_and_a_trace(tmp_path):
    out = run_example("train.py", "--steps", "3", "--trace", "step.json", cwd=tmp_path)
    losses = [float(x) for x in re.findall(r"loss (\S+)", out)]
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # steps 1 and 3, not NaN
    assert re.search(r"forward #\d+\s+backward #\d+", out)
    assert "simulated time of one training step" in out
    assert json.loads((tmp_path / "step.json").read_text())["traceEvents"]


def test_demo(tmp_path):
    out = run_example("demo.py", cwd=tmp_path)
    assert "training step: largest relative gradient difference from eager" in out


def test_tour_notebook_runs_headless_and_renders_the_report(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(EXAMPLES / "tour.ipynb", as_version=4)
    # kernel_name python3 is ipykernel's native kernel: this interpreter, this venv.
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    html = [
        out["data"]["text/html"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "text/html" in out.get("data", {})
    ]
    reports = [h for h in html if "torch-dojo report" in h]
    assert len(reports) == 1, html
    assert reports[0].count("<img") == 4  # heatmap and timeline of the forward and backward graphs
    assert "roofline efficiency" in reports[0]
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
