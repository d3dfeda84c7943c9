"""Simulation throughput (issue 8): the wall time of a run on the simulated mesh against
eager PyTorch on the same CPU, in the same process (medians of warm calls, eager and dojo
called in turn so that a busy machine slows both alike). The ratio is against the faster of
eager with torch's default threads and eager on one thread: on a busy machine the default
threads can spend far longer waiting for each other than computing.

    .venv/bin/python benchmarks/sim.py [--precision fp32,cfloat8] [resnet18] [gpt2-train]
    (make bench-sim)

- resnet18 forward, f32 inputs, on ``d1``: the issue's batch 8 at 224 x 224 first, then the
  configurations that fit d1 today (1 x 224 x 224, and 2 x 64 x 64 as tests/python/test_models.py
  runs it). Goal <= 3x eager; under ``precision="cfloat8"`` <= 5x. A precision the backend
  rejects prints "n/a (precision not available)"; a graph that does not fit prints the
  compiler's reason.
- Training step of the tiny GPT-2 of tests/python/test_models.py (forward, loss, backward),
  goal <= 3x eager.

Each configuration runs in a fresh process (cold compile cache). Not a test: it prints ratios
against goals and always exits 0.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import child, emit, interleaved_medians, ratio_line  # noqa: E402

RESNET_CONFIGS = ((8, 224), (1, 224), (2, 64))
GOALS = {"fp32": 3.0, "cfloat8": 5.0}
REPEAT = 7
#: Rounds for the tiny GPT-2's training step (about 20 ms a side): seven medians of such short
#: steps moved by +-20 % from one run of the script to the next on this machine.
REPEAT_SHORT = 31


def _one_thread(fn):
    """``fn`` with torch on one intra-op thread: a reference that a busy machine (where torch's
    threads wait for each other) distorts less."""
    import torch

    def run():
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(n)

    return run


def _rejected(e: BaseException) -> str | None:
    """'precision' when ``e`` (or what it wraps) says the precision option is rejected, the
    first line of a capacity error, else None."""
    from torch_dojo import CapacityError, InvalidInputError

    seen = e
    while seen is not None:
        if isinstance(seen, InvalidInputError) and "precision" in str(seen):
            return "precision not available"
        if isinstance(seen, CapacityError):
            return f"does not fit: {str(seen).splitlines()[0][:150]}"
        seen = seen.__cause__ or seen.__context__
    return None


def child_resnet18(batch: int, size: int, precision: str) -> None:
    import torch
    import torchvision

    import torch_dojo  # noqa: F401
    from torch_dojo import backend

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = model(x)
        model(x)
        compiled = torch.compile(model, backend="dojo", options={"mesh": "d1", "precision": precision})
        try:
            got = compiled(x)
        except Exception as e:  # noqa: BLE001 - the reason is the result
            reason = _rejected(e)
            emit({"na": reason or f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"})
            return
        eager, dojo, eager1 = interleaved_medians([lambda: model(x), lambda: compiled(x), _one_thread(lambda: model(x))], REPEAT)
    records = backend.compiled_graphs
    emit(
        {
            "eager": eager,
            "dojo": dojo,
            "eager_1_thread": eager1,
            "sim_run": getattr(records[-1], "last_run_seconds", None) if records else None,
            "max_rel_diff": ((got - want).abs().max() / want.abs().max()).item(),
        }
    )


def child_gpt2_train(precision: str) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
    import test_models as tm

    import torch_dojo  # noqa: F401

    torch.manual_seed(0)
    model, inputs = tm.gpt2()
    model.train()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, backend="dojo", options={"mesh": "d1", "precision": precision})

    def step(m):
        def run():
            m.zero_grad(set_to_none=True)
            loss = tm.logits(m(*inputs)).square().mean()
            loss.backward()
            return loss

        return run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step(reference)()
        try:
            step(compiled)()
        except Exception as e:  # noqa: BLE001
            reason = _rejected(e)
            emit({"na": reason or f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"})
            return
        eager, dojo, eager1 = interleaved_medians([step(reference), step(compiled), _one_thread(step(reference))], REPEAT_SHORT)
    emit({"eager": eager, "dojo": dojo, "eager_1_thread": eager1})


def report(name: str, r: dict, goal: float) -> None:
    if "error" in r:
        print(ratio_line(name, None, goal, note=f"(failed: {r['error']})"))
    elif "na" in r:
        print(ratio_line(name, None, goal, note=f"({r['na']})"))
    else:
        # Against the faster eager: torch's default threads, or one thread (on a busy machine
        # the default threads can wait for each other many times longer than they compute).
        best = min(r["eager"], r.get("eager_1_thread", r["eager"]))
        note = f"(vs eager default threads {r['dojo'] / r['eager']:.2f}x"
        if "eager_1_thread" in r:
            note += f", 1 thread {r['dojo'] / r['eager_1_thread']:.2f}x"
        note += ")"
        if "max_rel_diff" in r:
            note += f" (max rel diff {r['max_rel_diff']:.1e})"
        print(ratio_line(name, r["dojo"] / best, goal, note=note))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        what, *rest = sys.argv[2:]
        if what == "resnet18":
            child_resnet18(int(rest[0]), int(rest[1]), rest[2])
        elif what == "gpt2-train":
            child_gpt2_train(rest[0])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32,cfloat8", help="comma-separated precision policies")
    parser.add_argument("parts", nargs="*", default=["resnet18", "gpt2-train"])
    args = parser.parse_args()
    precisions = [p for p in args.precision.split(",") if p]
    print("== simulation throughput: wall time of a simulated run / eager PyTorch, same process, warm medians", flush=True)
    for part in args.parts:
        for precision in precisions:
            goal = GOALS.get(precision, 3.0)
            if part == "resnet18":
                for batch, size in RESNET_CONFIGS:
                    r = child(__file__, ["--child", "resnet18", str(batch), str(size), precision])
                    report(f"resnet18 fwd {batch}x3x{size}x{size} d1 {precision} / eager", r, goal)
                    sys.stdout.flush()
            elif part == "gpt2-train":
                r = child(__file__, ["--child", "gpt2-train", precision])
                report(f"tiny GPT-2 training step d1 {precision} / eager", r, goal)
                sys.stdout.flush()


if __name__ == "__main__":
    main()
