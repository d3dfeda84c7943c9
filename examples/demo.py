"""Compile a small MLP with torch.compile(backend="dojo"), run it on the simulated D1 mesh,
and compare with eager PyTorch.

    make demo        (or: .venv/bin/python examples/demo.py)
"""

import sys

import torch

import torch_dojo


def main() -> int:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 32),
    )
    x = torch.randn(16, 64)

    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1"}, dynamic=False)
    with torch.no_grad():
        expected = model(x)
        try:
            got = compiled(x)
        except Exception as e:  # torch wraps backend errors in BackendCompilerFailed
            inner = getattr(e, "inner_exception", e)
            print(f"torch-dojo could not run the model: {type(inner).__name__}: {inner}", file=sys.stderr)
            return 1

    diff = (got - expected).abs().max().item()
    print(f"MLP 64-128-32, batch 16, on the simulated D1 (mesh 'd1')")
    print(f"largest difference from eager: {diff:.3e}")
    print(torch_dojo.format_report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
