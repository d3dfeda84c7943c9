"""Quickstart: inference of a small model on a simulated Tesla Dojo D1 with torch.compile.

    .venv/bin/python examples/quickstart.py

torch.compile(backend="dojo") captures the model's graph, compiles it for a block of D1 cores
and runs it on the simulator; torch_dojo.report() says what the run cost on the machine.
"""

import torch

import torch_dojo  # registers backend="dojo" (also found without this import, by entry point)


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)
    ).eval()
    x = torch.randn(64, 256)

    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1"})
    with torch.no_grad():
        got, want = compiled(x), model(x)
    print(f"largest difference from eager PyTorch: {(got - want).abs().max().item():.2e}")
    print()
    print(torch_dojo.report())  # simulated time, TFLOPS, utilisation, SRAM, traffic, top ops


if __name__ == "__main__":
    main()
