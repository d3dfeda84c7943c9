"""Compile a small MLP with torch.compile(backend="dojo"), run inference and one training step
on the simulated D1, and compare with eager PyTorch.

    make demo        (or: .venv/bin/python examples/demo.py)
"""

import copy
import sys

import torch

import torch_dojo


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def main() -> int:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    eager = copy.deepcopy(model)
    x, target = torch.randn(32, 64), torch.randn(32, 10)
    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1"})
    print("MLP Linear(64,128) -> ReLU -> Linear(128,10), batch 32, f32, on one simulated D1")

    try:
        with torch.no_grad():
            diff = rel(compiled(x), eager(x))
        print(f"\ninference: largest relative difference from eager {diff:.2e}")
        print(torch_dojo.format_report())

        torch.nn.functional.mse_loss(eager(x), target).backward()
        torch.nn.functional.mse_loss(compiled(x), target).backward()
    except Exception as e:  # torch.compile wraps backend errors in BackendCompilerFailed
        inner = getattr(e, "inner_exception", e)
        print(f"torch-dojo could not run the model: {type(inner).__name__}: {inner}", file=sys.stderr)
        return 1

    grad_diff = max(rel(pc.grad, pe.grad) for pc, pe in zip(model.parameters(), eager.parameters()))
    print(f"\ntraining step: largest relative gradient difference from eager {grad_diff:.2e}")
    print(torch_dojo.format_report())  # the backward graph ran last
    return 0 if diff <= 1e-5 and grad_diff <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
