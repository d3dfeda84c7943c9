"""What torch-dojo tells people: the `torch_dojo` logger, IR dumps that dojo-opt reads back,
the progress bar, and errors that point at the model's source line."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_dojo
from torch_dojo import backend, logs

ROOT = Path(__file__).resolve().parents[2]
DOJO_OPT = ROOT / "target" / "debug" / "dojo-opt"


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def train_step(mesh: str = "d1") -> None:
    torch.compile(mlp(), backend="dojo", options={"mesh": mesh})(torch.randn(8, 16)).sum().backward()


def dojo_opt(*args: str) -> subprocess.CompletedProcess:
    if not DOJO_OPT.exists():
        pytest.skip(f"{DOJO_OPT} is not built: run `make test` (or `cargo build -p dojo-passes --bin dojo-opt`)")
    return subprocess.run([str(DOJO_OPT), *args], capture_output=True, text=True, timeout=120)


def test_dump_dir_writes_every_stage_and_dojo_opt_reads_it_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DOJO_DUMP_DIR", str(tmp_path / "ir"))
    first = len(backend.compiled_graphs) + 1
    train_step()
    files = sorted(p.name for p in (tmp_path / "ir").iterdir())
    stages = ["import", "legalize-aten", "dce", "lower-to-d1", "dce"]
    assert files == [f"{g:03d}-{i:02d}-{s}.mlir" for g in (first, first + 1) for i, s in enumerate(stages)]

    for name in files:
        out = dojo_opt(str(tmp_path / "ir" / name))  # parse, verify, reprint
        assert out.returncode == 0, f"{name}: {out.stderr}"

    # The import dump through the default pipeline gives the final stage, byte for byte.
    out = dojo_opt(str(tmp_path / "ir" / f"{first:03d}-00-import.mlir"), "--pass-pipeline=legalize-aten,dce,lower-to-d1{mesh=d1},dce")
    assert out.returncode == 0, out.stderr
    final = (tmp_path / "ir" / f"{first:03d}-04-dce.mlir").read_text()
    assert final.splitlines()[0].startswith("// torch-dojo forward graph")
    assert out.stdout.strip() == "\n".join(final.splitlines()[1:]).strip()


def test_an_unwritable_dump_dir_warns_and_the_model_still_runs(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DOJO_DUMP_DIR", str(blocker / "ir"))
    train_step()
    assert "cannot write IR dumps to DOJO_DUMP_DIR" in caplog.text


def test_compiles_are_logged_at_info_and_stages_at_debug(caplog):
    with caplog.at_level(logging.DEBUG, logger="torch_dojo"):
        train_step()
        torch._dynamo.reset()
        train_step()  # the same graphs again: from the compile cache
    messages = [r.getMessage() for r in caplog.records if r.name == "torch_dojo"]
    assert any(m.startswith("forward graph #") and " compiled in " in m for m in messages), messages
    assert any(m.startswith("backward graph #") and "loaded from the compile cache in" in m for m in messages)
    assert any("after stage 3 (lower-to-d1):" in m for m in messages)


def test_dojo_log_env_var_turns_on_a_stderr_handler():
    env = {**os.environ, "DOJO_LOG": "info", "DOJO_CACHE": "0"}
    code = "import torch, torch_dojo; torch.compile(lambda x: x.relu(), backend='dojo')(torch.randn(4, 4))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "torch_dojo INFO: inference graph #1 compiled in" in out.stderr


def test_compiling_outside_a_notebook_imports_nothing_of_jupyter():
    # ipywidgets and IPython take ~0.3 s to import: the progress bar must not pay that in a
    # terminal or a script, where it cannot use them.
    code = (
        "import sys, torch, torch_dojo; torch.compile(lambda x: x.relu(), backend='dojo')(torch.randn(4, 4)); "
        "print(sorted(m for m in ('ipywidgets', 'IPython', 'ipykernel') if m in sys.modules))"
    )
    env = {**os.environ, "DOJO_CACHE": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_the_notebook_bar_is_used_inside_a_jupyter_kernel_only(monkeypatch):
    import types

    from tqdm.notebook import tqdm as notebook_tqdm
    from tqdm.std import tqdm as terminal_tqdm

    class Shell:
        config: dict = {}

    fake = types.ModuleType("IPython")
    fake.get_ipython = Shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert logs._tqdm() is terminal_tqdm  # an IPython shell, not a kernel
    monkeypatch.setattr(Shell, "config", {"IPKernelApp": {}})
    assert logs._tqdm() is notebook_tqdm


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys):
    train_step()
    assert "torch-dojo forward" not in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_in_a_terminal(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with logs.compile_progress("forward") as progress:
        progress.step("compile")
    text = terminal.getvalue()
    assert "torch-dojo forward" in text and "compile" in text


def test_unsupported_op_error_names_the_model_source_line():
    def model(x):
        y = x.relu()
        return torch.cumsum(y, 1)  # the line the error must point at

    with pytest.raises(Exception) as excinfo:
        torch.compile(model, backend="dojo", options={"fallback": "error"})(torch.randn(4, 8))
    err = getattr(excinfo.value, "inner_exception", excinfo.value)
    assert isinstance(err, torch_dojo.UnsupportedOpError), repr(err)
    msg = str(err)
    assert "aten.cumsum.default" in msg and "f32[4, 8]" in msg  # what, with shapes
    assert f"{__file__}:" in msg and "return torch.cumsum(y, 1)" in msg, msg  # where in the model
    assert "fallback" in msg  # what to do
