"""The typing surface: `_native.pyi` declares everything the extension exports (and nothing
it does not), and the package ships `py.typed`."""

import ast
from pathlib import Path

import torch_dojo
from torch_dojo import _native

PACKAGE = Path(torch_dojo.__file__).parent


def stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse((PACKAGE / "_native.pyi").read_text())
    top: set[str] = set()
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top.add(node.name)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return top, members


def test_the_stub_matches_the_extension():
    top, members = stub_names()
    exported = {n for n in dir(_native) if not n.startswith("__") or n == "__version__"}
    assert top == exported, f"missing in the stub: {exported - top}; not in the extension: {top - exported}"
    graph_methods = {n for n in dir(_native.CompiledGraph) if not n.startswith("_")}
    assert members["CompiledGraph"] == graph_methods


def test_py_typed_is_shipped():
    assert (PACKAGE / "py.typed").exists()
