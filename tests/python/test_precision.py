"""Precision policies (`options={"precision": ...}`): matmul/conv operands stored in bf16,
cf16_shp or cf8_143/cf8_152 with f32 accumulation, biases by the spec's rule D7, flags to
the user, the format's throughput in the timing model.

The numerics are checked against an eager emulation built from `torch_dojo.cfloat`: round
each matmul operand to the format with the bias D7 gives for its values, multiply in f32.
What the simulator computes must equal it to f32 rounding (not merely be "close to fp32").
"""

import copy
import warnings

import pytest
import torch

import torch_dojo
from torch_dojo import backend, cfloat


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def q(x: torch.Tensor, fmt: str) -> torch.Tensor:
    """`x` rounded to `fmt` (nearest even) with the D7 bias of its own amax."""
    if fmt == "bf16":
        return x.bfloat16().float()
    return cfloat.from_cfloat(cfloat.to_cfloat(x, fmt, bias=cfloat.choose_bias(x, fmt), warn=False))


def emulate(model, x, fmt):
    """The MLP's forward with every matmul operand rounded to `fmt`, accumulation in f32."""
    l1, l2 = model[0], model[2]
    h = torch.relu(q(x, fmt) @ q(l1.weight.t().contiguous(), fmt) + l1.bias)
    return q(h, fmt) @ q(l2.weight.t().contiguous(), fmt) + l2.bias


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("precision,fmt", [("bf16", "bf16"), ("cfloat16", "cf16_shp"), ("cfloat8", "cf8_143")])
def test_forward_equals_the_emulated_format(precision, fmt):
    model = mlp().eval()
    x = torch.randn(32, 64)
    compiled = torch.compile(model, backend="dojo", options={"precision": precision})
    with torch.no_grad():
        got = compiled(x)
        want = emulate(model, x, fmt)
        fp32 = model(x)
    assert rel(got, want) < 1e-5, "the simulator must compute exactly the format's numerics"
    # ...and that is really a lower precision than fp32 (the check above is not vacuous).
    assert rel(got, fp32) > {"bf16": 1e-4, "cf16_shp": 1e-5, "cf8_143": 1e-3}[fmt]
    # Same inputs, same bits (determinism), on a second call with the amax history in use.
    with torch.no_grad():
        assert torch.equal(compiled(x), got)


def test_every_tensor_format_and_bias_is_in_the_ir_and_the_profile():
    model = mlp()
    compiled = torch.compile(model, backend="dojo", options={"precision": "cfloat8"})
    x = torch.randn(32, 64)
    compiled(x).square().mean().backward()
    fwd, bwd = backend.compiled_graphs[-2:]
    stages = dict(fwd.graph.stages())
    assert "precision" in stages
    assert "!dojo.cf8_143<7>" in stages["precision"] and "dojo.convert" in stages["precision"]
    # Forward: cf8_143 everywhere; backward: the gradient operands cf8_152, the saved
    # activations and weights cf8_143.
    fwd_dtypes = {n["name"]: n["dtype"] for n in fwd.last_profile["numerics"]}
    bwd_dtypes = {n["name"]: n["dtype"] for n in bwd.last_profile["numerics"]}
    assert set(fwd_dtypes.values()) == {"Cf8_143"}
    assert set(bwd_dtypes.values()) == {"Cf8_143", "Cf8_152"}
    # The weight of the first layer gets the bias D7 gives for its values.
    w1 = next(n for n in fwd.last_profile["numerics"] if n["amax"] == pytest.approx(model[0].weight.abs().max().item()))
    assert w1["bias"] == cfloat.choose_bias(model[0].weight, "cf8_143")
    assert all(not any(n["flags"].values()) or n["flags"]["underflow"] or n["flags"]["denormal"] for n in fwd.last_profile["numerics"])


def test_cfloat8_training_step_is_close_to_fp32():
    model = mlp()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, backend="dojo", options={"precision": "cfloat8"})
    x = torch.randn(32, 64)
    out = compiled(x)
    want = reference(x)
    assert rel(out, want) < 0.1
    out.square().mean().backward()
    want.square().mean().backward()
    # The last layer's gradients: cf8 operands, f32 accumulation (the first layer's also
    # see ReLU masks flipped by the rounded forward, so they are compared loosely).
    assert rel(model[2].weight.grad, reference[2].weight.grad) < 0.1
    assert rel(model[0].weight.grad, reference[0].weight.grad) < 0.6


def test_timing_uses_the_formats_throughput_and_bytes():
    torch.manual_seed(0)
    model = torch.nn.Linear(1024, 1024, bias=False).eval()
    x = torch.randn(512, 1024)
    seconds, sram = {}, {}
    for precision in ("fp32", "cfloat8"):
        torch._dynamo.reset()
        with torch.no_grad():
            torch.compile(model, backend="dojo", options={"precision": precision})(x)
        profile = backend.compiled_graphs[-1].last_profile
        seconds[precision] = profile["simulated_seconds"]
        sram[precision] = profile["peak_sram_bytes"]
        mm = [op for op in profile["ops"] if "matmul" in op["name"]]
        assert mm
    # f32 runs at 1/16 of the matrix rate: the matmul-bound graph is several times faster in
    # cf8, whose operands are also a quarter of the bytes.
    assert seconds["cfloat8"] < seconds["fp32"] / 2
    assert sram["cfloat8"] < sram["fp32"]


def test_overflow_warns_naming_the_tensor_and_strict_numerics_raises():
    model = mlp().eval()
    x = torch.randn(32, 64)
    compiled = torch.compile(model, backend="dojo", options={"precision": "cfloat8"})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled(x)  # calibrates the activations' biases: no flags
        # The hidden activation jumps 1000x: its bias comes from the history and saturates.
        with pytest.warns(backend.NumericsWarning, match=r"addmm_1\.lhs \(cf8_143, bias \d+.*overflow"):
            compiled(x * 1000)

    torch._dynamo.reset()
    strict = torch.compile(model, backend="dojo", options={"precision": "cfloat8", "strict_numerics": True})
    with torch.no_grad():
        strict(x)
        with pytest.raises(torch_dojo.DeviceError, match=r"(?s)addmm_1\.lhs.*strict_numerics"):
            strict(x * 1000)


def test_nan_input_is_flagged_not_silently_zeroed():
    model = mlp().eval()
    x = torch.randn(32, 64)
    x[3, 5] = float("nan")
    # CFloat has no NaN: the spec converts it to +0 and raises Invalid, which the user sees.
    compiled = torch.compile(model, backend="dojo", options={"precision": "cfloat8"})
    with torch.no_grad(), pytest.warns(backend.NumericsWarning, match=r"addmm\.lhs.*1 invalid"):
        compiled(x)
    # bf16 keeps NaN: it propagates exactly as in eager.
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="dojo", options={"precision": "bf16"})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        got = compiled(x)
        assert torch.equal(got.isnan(), model(x).isnan()) and got.isnan().any()


@pytest.mark.parametrize("bad", ["fp8", "cf8_143", 8])
def test_unknown_precision_lists_the_policies(bad):
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'fp32', 'bf16', 'cfloat16', 'cfloat8'"):
        backend.validate_options({"precision": bad})


def test_strict_numerics_must_be_a_bool():
    with pytest.raises(torch_dojo.InvalidInputError, match=r"'strict_numerics' must be True or False"):
        backend.validate_options({"strict_numerics": "yes"})


def test_report_lists_each_low_precision_tensor():
    model = mlp().eval()
    with torch.no_grad():
        torch.compile(model, backend="dojo", options={"precision": "cfloat8"})(torch.randn(32, 64))
    text = str(torch_dojo.report(last=1))
    assert "cfloat8 tensors of inference #" in text
    assert "addmm.rhs" in text and "cf8_143" in text
