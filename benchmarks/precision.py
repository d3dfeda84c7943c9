"""What the precision policies cost in accuracy (issue: CFloat8 and CFloat16).

    .venv/bin/python benchmarks/precision.py [--steps N] [--skip-training]   (make bench-precision)

1. Inference: resnet18 (batch 2, 64x64) and the tiny GPT-2 (2 layers, n_embd 128) of
   tests/python/test_models.py, compiled with each policy: max relative difference of the
   logits from f32 eager, and the simulated time on d1 relative to fp32's.
2. Training: the tiny GPT-2 for N AdamW steps (default 200) on the synthetic next-token task
   of test_gpt2_training_loop_follows_eager, once per policy, from the same initial weights:
   final loss (and the mean of the last 10 steps) relative to fp32's. Goal: cfloat8 within 5%.

Not a test (it takes minutes): it prints tables for the notes.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
import test_models as tm  # noqa: E402
import transformers  # noqa: E402

from torch_dojo import backend  # noqa: E402

POLICIES = ("fp32", "bf16", "cfloat16", "cfloat8")


def simulated(records) -> float:
    return sum(r.last_profile["simulated_seconds"] for r in records if r.last_profile)


def inference(name: str) -> list[str]:
    rows = []
    torch.manual_seed(0)
    model, inputs = tm.MODELS[name][0]()
    model.eval()
    with torch.no_grad():
        want = tm.logits(model(*inputs))
    base = None
    for policy in POLICIES:
        torch._dynamo.reset()
        first = len(backend.compiled_graphs)
        compiled = torch.compile(model, backend="dojo", options={"precision": policy})
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = tm.logits(compiled(*inputs))
        flags = sum(1 for w in caught if issubclass(w.category, backend.NumericsWarning))
        sim = simulated(backend.compiled_graphs[first:])
        base = base or sim
        rows.append(
            f"| {name} | {policy} | {tm.rel(got, want):.2e} | {sim * 1e6:.1f} us | {sim / base:.2f} | {flags} |"
        )
        print(rows[-1], flush=True)
    return rows


def gpt2_training(policy: str, steps: int) -> list[float]:
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=64, use_cache=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = (torch.randint(0, 1000, (4, 1)) + torch.arange(64)) % 1000
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="dojo", options={"precision": policy})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    curve = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            opt.zero_grad()
            loss = compiled(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            curve.append(loss.item())
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()

    print("| model | policy | max rel diff vs f32 eager | simulated (d1) | vs fp32 | runs with flags |")
    print("|---|---|---|---|---|---|")
    for name in ("resnet18", "gpt2"):
        inference(name)

    if args.skip_training:
        return
    print(f"\nTiny GPT-2, {args.steps} AdamW steps (lr 3e-3), synthetic next-token task:")
    print("| policy | first loss | final loss | final / fp32 | mean last 10 / fp32 | wall |")
    print("|---|---|---|---|---|---|")
    base = None
    for policy in POLICIES:
        t0 = time.perf_counter()
        curve = gpt2_training(policy, args.steps)
        wall = time.perf_counter() - t0
        tail = sum(curve[-10:]) / len(curve[-10:])
        base = base or (curve[-1], tail)
        print(
            f"| {policy} | {curve[0]:.4f} | {curve[-1]:.4f} | {curve[-1] / base[0]:.3f} | "
            f"{tail / base[1]:.3f} | {wall:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
