"""Smallest reproductions of the crashes and errors the OpInfo sweep found (all fixed by 15faa00 and
5d1e712; kept as regression checks: every case prints "ok" now).

    .venv/bin/python tests/opinfo/repros.py [NAME ...]

Each case compiles one function with backend="dojo" (dynamic=False) and prints what happens:
"ok" (matches eager), "WRONG", or the exception. Cases are named after the root cause; the
entries of expected.tsv they explain are listed with each.
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch._dynamo

import torch_dojo  # noqa: F401 - registers "dojo"

warnings.simplefilter("ignore")

t0 = torch.tensor(2.0)  # a 0-d tensor
e103 = torch.zeros(1, 0, 3)  # a tensor with a zero-size dim

#: name → (function, inputs, the OpInfo entries it explains)
CASES = {
    # legalize-aten emits dojo.reduce_* with dim 0 on a rank-0 tensor ("invalid IR").
    "reduce-dim-of-0d": (lambda x: torch.sum(x, dim=0, keepdim=True), [t0], "sum amax all any logsumexp"),
    "amax-dim-of-0d": (lambda x: torch.amax(x, dim=0, keepdim=True), [t0], "amax all any logsumexp"),
    # The same for mean ends in a Rust panic: "index out of bounds: the len is 0 but the index is 0".
    "mean-dim-of-0d": (lambda x: torch.mean(x, dim=0, keepdim=True), [t0], "mean"),
    # lower-to-d1: "d1.load result layout: dim 1 of size 0 cannot be split into 1 chunks".
    "elementwise-empty": (lambda x: torch.exp(x), [e103], "exp log sigmoid rsqrt reciprocal square isfinite "
                          "logical_not nan_to_num sinc special.ndtr special.log_ndtr nn.functional.{celu,glu,hardsigmoid,"
                          "logsigmoid,mish,prelu,silu,softplus,softsign,tanhshrink,bilinear} linalg.vecdot svd"),
    # matmul with a zero-size dim: "internal: bad reshard layout: dim 0 of size 0".
    "mm-empty": (lambda a, b: a @ b, [torch.zeros(0, 5), torch.randn(5, 3)], "mm nn.functional.linear"),
    # "d1.reshape must be local" on a batch of 0.
    "adaptive-avg-pool1d-empty": (lambda x: torch.nn.functional.adaptive_avg_pool1d(x, 5), [torch.zeros(0, 8, 8)],
                                  "nn.functional.adaptive_avg_pool1d"),
    "unfold-empty": (lambda x: torch.nn.functional.unfold(x, 2, 1, 0, 1), [torch.zeros(0, 1, 5, 5)],
                     "nn.functional.unfold"),
    # Errors where fallback="eager" should have run the node on the host: a dtype the mesh lacks
    # made `_native.unsupported_ops` raise instead of listing the node; a graph constant
    # (get_attr) was not counted as unsupported, so the strict capture raised.
    "uint8-cast": (lambda x: x.to(torch.uint8), [torch.randn(4)], "byte eye linalg.matrix_power _batch_norm_with_update"),
    "complex": (lambda x: torch.fft.rfft(x).abs(), [torch.randn(4, 4)], "fft.* stft complex polar cfloat linalg.eig"),
    "graph-constant": (lambda x: x + torch.tensor([1.0, 2.0, 3.0, 4.0]), [torch.randn(4, 4)], "masked.*"),
    # CapacityError claiming 64 B do not fit in 1.1 MiB (an empty matmul).
    "empty-multi-dot": (lambda a, b: torch.linalg.multi_dot([a, b, a]), [torch.randn(2, 0), torch.randn(0, 2)],
                        "linalg.multi_dot linalg.pinv.singular"),
}


def run(name: str) -> str:
    fn, inputs, _ = CASES[name]
    want = fn(*[x.clone() for x in inputs])
    torch._dynamo.reset()
    try:
        got = torch.compile(fn, backend="dojo", dynamic=False)(*[x.clone() for x in inputs])
    except Exception as e:  # noqa: BLE001 - printed
        inner = getattr(e, "inner_exception", None) or e.__cause__ or e
        return f"{type(inner).__name__}: {str(inner).strip()}"
    try:
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4, equal_nan=True)
    except AssertionError as e:
        return f"WRONG: {e}"
    return "ok"


if __name__ == "__main__":
    for name in sys.argv[1:] or CASES:
        print(f"== {name} ({CASES[name][2]})\n{run(name)}\n")
