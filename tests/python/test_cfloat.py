"""torch_dojo.cfloat: CFloat conversions of torch tensors through the public API."""

import math
import warnings

import pytest
import torch

import torch_dojo
from torch_dojo import cfloat

CF8 = ["cf8_143", "cf8_152"]
CF16 = ["cf16_shp", "cf16_uhp"]


def all_codes(fmt: str) -> torch.Tensor:
    if fmt in CF8:
        return torch.arange(256, dtype=torch.int32).to(torch.uint8)
    return torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)


@pytest.mark.parametrize("fmt", CF8 + CF16)
@pytest.mark.parametrize("bias", [0, 7, 31, 63])
@pytest.mark.parametrize("denormal", ["literal", "ieee"])
def test_every_code_round_trips(fmt, bias, denormal):
    codes = all_codes(fmt)
    values = cfloat.from_cfloat(codes, fmt, bias, denormal=denormal)
    assert values.dtype == torch.float32 and values.shape == codes.shape
    back = cfloat.to_cfloat(values, fmt, bias, denormal=denormal)
    assert back.codes.dtype == codes.dtype
    assert torch.equal(back.codes, codes)
    assert back.flags.invalid == back.flags.overflow == back.flags.underflow == 0
    assert torch.equal(back.to_float(), values)


def test_worked_values_of_the_spec():
    codes = torch.tensor([0x38, 0x7F, 0x08, 0x01, 0x80], dtype=torch.uint8)
    values = cfloat.from_cfloat(codes, "cf8_143", 7)
    assert values[:4].tolist() == [1.0, 480.0, 0.015625, 0.0009765625]
    assert values[4].item() == 0.0 and math.copysign(1.0, values[4].item()) < 0
    c = cfloat.to_cfloat(values, "cf8_143", 7)
    assert torch.equal(c.codes, codes)
    assert cfloat.limits("cf8_143", 0) == (61440.0, 2.0, 0.125)


def test_shape_is_kept_and_input_dtypes_widen():
    x = (torch.arange(24.0) / 8 - 1.5).reshape(2, 3, 4)  # exact in float16 and bfloat16
    c = cfloat.to_cfloat(x, "cf16_shp", 15)
    assert c.codes.shape == x.shape and c.codes.dtype == torch.int16
    for dtype in [torch.float64, torch.float16, torch.bfloat16]:
        assert torch.equal(cfloat.to_cfloat(x.to(dtype), "cf16_shp", 15).codes, c.codes)
    # Non-contiguous input is read correctly.
    assert torch.equal(cfloat.to_cfloat(x.transpose(0, 2), "cf16_shp", 15).codes, c.codes.transpose(0, 2))


def test_nearest_even_ties_and_the_literal_gap():
    # cf8_143 bias 7: 1 + 1/16 lies halfway between 1.0 (0x38, even) and 1.125 (0x39).
    x = torch.tensor([1.0625, 1.1875, 2.0 ** -7])
    c = cfloat.to_cfloat(x, "cf8_143", 7)
    assert c.codes.tolist() == [0x38, 0x3A, 0x07]
    # 2^-7 is in the gap of literal denormals; with IEEE denormals it is 0x04.
    assert cfloat.to_cfloat(x, "cf8_143", 7, denormal="ieee").codes.tolist()[2] == 0x04


def test_bias_is_chosen_from_amax():
    x = torch.tensor([0.5, -480.0, float("nan")])
    assert cfloat.choose_bias(x, "cf8_143") == 7
    assert cfloat.choose_bias(x, "cf8_143", margin=1.01) == 6
    assert cfloat.choose_bias(torch.zeros(3), "cf8_152") == 15
    assert cfloat.choose_bias(torch.zeros(3), "bf16") == 127
    c = cfloat.to_cfloat(torch.tensor([0.5, -480.0]), "cf8_143")
    assert c.bias == 7 and c.to_float().tolist() == [0.5, -480.0]


def test_stochastic_rounding_is_seeded_and_unbiased():
    x = torch.full((200_000,), 1.0 + 0.3 * 0.125)  # 30% of the way from 1.0 to 1.125
    a = cfloat.to_cfloat(x, "cf8_143", 7, rounding="stochastic", seed=1)
    b = cfloat.to_cfloat(x, "cf8_143", 7, rounding="stochastic", seed=1)
    c = cfloat.to_cfloat(x, "cf8_143", 7, rounding="stochastic", seed=2)
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)
    assert set(a.codes.unique().tolist()) == {0x38, 0x39}
    mean = a.to_float().double().mean().item()
    assert abs(mean - x[0].item()) < 6 * 0.125 * math.sqrt(0.21 / x.numel())
    nearest = cfloat.to_cfloat(x, "cf8_143", 7)
    assert set(nearest.codes.unique().tolist()) == {0x38}
    other_stream = cfloat.to_cfloat(x, "cf8_143", 7, rounding="stochastic", seed=1, stream=5)
    assert not torch.equal(a.codes, other_stream.codes)


def test_flags_count_every_case():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e6, 1e-30, 0.001, 1.0, 0.0])
    with pytest.warns(cfloat.CFloatWarning, match="1 invalid.*3 overflow"):
        c = cfloat.to_cfloat(x, "cf8_143", 7)
    assert c.flags == cfloat.Flags(invalid=1, denormal=1, overflow=3, underflow=1)
    assert cfloat.last_flags() == c.flags
    assert c.to_float().tolist() == [0.0, 480.0, -480.0, 480.0, 0.0, 0.0009765625, 1.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = cfloat.to_cfloat(torch.ones(4), "cf8_143", 7)
        assert not clean.flags and cfloat.last_flags() == cfloat.Flags()
        cfloat.to_cfloat(x, "cf8_143", 7, warn=False)
    # Negative input to the unsigned format is Invalid and becomes +0.
    with pytest.warns(cfloat.CFloatWarning):
        u = cfloat.to_cfloat(torch.tensor([-1.0, 2.0]), "cf16_uhp", 31)
    assert u.flags.invalid == 1 and u.to_float().tolist() == [0.0, 2.0]
    assert c.flags.as_dict() == {"invalid": 1, "denormal": 1, "overflow": 3, "underflow": 1}


def test_bf16_and_fp32():
    x = torch.randn(1000)
    c = cfloat.to_cfloat(x, "bf16")
    assert c.bias == 127 and c.codes.dtype == torch.int16
    assert torch.equal(c.codes, x.to(torch.bfloat16).view(torch.int16))
    assert torch.equal(cfloat.from_cfloat(c.codes, "bf16"), x.to(torch.bfloat16).float())
    f = cfloat.to_cfloat(x, "fp32")
    assert torch.equal(f.codes, x.view(torch.int32)) and torch.equal(f.to_float(), x)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", 64), "0..=63"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", -1), "out of range"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", 10**30), "out of range"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf9"), "unknown number format"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", rounding="up"), "unknown rounding"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", denormal="IEEE"), "denormal"),
        (lambda: cfloat.to_cfloat(torch.ones(2, dtype=torch.int64), "cf8_143"), "torch.int64"),
        (lambda: cfloat.to_cfloat(torch.ones(2, dtype=torch.bool), "cf8_143"), "floating-point"),
        (lambda: cfloat.to_cfloat([1.0, 2.0], "cf8_143"), "torch.Tensor, got list"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "cf8_143", seed=1.5), "seed must be an int"),
        (lambda: cfloat.to_cfloat(torch.ones(2), "bf16", 7), "fixed bias 127"),
        (lambda: cfloat.from_cfloat(torch.ones(2), "cf8_143", 7), "torch.uint8 tensor, got torch.float32"),
        (lambda: cfloat.from_cfloat(torch.ones(2, dtype=torch.bfloat16), "cf16_shp", 7), "torch.bfloat16"),
        (lambda: cfloat.from_cfloat(torch.zeros(2, dtype=torch.uint8), "cf16_shp", 7), "torch.int16"),
        (lambda: cfloat.from_cfloat(torch.zeros(2, dtype=torch.uint8), "cf8_143"), "need their bias"),
        (lambda: cfloat.choose_bias(torch.ones(2), "cf8_143", margin=0.0), "margin"),
        (lambda: cfloat.choose_bias(torch.ones(2, dtype=torch.int32), "cf8_143"), "floating-point"),
    ],
)
def test_bad_arguments_raise_invalid_input(call, message):
    with pytest.raises(torch_dojo.InvalidInputError, match=message):
        call()
