"""The extension module's surface: exception classes, error mapping, panic safety."""

import pytest

import torch_dojo
from torch_dojo import _native


def test_exception_hierarchy_is_exported_from_both_modules():
    for name in ("UnsupportedOpError", "InvalidInputError", "CapacityError", "DeviceError"):
        cls = getattr(torch_dojo, name)
        assert cls is getattr(_native, name)
        assert issubclass(cls, torch_dojo.DojoError)
    assert issubclass(torch_dojo.DojoError, Exception)
    assert torch_dojo.DojoError.__module__ == "torch_dojo"


def test_malformed_graph_json_raises_invalid_input():
    with pytest.raises(torch_dojo.InvalidInputError):
        _native.compile_graph("{this is not json", "{}")


def test_panic_becomes_dojo_error_not_a_crash():
    with pytest.raises(torch_dojo.DojoError, match="internal error: kaboom.*please report") as info:
        _native._panic_for_tests("kaboom")
    # A plain DojoError, not pyo3's PanicException (which derives from BaseException).
    assert type(info.value) is torch_dojo.DojoError


def test_version():
    assert torch_dojo.__version__ == _native.__version__
    assert torch_dojo.__version__.count(".") == 2


def test_an_output_that_is_an_input_is_that_tensor():
    """A graph that returns one of its inputs (a training forward returns the weights its
    backward needs) gives back that very tensor, not a copy of its values."""
    import json

    import torch

    graph = {
        "name": "g",
        "inputs": [{"name": "x", "shape": [4, 8], "dtype": "f32"}],
        "nodes": [
            {"name": "r", "target": "aten.relu.default", "operands": ["x"], "outputs": [{"shape": [4, 8], "dtype": "f32"}]}
        ],
        "outputs": ["x", "r"],
    }
    compiled = _native.compile_graph(json.dumps(graph), json.dumps({"mesh": "d1"}))
    x = torch.randn(4, 8)
    same, relu = compiled.run([x])
    assert same is x
    assert torch.equal(relu, x.relu())


FORKED_RUN = """
import os, sys, torch, torch_dojo
f = torch.compile(lambda a, b: (a @ b).relu() + a, backend="dojo", options={"fallback": "error"})
a, b = torch.randn(96, 96), torch.randn(96, 96)
want = (a @ b).relu() + a
big = torch.randn(1024, 1024)
(big @ big).sum()  # torch's OpenMP threads start
assert torch.allclose(f(a, b), want, rtol=1e-5, atol=1e-5)  # runs on the OpenMP team
pid = os.fork()
if pid == 0:
    ok = torch.allclose(f(a, b), want, rtol=1e-5, atol=1e-5)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_runs_compiled_graphs_without_the_parents_openmp_threads():
    # libgomp's thread pool does not survive fork(): a child that ran the simulator on the
    # parent's OpenMP team would wait forever for threads that do not exist.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FORKED_RUN], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "child 0", out.stdout
