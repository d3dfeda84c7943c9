"""Train a small MLP on the simulated D1: forward and backward graphs run on the mesh, the
optimizer step runs in eager PyTorch. A report of the last training step closes the run.

    .venv/bin/python examples/train.py [--steps N] [--mesh d1] [--trace trace.json]

Open the trace in https://ui.perfetto.dev (or chrome://tracing) to see every core's work.
"""

import argparse

import torch

import torch_dojo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    parser.add_argument("--mesh", default="d1", help="target mesh: core, d1, d1:RxC or tile (default d1)")
    parser.add_argument("--trace", help="write the last step's Chrome trace to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    # A synthetic regression task: learn y = tanh-ish(x @ W) from samples.
    w_true = torch.randn(32, 4)
    data = torch.randn(256, 32)
    targets = torch.relu(data @ w_true)

    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    compiled = torch.compile(model, backend="dojo", options={"mesh": args.mesh})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(data), (64,))
        loss = torch.nn.functional.mse_loss(compiled(data[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()  # the backward graph runs on the simulated mesh
        optimizer.step()
        if step == 1 or step % 5 == 0 or step == args.steps:
            print(f"step {step:3d}  loss {loss.item():.4f}")

    report = torch_dojo.report(last=2)  # the forward and backward graphs of the last step
    print()
    print(report)
    print(f"\nsimulated time of one training step: {report.simulated_seconds * 1e6:.2f} us")
    if args.trace:
        print(f"Chrome trace of the last step: {report.save_trace(args.trace)}")


if __name__ == "__main__":
    main()
