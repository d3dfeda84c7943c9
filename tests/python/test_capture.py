"""FX graph -> JSON graph description (torch_dojo.capture), checked on real AOTAutograd
graphs; `graph_interpreter` re-executes the JSON with aten ops to show nothing was lost."""

import json

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd

import torch_dojo
from torch_dojo import backend, capture

from graph_interpreter import interpret


def captured(fn, *args, dynamic=False, train=False):
    """The JSON descriptions of the graphs AOTAutograd makes for fn(*args), by name."""
    graphs = {}

    def compiler(name):
        def compile_one(gm, example_inputs):
            graphs[name] = json.loads(capture.capture_json(gm, name))
            return make_boxed_func(gm.forward)

        return compile_one

    be = aot_autograd(
        fw_compiler=compiler("forward"),
        bw_compiler=compiler("backward"),
        inference_compiler=compiler("inference"),
        decompositions=backend.decompositions(),
    )
    out = torch.compile(fn, backend=be, dynamic=dynamic)(*args)
    if train:
        out.sum().backward()
    return graphs


def node(graph, target):
    return next(n for n in graph["nodes"] if n["target"] == target)


def attr(n, name):
    return next(a for a in n["attrs"] if a["name"] == name)


def test_the_documented_example_shape():
    w = torch.randn(64, 128)
    g = captured(lambda w: w.t().contiguous() * 2, w)["inference"]
    assert g["inputs"] == [{"name": "arg0_1", "shape": [64, 128], "dtype": "f32"}]
    permute = node(g, "aten.permute.default")
    assert permute["operands"] == ["arg0_1"]
    assert permute["attrs"] == [{"name": "dims", "kind": "ints", "value": [1, 0]}]
    assert permute["outputs"] == [{"shape": [128, 64], "dtype": "f32"}]


def test_defaults_are_filled_from_the_schema():
    g = captured(lambda x: x.sum(dim=1), torch.randn(4, 5))["inference"]
    s = node(g, "aten.sum.dim_IntList")
    assert [a["name"] for a in s["attrs"]] == ["dim", "keepdim", "dtype"]
    assert attr(s, "keepdim") == {"name": "keepdim", "kind": "bool", "value": False}
    assert attr(s, "dtype") == {"name": "dtype", "kind": "none", "value": None}


def test_tensor_lists_become_operands_with_a_count():
    g = captured(lambda a, b, c: torch.cat([a, b, c], dim=1), *[torch.randn(2, k) for k in (1, 2, 3)])["inference"]
    cat = node(g, "aten.cat.default")
    assert cat["operands"] == ["arg0_1", "arg1_1", "arg2_1"]
    assert attr(cat, "tensors_count")["value"] == 3
    assert attr(cat, "dim") == {"name": "dim", "kind": "int", "value": 1}


def test_absent_optional_tensor_is_a_none_attr():
    conv = torch.nn.Conv2d(3, 4, 3, bias=False)
    with torch.no_grad():
        g = captured(conv, torch.randn(1, 3, 8, 8))["inference"]
    c = node(g, "aten.convolution.default")
    assert len(c["operands"]) == 2
    assert attr(c, "bias") == {"name": "bias", "kind": "none", "value": None}
    assert attr(c, "transposed") == {"name": "transposed", "kind": "bool", "value": False}


def test_multi_result_nodes_are_named_by_index():
    ln = torch.nn.LayerNorm(8)
    g = captured(ln, torch.randn(2, 8), train=True)["forward"]
    # Layer norm decomposes into mesh primitives; var_mean is the multi-result node left.
    n = node(g, "aten.var_mean.correction")
    assert len(n["outputs"]) == 2
    referenced = {o for m in g["nodes"] for o in m["operands"]} | {o for o in g["outputs"] if o}
    assert f"{n['name']}#0" in referenced
    assert not any(m["target"].startswith("_operator") for m in g["nodes"])


def test_non_finite_floats_are_strings():
    g = captured(lambda x: x.masked_fill(x > 0, float("-inf")), torch.randn(3))["inference"]
    assert any(a["kind"] == "float" and a["value"] == "-inf" for n in g["nodes"] for a in n["attrs"])
    json.dumps(g, allow_nan=False)  # valid JSON for serde


def test_python_numbers_for_tensor_arguments_are_attrs():
    g = captured(lambda x: x * 2.5 + 1, torch.randn(3))["inference"]
    mul = node(g, "aten.mul.Tensor")
    assert mul["operands"] == ["arg0_1"]
    assert attr(mul, "other") == {"name": "other", "kind": "float", "value": 2.5}


def test_dtypes_are_short_names():
    g = captured(lambda x: (x > 0, x.long()), torch.randn(3))["inference"]
    dtypes = [n["outputs"][0]["dtype"] for n in g["nodes"]]
    assert "bool" in dtypes and "i64" in dtypes


def test_dynamic_shapes_are_refused_clearly():
    with pytest.raises(Exception) as excinfo:
        captured(lambda x: x * 2, torch.randn(3, 4), dynamic=True)
    err = getattr(excinfo.value, "inner_exception", excinfo.value)
    assert isinstance(err, torch_dojo.UnsupportedOpError)
    assert "dynamic=False" in str(err)


def test_graph_constants_are_refused_clearly():
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    x.meta["val"] = torch.zeros(2)
    y = graph.call_function(torch.ops.aten.add.Tensor, (x, graph.get_attr("offset")))
    graph.output((y,))
    root = torch.nn.Module()
    root.register_buffer("offset", torch.ones(2))
    gm = torch.fx.GraphModule(root, graph)
    with pytest.raises(torch_dojo.UnsupportedOpError, match="graph constants are not supported yet"):
        capture.capture(gm, "forward")


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)),
        lambda: torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8), torch.nn.Softmax(-1)),
        lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                    torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(36, 2)),
    ],
    ids=["mlp-gelu", "layernorm-softmax", "conv-bn-pool"],
)
def test_interpreting_the_json_reproduces_eager_training(make_model, fake_driver):
    """The fake driver runs each graph from its JSON alone; outputs and gradients match eager."""
    torch.manual_seed(0)
    model, reference = make_model(), make_model()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 8, 8) if isinstance(model[0], torch.nn.Conv2d) else torch.randn(2, 8)
    out = torch.compile(model, backend="dojo", dynamic=False)(x)
    expected = reference(x)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    expected.square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    for b, c in zip(model.buffers(), reference.buffers()):
        torch.testing.assert_close(b, c)  # batch-norm running stats written back
    # Whole graphs, or their parts when some nodes fall back to eager.
    names = [g.graph["name"] for g in fake_driver]
    assert [n.split(".")[0] for n in names] == sorted((n.split(".")[0] for n in names), key=["forward", "backward"].index)
    assert {n.split(".")[0] for n in names} == {"forward", "backward"}
    for g in fake_driver:
        assert {n["target"].split(".")[0] for n in g.graph["nodes"]} == {"aten"}


def test_a_value_only_returned_follows_its_operand():
    """A transpose that only goes to the output (a saved activation, as the min-cut
    partitioner leaves them at the end of the forward) is described right after its operand,
    so the compiler can store it before the rest runs; a random op keeps its place; the graph
    still computes the same."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def f(x):
        y = x.sin()
        z = y.cos().exp()
        return z, y.t(), torch.rand_like(y)

    gm = make_fx(f)(torch.randn(3, 4))
    assert [n.name for n in gm.graph.nodes][1:5] == ["sin", "cos", "exp", "t"]
    g = json.loads(capture.capture_json(gm, "f"))
    assert [n["target"] for n in g["nodes"]] == ["aten.sin.default", "aten.t.default", "aten.cos.default", "aten.exp.default", "aten.rand_like.default"]
    x = torch.randn(3, 4)
    got = interpret(g, [x])
    want = f(x)
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a, b)
