"""Shared fixtures for the torch_dojo Python tests."""

import json
import shutil

import pytest
import torch
import torch._dynamo

import torch_dojo  # noqa: F401  (registers the backend; imports torch first)
from torch_dojo import backend

from graph_interpreter import interpret


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test has its own compile cache and no IR dumps: tests never read or write the
    user's cache directory. The cache is deleted after the test (once its background writes
    are done): the suite's Programs add up to about 1 GB, which pytest would otherwise keep
    for its last three runs and which once filled a CI machine's disk."""
    directory = tmp_path_factory.mktemp("dojo-cache")
    monkeypatch.setenv("DOJO_CACHE_DIR", str(directory))
    monkeypatch.delenv("DOJO_CACHE", raising=False)
    monkeypatch.delenv("DOJO_DUMP_DIR", raising=False)
    yield directory
    torch_dojo.cache.flush()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Every test compiles from scratch, with no fallback statistics of earlier tests."""
    torch._dynamo.reset()
    backend.fallback_stats.clear()
    yield
    torch._dynamo.reset()


class FakeCompiledGraph:
    """Stands in for `_native.CompiledGraph`: runs the captured JSON with aten ops on the host,
    so the Python side (capture, boxed calls, None outputs, reports) is tested without the
    Rust driver."""

    PROFILE = {"simulated_seconds": 2.5e-6, "cores_used": 4, "peak_sram_bytes": 3 << 20, "mesh_bytes": 4096}

    def __init__(self, graph_json: str, options_json: str):
        self.graph = json.loads(graph_json)
        self.options = json.loads(options_json)
        self.output_dtypes = [None if o is None else "f32" for o in self.graph["outputs"]]
        self._profile = "null"

    uses_random = False

    def run(self, inputs, seed=0):
        outs = interpret(self.graph, inputs)
        self._profile = json.dumps(self.PROFILE)
        return [o for o in outs if o is not None]

    def last_profile(self):
        return self._profile

    def last_numerics(self):
        return "[]"

    def stages(self):
        return [("import", f"// {self.graph['name']}: {len(self.graph['nodes'])} nodes")]

    def stage_seconds(self):
        return [0.0]

    def program_json(self):
        return "{}"


@pytest.fixture
def fake_driver(monkeypatch):
    """Replace the native driver with FakeCompiledGraph; yields the list of compiled graphs."""
    compiled = []

    def compile_graph(graph_json, options_json):
        g = FakeCompiledGraph(graph_json, options_json)
        compiled.append(g)
        return g

    monkeypatch.setattr(backend._native, "compile_graph", compile_graph)
    monkeypatch.setenv("DOJO_CACHE", "0")  # fake graphs have no Program to cache
    return compiled
