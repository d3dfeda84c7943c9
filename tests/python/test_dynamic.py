"""Shapes that change between calls: the mesh Program is static, so torch-dojo compiles once
per distinct shape (also under dynamic=True, and after Dynamo switches to symbolic sizes on
its own), keeps a bounded cache of these specialisations, and every result equals eager."""

import copy

import pytest
import torch

from torch_dojo import backend


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.mark.parametrize("dynamic", [None, True])
def test_one_compile_per_shape_and_results_equal_eager(dynamic):
    model = mlp()
    compiled = torch.compile(model, backend="dojo", dynamic=dynamic)
    start = backend.compile_count
    seen = []
    with torch.no_grad():
        for batch in (2, 3, 4, 3, 2, 4):
            x = torch.randn(batch, 8)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
            seen.append(backend.compile_count - start)
    # Each new shape compiles once; repeats are served from the cache. (Without dynamic=True
    # Dynamo first compiles batch 2 statically, then a symbolic graph that torch-dojo
    # specialises per shape, batch 2 again included: one more compile.)
    assert seen == ([1, 2, 3, 3, 3, 3] if dynamic else [1, 2, 3, 3, 4, 4])
    # Nothing ran eagerly: symbolic graphs are specialised, not left to the host.
    assert all(s["fallback_nodes"] == 0 for s in backend.fallback_stats)


def test_training_with_changing_batch_matches_eager():
    model = mlp()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, backend="dojo", dynamic=True)
    for batch in (2, 5, 2):
        x = torch.randn(batch, 8)
        for m in (model, reference):
            m.zero_grad()
        compiled(x).square().mean().backward()
        reference(x).square().mean().backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_the_shape_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(backend, "SHAPE_CACHE_SIZE", 2)
    model = mlp()
    compiled = torch.compile(model, backend="dojo", dynamic=True)
    start = backend.compile_count
    with torch.no_grad():
        for batch in (2, 3, 4, 2):  # 2 was dropped when 4 came in: compiled again
            compiled(torch.randn(batch, 8))
    assert backend.compile_count - start == 4
