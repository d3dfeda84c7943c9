"""PyTorch's OpInfo database through torch.compile(backend="dojo"), against a checked-in table.

Every op_db entry with float32 on CPU has an expected status in ``tests/opinfo/expected.tsv``
(mesh / fallback / wrong / crash / error / skip; see ``tests/opinfo/sweep.py``). The test runs
the entries in worker processes and fails when any status differs from the table, in either
direction: an entry that got worse is a regression, one that got better means the table must
be updated to lock the gain in.

    pytest tests/python                                   a stratified subset (every Nth entry)
    DOJO_OPINFO_FULL=1 pytest tests/python/test_opinfo.py every entry (`make test-opinfo`)
    DOJO_OPINFO_UPDATE=1 make test-opinfo                 rewrite the table from a full sweep
    DOJO_OPINFO_JOBS=N                                    worker processes (default 2)
"""

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "opinfo"))
import opinfo_sweep as sweep  # noqa: E402

FULL = os.environ.get("DOJO_OPINFO_FULL", "") == "1"
UPDATE = os.environ.get("DOJO_OPINFO_UPDATE", "") == "1"
JOBS = int(os.environ.get("DOJO_OPINFO_JOBS", "2"))
REGENERATE = "DOJO_OPINFO_UPDATE=1 make test-opinfo"


def test_opinfo_sweep_matches_the_table(capsys):
    keys = sweep.all_keys()
    table = sweep.read_table()
    if not FULL:
        keys = sweep.subset(keys)
    if not table and not UPDATE:
        pytest.fail(f"{sweep.TABLE} is missing; generate it with `{REGENERATE}`")

    with capsys.disabled():
        tty = sys.stdout.isatty()

    def progress(r, done, total):
        if FULL and (tty or done % 50 == 0 or done == total):
            with capsys.disabled():
                line = f"[{done}/{total}] {r.status:8s} {r.key}"
                print(f"\r{line:80.80s}" if tty else line, end="" if tty else "\n", flush=True)

    start = time.monotonic()
    results = sweep.sweep(keys, JOBS, progress)
    seconds = time.monotonic() - start
    sweep.save_results(results)
    what = "full sweep" if FULL else f"subset (every {sweep.SUBSET_STRIDE}th entry)"
    with capsys.disabled():
        print(f"\n{what}: {len(keys)} entries in {seconds:.0f} s with {JOBS} worker(s); details in {sweep.RESULTS}")
        print(sweep.report(results))

    if UPDATE:
        sweep.update_table(results, keys, full=FULL)
        with capsys.disabled():
            print(f"rewrote {sweep.TABLE}" + ("" if FULL else " (the rows of the subset only)"))
        return
    diff = sweep.compare(results, table, full=FULL)
    assert not diff, (
        f"{len(diff)} OpInfo entr{'y' if len(diff) == 1 else 'ies'} differ from {sweep.TABLE.name}:\n"
        + "\n".join(diff)
        + f"\nIf the change is intended (an op now runs on the mesh, say), regenerate the table with "
        f"`{REGENERATE}` and commit it; a WORSE entry is a regression to fix instead."
    )


def test_the_subset_is_stratified_and_deterministic():
    keys = [f"op{i:03d}" for i in range(100)]
    chosen = sweep.subset(keys)
    assert chosen == sweep.subset(list(keys)) == keys[:: sweep.SUBSET_STRIDE]


def test_table_round_trips(tmp_path):
    rows = {("add", ""): ("mesh", ""), ("sum", "dim"): ("crash", "InvalidInputError: internal error: x\ty")}
    path = tmp_path / "t.tsv"
    sweep.write_table(rows, path)
    assert sweep.read_table(path) == {"add": ("mesh", ""), "sum.dim": ("crash", "InvalidInputError: internal error: x y")}


def test_compare_reports_both_directions():
    R = sweep.Result
    results = {"a": R("a", "", "mesh"), "b": R("b", "", "wrong", "output: 1 != 2"), "c": R("c", "", "fallback")}
    table = {"a": ("fallback", ""), "b": ("mesh", ""), "c": ("fallback", ""), "d": ("mesh", "")}
    diff = sweep.compare(results, table, full=True)
    assert any("better" in line and " a:" in line for line in diff)
    assert any("WORSE" in line and " b:" in line and "1 != 2" in line for line in diff)
    assert any("gone" in line and " d:" in line for line in diff)
    assert not any(" c:" in line for line in diff)


def test_compare_outputs():
    import torch

    sweep._compare((torch.ones(2), [1, None], 3.0), (torch.ones(2), [1, None], 3.0))
    sweep._compare(float("nan"), float("nan"))
    for got, want in [
        (torch.ones(2), torch.ones(2) * 1.01),
        (torch.ones(2), torch.ones(2, dtype=torch.float64)),
        (torch.ones(2), 1.0),
        ((torch.ones(2),), (torch.ones(2), torch.ones(2))),
        (True, False),
    ]:
        with pytest.raises(AssertionError):
            sweep._compare(got, want)
