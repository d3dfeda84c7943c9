"""The foundation path end to end: an MLP compiled with backend="dojo" runs on the simulated
D1, forward and backward, and equals eager PyTorch."""

import json
import re

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import torch_dojo
from torch_dojo import backend


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def max_rel_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_forward_equals_eager():
    model = mlp()
    x = torch.randn(32, 64)
    compiled = torch.compile(model, backend="dojo")
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert max_rel_diff(got, want) <= 1e-5
    report = torch_dojo.last_report()
    assert report["cores_used"] > 16  # spread over a 2D block, not one core or one row
    assert report["simulated_seconds"] > 0


def test_training_gradients_equal_eager():
    eager, model = mlp(1), mlp(1)
    x = torch.randn(32, 64)
    target = torch.randn(32, 10)
    torch.nn.functional.mse_loss(eager(x), target).backward()

    compiled = torch.compile(model, backend="dojo")
    loss = torch.nn.functional.mse_loss(compiled(x), target)
    loss.backward()
    names = [n for n, _ in eager.named_parameters()]
    assert len(names) == 4
    for (name, pe), (_, pc) in zip(eager.named_parameters(), model.named_parameters()):
        assert pc.grad is not None, name
        assert max_rel_diff(pc.grad, pe.grad) <= 1e-4, name
    # Both graphs were compiled by torch-dojo and ran on the mesh.
    names = [r.name for r in backend.compiled_graphs[-2:]]
    assert names == ["forward", "backward"]
    assert all(r.runs == 1 for r in backend.compiled_graphs[-2:])


def test_sgd_steps_follow_eager():
    eager, model = mlp(2), mlp(2)
    compiled = torch.compile(model, backend="dojo")
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 64), torch.randn(32, 10)
    for _ in range(5):
        losses = []
        for opt, fn in ((opt_e, eager), (opt_c, compiled)):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(fn(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert abs(losses[1] - losses[0]) <= 1e-5 * abs(losses[0])
    for pe, pc in zip(eager.parameters(), model.parameters()):
        assert max_rel_diff(pc.detach(), pe.detach()) <= 1e-4


def test_one_compile_for_many_calls_with_the_same_shapes():
    model = mlp()
    counter = CompileCounterWithBackend("dojo")
    compiled = torch.compile(model, backend=counter)
    before = backend.compile_count
    with torch.no_grad():
        for _ in range(4):
            compiled(torch.randn(32, 64))
    assert counter.frame_count == 1
    assert backend.compile_count - before == 1  # one inference graph
    # Grad mode is part of Dynamo's guards: training compiles the frame once more (forward
    # and backward graphs), and then never again for the same shapes.
    for _ in range(3):
        compiled(torch.randn(32, 64)).sum().backward()
    assert counter.frame_count == 2
    assert backend.compile_count - before == 3


def test_same_graph_gives_identical_program_and_bits():
    model = mlp()
    x = torch.randn(32, 64)
    outs = []
    for _ in range(2):
        torch._dynamo.reset()
        with torch.no_grad():
            outs.append(torch.compile(model, backend="dojo")(x))
    programs = [r.graph.program_json() for r in backend.compiled_graphs[-2:]]
    assert programs[0] == programs[1]
    assert torch.equal(outs[0], outs[1])


def test_mesh_option_places_work_on_a_slice():
    model = mlp()
    x = torch.randn(32, 64)
    with torch.no_grad():
        got = torch.compile(model, backend="dojo", options={"mesh": "d1:4x4"})(x)
        assert max_rel_diff(got, model(x)) <= 1e-5
    program = json.loads(backend.compiled_graphs[-1].graph.program_json())
    cores = {(b["core"]["row"], b["core"]["col"]) for b in program["buffers"]}
    assert len(cores) > 1 and all(r < 4 and c < 4 for r, c in cores)


def test_nan_propagates_like_eager():
    model = mlp()
    x = torch.randn(32, 64)
    x[3, 5] = float("nan")
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend="dojo")(x)
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    finite = ~torch.isnan(want)
    assert max_rel_diff(got[finite], want[finite]) <= 1e-5


def inner(excinfo):
    """torch.compile wraps backend errors; the torch-dojo exception is inside."""
    e = excinfo.value
    return getattr(e, "inner_exception", e)


def test_unsupported_ops_are_one_clear_error_when_asked():
    def f(x):
        return torch.cumsum(x, 1).relu() + torch.special.erfcx(x)

    with pytest.raises(Exception) as excinfo:
        torch.compile(f, backend="dojo", options={"fallback": "error"})(torch.randn(4, 8))
    err = inner(excinfo)
    assert isinstance(err, torch_dojo.UnsupportedOpError), repr(err)
    msg = str(err)
    assert "aten.cumsum.default" in msg and "aten.special_erfcx.default" in msg
    assert "f32[4, 8]" in msg
    assert {op[0] for op in err.ops} == {"aten.cumsum.default", "aten.special_erfcx.default"}


def test_unsupported_ops_fall_back_to_eager_with_one_warning():
    def f(x, w):
        y = torch.cumsum(x @ w, 1)  # cumsum runs on the host, the rest on the mesh
        return torch.relu(y) * 2.0 + y.sum(0)

    x, w = torch.randn(16, 32), torch.randn(32, 24)
    compiled = torch.compile(f, backend="dojo")
    with pytest.warns(UserWarning, match=r"aten\.cumsum\.default.*f32\[16, 24\]") as record:
        got = compiled(x, w)
    warned = [str(r.message) for r in record if "torch-dojo runs" in str(r.message)]
    assert len(warned) == 1
    # The warning points at the model line that made the op.
    assert re.search(r"In the model:\n  `cumsum`: .*test_mlp\.py:\d+ in f: y = torch\.cumsum", warned[0]), warned[0]
    assert max_rel_diff(got, f(x, w)) <= 1e-5
    stats = backend.fallback_stats[-1]
    assert stats["fallback_nodes"] == 1 and stats["nodes"] > 4
    parts = [r for r in backend.compiled_graphs if r.name.startswith("inference.part") or r.name.startswith("forward.part")]
    assert len(parts) >= 2 and all(r.runs >= 1 for r in parts[-2:])


def test_mlp_needs_no_fallback():
    model = mlp()
    compiled = torch.compile(model, backend="dojo")
    compiled(torch.randn(32, 64)).sum().backward()
    assert [s["fallback_nodes"] for s in backend.fallback_stats[-2:]] == [0, 0]


def test_bad_mesh_is_a_clear_error():
    with pytest.raises(Exception) as excinfo:
        torch.compile(mlp(), backend="dojo", options={"mesh": "d2"})(torch.randn(32, 64))
    err = inner(excinfo)
    assert isinstance(err, torch_dojo.InvalidInputError)
    assert "d2" in str(err) and "d1" in str(err)


def test_shapes_that_do_not_fit_are_a_capacity_error():
    model = torch.nn.Linear(1024, 1024)
    with pytest.raises(Exception) as excinfo, torch.no_grad():
        torch.compile(model, backend="dojo", options={"mesh": "core"})(torch.randn(512, 1024))
    err = inner(excinfo)
    assert isinstance(err, torch_dojo.CapacityError), repr(err)
    assert "SRAM" in str(err) or "B per core" in str(err)



def test_a_linear_layer_larger_than_sram_streams_its_weight():
    """nn.Linear(4096, 512)'s 8 MiB weight does not fit four cores' SRAM (4.5 MiB usable): it
    streams from the host in panels, the result equals eager."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4096, 512)
    x = torch.randn(1, 4096)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend="dojo", options={"mesh": "d1:2x2"})(x)
    assert max_rel_diff(got, want) <= 1e-5
    profile = torch_dojo.last_report()["profile"]
    assert profile["host_bytes"] >= 4096 * 512 * 4, profile["host_bytes"]

def test_wrong_input_at_run_time_is_a_device_error_not_a_crash():
    model = mlp()
    with torch.no_grad():
        torch.compile(model, backend="dojo")(torch.randn(32, 64))
    graph = backend.compiled_graphs[-1].graph
    with pytest.raises(torch_dojo.DeviceError):
        graph.run([torch.randn(3, 3)])


def test_every_stage_has_its_time(caplog):
    import logging

    model = mlp()
    with torch.no_grad(), caplog.at_level(logging.DEBUG, logger="torch_dojo"):
        torch.compile(model, backend="dojo")(torch.randn(32, 64))
    graph = backend.compiled_graphs[-1].graph
    names = [name for name, _ in graph.stages()]
    seconds = graph.stage_seconds()
    if not seconds:  # loaded from the compile cache: no pass ran
        return
    assert names[:2] == ["import", "legalize-aten"] and "lower-to-d1" in names
    assert len(seconds) == len(names) and all(t >= 0 for t in seconds) and sum(seconds) > 0
    assert any("(lower-to-d1) in" in r.getMessage() for r in caplog.records)
