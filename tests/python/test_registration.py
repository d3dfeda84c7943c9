"""The backend is reachable as backend="dojo" with and without importing torch_dojo, and is
never registered twice (Dynamo raises on duplicate names)."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_entry_point_lists_dojo_without_importing_torch_dojo():
    out = run_python(
        """
        import sys, torch
        print("dojo" in torch._dynamo.list_backends(), "torch_dojo" in sys.modules)
        """
    )
    assert out.split() == ["True", "False"]


def test_lookup_through_entry_point_loads_the_backend_once():
    out = run_python(
        """
        import torch
        from torch._dynamo.backends.registry import lookup_backend
        fn = lookup_backend("dojo")
        import torch_dojo.backend
        print(fn is torch_dojo.backend.dojo, lookup_backend("dojo") is fn)
        """
    )
    assert out.split() == ["True", "True"]


def test_import_first_then_lookup():
    out = run_python(
        """
        import torch, torch_dojo
        from torch._dynamo.backends.registry import lookup_backend
        print("dojo" in torch._dynamo.list_backends(), lookup_backend("dojo") is torch_dojo.backend.dojo)
        """
    )
    assert out.split() == ["True", "True"]
