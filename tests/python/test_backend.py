"""The "dojo" backend: options, the path from torch.compile to the driver, boxed runners,
compile counts and reports (the driver is faked where the test is about the Python side)."""

import json

import pytest
import torch
import torch._dynamo
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import torch_dojo
from torch_dojo import backend


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def compile_error(excinfo):
    """The exception the backend raised (Dynamo wraps it in BackendCompilerFailed)."""
    e = excinfo.value
    return getattr(e, "inner_exception", e)


def test_defaults_fill_in():
    assert backend.validate_options(None) == {"mesh": "d1", "precision": "fp32", "dump_ir": False, "fallback": "eager", "egraph": False, "strict_numerics": False, "plan": "default", "parallel": "auto"}


def test_unknown_option_lists_valid_keys():
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'meshh'.*valid options are 'mesh', 'precision', 'dump_ir'"):
        backend.validate_options({"meshh": "d1"})


def test_unsupported_precision_says_what_is_supported():
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'fp8' is not a precision policy; choose one of 'fp32', 'bf16'"):
        backend.validate_options({"precision": "fp8"})


@pytest.mark.parametrize("bad", ["yes", {"iters": -1}, {"itres": 3}, {"nodes": 1.5}, {"epilogues": 1}, {"winograd": "no"}])
def test_bad_egraph_option_says_what_is_valid(bad):
    with pytest.raises(torch_dojo.InvalidInputError, match=r"option 'egraph' must be True, False or a dict of limits"):
        backend.validate_options({"egraph": bad})


def test_egraph_option_reaches_the_compiler_and_keeps_results():
    """With the e-graph optimizer on, its stage runs (visible in the IR stages) and the model
    gives the same outputs as without it."""
    torch.manual_seed(0)
    model, x = mlp(), torch.randn(2, 8)
    outs = []
    for eg in (False, {"iters": 8, "nodes": 5000}):
        torch._dynamo.reset()
        with torch.no_grad():
            outs.append(torch.compile(model, backend="dojo", options={"egraph": eg})(x))
        stages = [name for name, _ in backend.compiled_graphs[-1].graph.stages()]
        assert ("egraph-optimize" in stages) == bool(eg)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


class SwishBlock(torch.nn.Module):
    """A linear layer and an elementwise tail the e-graph fuses: x*sigmoid(x) scaled, plus a
    residual, then a tanh."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 64)

    def forward(self, x):
        h = self.fc(x)
        return torch.tanh(h * torch.sigmoid(h) * 0.5 + x)


def test_egraph_fuses_elementwise_chains_into_one_kernel_with_the_same_bits():
    """`fuse-elementwise`: the chain after the linear layer runs as `Fused` kernels (fewer
    instructions, one kernel per shard instead of one per op), and the outputs equal the
    unfused ones bit for bit (each step computes what the op's own kernel computes)."""
    torch.manual_seed(0)
    model, x = SwishBlock(), torch.randn(32, 64)
    outs, programs = [], []
    for eg in (False, True):
        torch._dynamo.reset()
        with torch.no_grad():
            outs.append(torch.compile(model, backend="dojo", options={"egraph": eg})(x))
        programs.append(json.loads(backend.compiled_graphs[-1].graph.program_json()))
    kernels = [[i["Kernel"]["op"] for i in p["instrs"] if isinstance(i, dict) and "Kernel" in i] for p in programs]
    fused = [k for k in kernels[1] if isinstance(k, dict) and "Fused" in k]
    assert not any(isinstance(k, dict) and "Fused" in k for k in kernels[0])
    assert fused, "the e-graph made no fused kernel"
    assert max(len(k["Fused"]["steps"]) for k in fused) >= 4
    assert len(programs[1]["instrs"]) < len(programs[0]["instrs"])
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs[1], model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [28, 27])
def test_egraph_runs_3x3_convolutions_as_winograd(size):
    """`winograd`: two 3x3 convolutions (64 channels; an even and an odd input size) run as
    Winograd F(2x2, 3x3), with at least 1.5x fewer FLOPs on the mesh, and equal eager within
    f32 tolerance; `{"winograd": False}` keeps the 9-tap matmuls."""
    torch.manual_seed(0)
    conv = lambda: torch.nn.Conv2d(64, 64, 3, padding=1)  # noqa: E731
    model = torch.nn.Sequential(conv(), torch.nn.ReLU(), conv()).eval()
    x = torch.randn(1, 64, size, size)
    flops = {}
    for wino in (False, True):
        torch._dynamo.reset()
        with torch.no_grad():
            out = torch.compile(model, backend="dojo", options={"egraph": {"winograd": wino}})(x)
            torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-4)
        record = backend.compiled_graphs[-1]
        applied = {rule for s in record.egraph_stats for rule in s["applied"]}
        assert ("winograd" in applied) == wino, applied
        flops[wino] = record.last_profile["flops"]
    assert flops[False] > 1.5 * flops[True], flops


@pytest.mark.parametrize("size,gathered", [(28, True), (14, False)])
def test_egraph_runs_input_gradients_of_3x3_convolutions_as_winograd(size, gathered):
    """Training two 64-channel 3x3 convolutions with the e-graph on: at 28 x 28 the backward
    graph gathers each input gradient as a convolution (`legalize-aten{input-grads=gather}`)
    and the e-graph runs it as Winograd, with fewer FLOPs than with `{"winograd": False}`
    (which keeps the scattered form); below 28 x 28 the gradient stays scattered. Gradients
    equal eager within f32 tolerance either way."""
    torch.manual_seed(0)
    conv = lambda: torch.nn.Conv2d(64, 64, 3, padding=1)  # noqa: E731
    model = torch.nn.Sequential(conv(), torch.nn.ReLU(), conv())
    x = torch.randn(1, 64, size, size, requires_grad=True)
    model(x).square().mean().backward()
    want = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]
    flops = {}
    for wino in (False, True):
        torch._dynamo.reset()
        x.grad = None
        model.zero_grad()
        first = len(backend.compiled_graphs)
        torch.compile(model, backend="dojo", options={"egraph": {"winograd": wino}})(x).square().mean().backward()
        for got, exp in zip([x.grad] + [p.grad for p in model.parameters()], want):
            torch.testing.assert_close(got, exp, rtol=1e-4, atol=1e-5)
        records = backend.compiled_graphs[first:]
        assert len(records) == 2, records
        bwd = records[-1]
        applied = {rule for s in bwd.egraph_stats for rule in s["applied"]}
        assert ("winograd" in applied) == (wino and gathered), applied
        flops[wino] = bwd.last_profile["flops"]
    if gathered:
        assert flops[False] > 1.15 * flops[True], flops


def test_winograd_is_off_under_a_precision_policy_unless_asked():
    """Under `precision="bf16"` the e-graph leaves 3x3 convolutions as nine-tap matmuls (the
    transformed tiles would be rounded to bf16 too), unless `{"winograd": True}` asks."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(1, 64, 28, 28)
    for eg, wino in ((True, False), ({"winograd": True}, True)):
        torch._dynamo.reset()
        with torch.no_grad():
            out = torch.compile(model, backend="dojo", options={"egraph": eg, "precision": "bf16"})(x)
            want = model(x)
        assert ((out - want).abs().max() / want.abs().max()).item() < 2e-2
        applied = {rule for s in backend.compiled_graphs[-1].egraph_stats for rule in s["applied"]}
        assert ("winograd" in applied) == wino, applied


def test_egraph_stats_are_exposed():
    """The optimizer's statistics reach Python (the compiled graph, its record and the report):
    a transpose pair around an elementwise op goes away, so ops and modelled cost drop."""

    def f(x):
        return torch.tanh(torch.relu(x.t())).t()

    x = torch.randn(16, 32)
    for eg in (False, True):
        torch._dynamo.reset()
        with torch.no_grad():
            out = torch.compile(f, backend="dojo", options={"egraph": eg})(x)
        torch.testing.assert_close(out, f(x))
        record = backend.compiled_graphs[-1]
        assert json.loads(record.graph.egraph_stats()) == record.egraph_stats
        if not eg:
            assert record.egraph_stats == []
    (s,) = record.egraph_stats
    assert s["ops_after"] < s["ops_before"], s
    assert 0 < s["cost_after"] < s["cost_before"], s
    assert s["enodes"] >= s["eclasses"] > 0 and s["iterations"] >= 1, s
    assert s["stop_reason"] and s["extractor"] != "input", s
    assert 0 <= s["seconds"] < 1.0 and s["applied"] and all(n > 0 for n in s["applied"].values()), s
    (graph,) = torch_dojo.report(last=1)
    assert graph.egraph == record.egraph_stats
    assert "e-graph optimizer on inference #" in str(torch_dojo.report(last=1))


def test_options_must_be_a_dict():
    with pytest.raises(torch_dojo.InvalidInputError, match="must be a dict"):
        backend.validate_options(["mesh"])


def test_bad_option_through_torch_compile_raises_typed_error():
    compiled = torch.compile(mlp(), backend="dojo", options={"precision": "fp8"})
    with pytest.raises(Exception) as excinfo:
        compiled(torch.randn(2, 8))
    assert isinstance(compile_error(excinfo), torch_dojo.InvalidInputError)


def test_torch_compile_reaches_the_native_compiler(monkeypatch):
    """With the real driver: the captured graph arrives at `_native.compile_graph`, and
    whatever the driver says comes back as a DojoError subclass or a result (never a crash)."""
    seen = []
    real = backend._native.compile_graph

    def spy(graph_json, options_json):
        seen.append((json.loads(graph_json), json.loads(options_json)))
        return real(graph_json, options_json)

    monkeypatch.setattr(backend._native, "compile_graph", spy)
    model = mlp()
    x = torch.randn(2, 8)
    try:
        with torch.no_grad():
            out = torch.compile(model, backend="dojo", dynamic=False)(x)
    except Exception as e:  # noqa: BLE001 - checked below
        assert isinstance(getattr(e, "inner_exception", e), torch_dojo.DojoError), repr(e)
    else:
        assert out.shape == (2, 4)
    graph, options = seen[0]
    assert graph["name"] == "inference"
    assert options == {"mesh": "d1", "precision": "fp32", "dump_ir": False, "fallback": "eager", "egraph": False, "strict_numerics": False, "plan": "default", "parallel": "auto"}
    assert [i["shape"] for i in graph["inputs"]] == [[16, 8], [16], [2, 8], [4, 16], [4]]
    assert [n["target"] for n in graph["nodes"]].count("aten.addmm.default") == 2


def test_inference_runs_through_the_boxed_runner(fake_driver):
    model = mlp()
    x = torch.randn(2, 8)
    compiled = torch.compile(model, backend="dojo", dynamic=False)
    before = backend.compile_count
    with torch.no_grad():
        for _ in range(3):
            got = compiled(x)
    assert backend.compile_count - before == 1, "1 compile, 3 executions"
    assert len(fake_driver) == 1
    torch.testing.assert_close(got, model(x).detach())


def test_training_forward_and_backward(fake_driver):
    model = mlp()
    reference = mlp()
    x = torch.randn(2, 8)
    compiled = torch.compile(model, backend="dojo", dynamic=False)
    before = backend.compile_count
    compiled(x).square().sum().backward()
    reference(x).square().sum().backward()
    assert backend.compile_count - before == 2
    assert [g.graph["name"] for g in fake_driver] == ["forward", "backward"]
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_null_outputs_come_back_as_none(fake_driver):
    """The gradient of an input that needs no grad is a null output of the backward graph."""
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(3, 3)

    def f(w, x):
        return (w @ x).sum()

    torch.compile(f, backend="dojo", dynamic=False)(w, x).backward()
    bw = fake_driver[-1].graph
    assert bw["name"] == "backward" and None in bw["outputs"]
    torch.testing.assert_close(w.grad, torch.ones(3, 3) @ x.T)


def test_report_after_a_run(fake_driver):
    with torch.no_grad():
        torch.compile(mlp(), backend="dojo", dynamic=False)(torch.randn(2, 8))
    report = torch_dojo.last_report()
    assert report["graph"] == "inference"
    assert report["simulated_seconds"] == 2.5e-6
    assert report["cores_used"] == 4
    assert report["peak_sram_bytes_per_core"] == 3 << 20
    assert report["mesh_bytes"] == 4096
    text = torch_dojo.format_report()
    assert "2.500 us" in text and "3.0 MiB" in text and "4.0 KiB" in text


def test_dump_ir_prints_every_stage(fake_driver, capsys):
    with torch.no_grad():
        torch.compile(mlp(), backend="dojo", options={"dump_ir": True}, dynamic=False)(torch.randn(2, 8))
    assert "torch-dojo inference graph" in capsys.readouterr().err


def _small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
    )


def _split_note(record) -> str:
    """The `dojo.split` note split-batch left on the compiled function ("" if it did not run)."""
    text = dict(record.graph.stages()).get("split-batch", "")
    return text.split('dojo.split = "')[1].split('"')[0] if 'dojo.split = "' in text else ""


def test_a_cnn_on_a_tile_runs_data_parallel_over_its_chips_with_eager_results():
    """On a multi-chip mesh an inference CNN is copied once per part, each copy on a slice of
    the batch on its own chips (`split-batch`): same results as eager, faster than spreading
    every op over the chips (`parallel: none`)."""
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'parallel'.*'auto', 'none'.*'model'"):
        backend.validate_options({"parallel": "model"})
    model, x = _small_cnn().eval(), torch.randn(6, 3, 16, 16)
    times = {}
    for parallel in ("auto", "none"):
        torch._dynamo.reset()
        with torch.no_grad():
            got = torch.compile(model, backend="dojo", options={"mesh": "tile", "parallel": parallel}, dynamic=False)(x)
            torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)
        record = backend.compiled_graphs[-1]
        # A block of 1 x 2 chips each (6 such blocks fit 5 x 5).
        assert _split_note(record) == ("6 part(s) of a batch of 6, 1 x 2 chips each" if parallel == "auto" else "")
        times[parallel] = record.last_profile["simulated_seconds"]
    assert times["auto"] < times["none"]


def test_training_a_cnn_data_parallel_on_a_tile_matches_eager():
    """A training step split over the chips: the batch norms' statistics and the weights'
    gradients are sums over the whole batch (all-reduced over the parts); outputs, gradients
    and running statistics match eager."""
    import copy

    model, x = _small_cnn().train(), torch.randn(6, 3, 16, 16)
    want, got = copy.deepcopy(model), copy.deepcopy(model)
    want(x).square().mean().backward()
    torch._dynamo.reset()
    torch.compile(got, backend="dojo", options={"mesh": "tile"}, dynamic=False)(x).square().mean().backward()
    assert [_split_note(r) for r in backend.compiled_graphs[-2:]] == ["6 part(s) of a batch of 6, 1 x 2 chips each"] * 2
    for (name, p), q in zip(want.named_parameters(), got.parameters()):
        scale = p.grad.abs().max().item() + 1e-3
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"{name}: {m}")
    for (name, a), b in zip(want.named_buffers(), got.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def test_a_table_larger_than_a_chip_is_used_once_over_the_whole_tile():
    """A language model's two ends share an embedding table larger than one chip holds
    (20000 x 1024 f32, 82 MB). The batch still splits over the chips, but the lookup, the
    logits' matmul and the table's gradients run once over the whole tile. The logits are
    returned through a view, stored as the matmul computed them. The training step's logits
    and gradients equal eager's."""
    import copy

    class Ends(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(20000, 1024)
            self.norm = torch.nn.LayerNorm(1024)

        def forward(self, ids):
            return self.norm(self.emb(ids)) @ self.emb.weight.t()

    torch.manual_seed(0)
    model, ids, targets = Ends(), torch.randint(0, 20000, (4, 3)), torch.randint(0, 20000, (12,))
    want, got = copy.deepcopy(model), copy.deepcopy(model)
    want_logits = want(ids)
    torch.nn.functional.cross_entropy(want_logits.flatten(0, 1), targets).backward()
    torch._dynamo.reset()
    got_logits = torch.compile(got, backend="dojo", options={"mesh": "tile"}, dynamic=False)(ids)
    torch.nn.functional.cross_entropy(got_logits.flatten(0, 1), targets).backward()
    records = backend.compiled_graphs[-2:]
    # Each part on a block of 1 x 5 chips.
    assert [_split_note(r) for r in records] == ["4 part(s) of a batch of 4, 1 x 5 chips each"] * 2
    forward = dict(records[0].graph.stages())["split-batch"]
    assert any("aten.embedding.default" in line and "-> tensor<4x3x1024xf32>" in line for line in forward.splitlines())
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-4, atol=1e-4)
    for (name, p), q in zip(want.named_parameters(), got.parameters()):
        scale = p.grad.abs().max().item() + 1e-6
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"{name}: {m}")


def test_naive_plan_option_gives_the_same_results_and_a_bad_plan_is_named():
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'fast'"):
        backend.validate_options({"plan": "fast"})
    model, x = mlp(), torch.randn(32, 8)
    with torch.no_grad():
        want = model(x)
        got = torch.compile(model, backend="dojo", options={"plan": "naive"}, dynamic=False)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_training_saves_fewer_activations_than_the_default_partitioner(fake_driver):
    """The min-cut partitioner: the forward returns fewer saved activations (the GELU's
    elementwise pieces are recomputed in the backward), gradients still equal eager's."""
    from torch._functorch.partitioners import default_partition

    def f(x, w):  # GPT-2's GELU, written out as in transformers' NewGELUActivation
        h = x @ w
        return (0.5 * h * (1.0 + torch.tanh(0.7978845608 * (h + 0.044715 * torch.pow(h, 3.0))))).sum()

    x, w = torch.randn(4, 8), torch.randn(8, 8, requires_grad=True)
    torch.compile(f, backend="dojo", dynamic=False)(x, w).backward()
    got = w.grad.clone()
    fw = next(g.graph for g in fake_driver if g.graph["name"] == "forward")

    saved = {}

    def count(gm, _inputs):
        saved.setdefault("n", len(next(n for n in gm.graph.nodes if n.op == "output").args[0]))
        return make_boxed_func(gm.forward)

    w.grad = None
    be = aot_autograd(
        fw_compiler=count,
        bw_compiler=lambda gm, _inputs: make_boxed_func(gm.forward),
        decompositions=backend.decompositions(),
        partition_fn=default_partition,
    )
    torch._dynamo.reset()
    torch.compile(f, backend=be, dynamic=False)(x, w).backward()
    assert len(fw["outputs"]) < saved["n"]
    torch.testing.assert_close(got, w.grad)
