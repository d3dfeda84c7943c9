"""The op families that real models need, forward and backward against eager PyTorch, each
running whole on the mesh (no node falls back): convolutions (strided, padded, dilated,
grouped, depthwise, 1-D), pooling, batch norm, slicing/padding/concatenation, embedding,
advanced indexing, gather, integer ops, attention's helpers. Edge cases: tie-breaking in
max pooling and argmax, NaNs, out-of-range indices, integers beyond the exact range.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F

import torch_dojo
from torch_dojo import backend


def rel(got, want):
    scale = want.abs().max().clamp_min(1e-30)
    return ((got.float() - want.float()).abs().max() / scale).item()


def run_both(f, *args, grad=True):
    """f on eager and on the mesh; returns (eager out, compiled out, eager grads, compiled grads)."""
    torch.manual_seed(0)
    ref = [a.detach().clone().requires_grad_(grad and a.is_floating_point()) for a in args]
    mine = [a.detach().clone().requires_grad_(grad and a.is_floating_point()) for a in args]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = f(*ref)
        got = torch.compile(f, backend="dojo")(*mine)
        grads = ([], [])
        if grad:
            w = torch.randn_like(want)
            (want * w).sum().backward()
            (got * w).sum().backward()
            grads = ([a.grad for a in ref if a.requires_grad], [a.grad for a in mine if a.requires_grad])
    assert sum(s["fallback_nodes"] for s in backend.fallback_stats) == 0, backend.fallback_stats
    return want, got, grads


def check(f, *args, grad=True, tol=1e-5):
    want, got, (gw, gg) = run_both(f, *args, grad=grad)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert rel(got, want) <= tol
    for a, b in zip(gw, gg):
        assert rel(b, a) <= tol


x9 = torch.randn(2, 3, 9, 9)
w3 = torch.randn(4, 3, 3, 3)

CONVS = {
    "3x3 pad 1 + bias": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (x9, w3, torch.randn(4))),
    "3x3 stride 2": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), (x9, w3)),
    "7x7 stride 2 pad 3": (lambda x, w: F.conv2d(x, w, stride=2, padding=3), (torch.randn(2, 3, 16, 16), torch.randn(8, 3, 7, 7))),
    "dilation 2": (lambda x, w: F.conv2d(x, w, dilation=2, padding=2), (x9, w3)),
    "depthwise": (lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=6), (torch.randn(2, 6, 8, 8), torch.randn(6, 1, 3, 3))),
    "grouped 1x1": (lambda x, w: F.conv2d(x, w, groups=2), (torch.randn(2, 4, 8, 8), torch.randn(6, 2, 1, 1))),
    "uneven stride": (lambda x, w: F.conv2d(x, w, stride=(2, 3)), (torch.randn(1, 2, 9, 10), torch.randn(3, 2, 2, 3))),
    "conv1d": (lambda x, w: F.conv1d(x, w, padding=1), (torch.randn(2, 3, 16), torch.randn(5, 3, 3))),
    # 19 MB of columns with fewer channels than taps: legalized tap-major (Conv::tap_major).
    "7x7 large, tap-major columns": (lambda x, w: F.conv2d(x, w, padding=3), (torch.randn(2, 3, 128, 128), torch.randn(8, 3, 7, 7))),
    # 38-85 MB of columns, 64 channels: the forward runs tap by tap (Conv::per_tap), the
    # backward builds the columns.
    "3x3 large, tap by tap": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (torch.randn(1, 64, 128, 128), torch.randn(16, 64, 3, 3), torch.randn(16))),
    "3x3 large strided, tap by tap": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), (torch.randn(1, 64, 255, 256), torch.randn(8, 64, 3, 3))),
    "3x3 large dilated, tap by tap": (lambda x, w: F.conv2d(x, w, dilation=2, padding=2), (torch.randn(1, 64, 192, 192), torch.randn(8, 64, 3, 3))),
    "3x3 large grouped, tap by tap": (lambda x, w: F.conv2d(x, w, padding=1, groups=2), (torch.randn(1, 64, 128, 128), torch.randn(16, 32, 3, 3))),
    # 16 channels, 25 taps: the forward tap by tap, the backward's columns tap-major.
    "5x5 large, tap by tap, tap-major backward": (lambda x, w: F.conv2d(x, w, padding=2), (torch.randn(1, 16, 192, 192), torch.randn(8, 16, 5, 5))),
}


@pytest.mark.parametrize("name", CONVS)
def test_convolution(name):
    f, args = CONVS[name]
    check(f, *args)


@pytest.mark.parametrize(
    "f",
    [
        lambda x: F.max_pool2d(x, 3, 2, 1),
        lambda x: F.max_pool2d(x, 2),
        lambda x: F.max_pool2d(x, 3, 2, ceil_mode=True),
        lambda x: F.max_pool2d(x, 3, 1, 1),  # ties: the input is rounded, windows overlap
    ],
)
def test_max_pool_values_gradients_and_ties(f):
    check(f, (torch.randn(2, 3, 9, 9) * 2).round())


def test_max_pool_indices_match_pytorch_with_ties_and_nan():
    x = (torch.randn(2, 3, 9, 9) * 2).round()
    x[0, 1, 4, 4] = float("nan")
    f = lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True)[1]  # noqa: E731
    want, got, _ = run_both(f, x, grad=False)
    assert torch.equal(got, want)


def test_inference_batch_norm():
    bn = torch.nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
    with torch.no_grad():
        check(bn, torch.randn(2, 3, 8, 8), grad=False)


@pytest.mark.parametrize(
    "f, shape",
    [
        (lambda x: torch.cat([x[:, 1:5:2], x[:, ::3] * 2], 1), (4, 12)),
        (lambda x: F.pad(x, (1, 2, -1, 3), value=0.5), (3, 6, 6)),
        (lambda x: x[:, 2] + x.split([2, 3], dim=1)[1].sum(1), (4, 5)),
        (lambda x: torch.stack([x, x * 3]).sum(0), (3, 4)),
        (lambda x: x * torch.arange(3, 15, 2), (2, 6)),
    ],
)
def test_slicing_padding_concatenation(f, shape):
    check(f, torch.randn(*shape))


def test_embedding_with_padding_index():
    ids = torch.tensor([[1, 5, 5], [19, 0, 5]])
    check(lambda w: F.embedding(ids, w, padding_idx=5), torch.randn(20, 6))


@pytest.mark.parametrize(
    "f, shape",
    [
        (lambda x: x[torch.tensor([0, 2, -1]), torch.tensor([1, 1, 0])], (4, 3, 5)),
        (lambda x: x[torch.tensor([[0, 2], [3, 3]])], (4, 5)),
        (lambda x: x[torch.tensor([[0], [2]]), torch.tensor([1, 0, 2])], (3, 4)),  # broadcast indices
        (lambda x: x.gather(1, torch.tensor([[0, 2, 2], [1, 0, 3]])), (2, 4)),
    ],
)
def test_indexing_and_its_gradient(f, shape):
    check(f, torch.randn(*shape))


def test_out_of_range_index_is_an_error_not_another_row():
    with pytest.raises(torch_dojo.DeviceError, match="out of range"):
        torch.compile(lambda x: x[torch.tensor([0, 5])], backend="dojo")(torch.randn(4, 3))


def test_argmax_first_maximum_and_nan():
    x = (torch.randn(3, 5) * 2).round()
    x[1, 3] = float("nan")
    for f in (lambda x: torch.argmax(x, 1, keepdim=True), lambda x: torch.argmax(x), lambda x: torch.argmax(x, 0)):
        want, got, _ = run_both(f, x, grad=False)
        assert torch.equal(got, want)


def test_integer_ops_are_exact():
    n = torch.arange(6).reshape(2, 3)
    want, got, _ = run_both(lambda n: ((n * 3 - 2) * (n > 2).cumsum(1)).int() + torch.arange(3, dtype=torch.int32), n, grad=False)
    assert got.dtype == torch.int32 and torch.equal(got, want)


def test_integers_beyond_the_exact_range_are_an_error():
    with pytest.raises(torch_dojo.DeviceError, match="2\\^24"):
        torch.compile(lambda n: n + 1, backend="dojo")(torch.tensor(2**24 + 5))
    with pytest.raises(torch_dojo.DeviceError, match="2\\^24"):
        torch.compile(lambda n: n * 4096, backend="dojo")(torch.tensor(2**13))
