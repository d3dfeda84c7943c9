"""The persistent compile cache: a second process skips the compiler, corrupt entries are
recompiled (never run), writes are atomic, and the cache can be moved or turned off.

Every test has its own cache directory (the autouse `isolated_cache` fixture in conftest)."""

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import torch_dojo
from torch_dojo import backend, cache

# Compiles and trains one step of an MLP; prints per graph where it came from and how long it
# took, and the gradients. With --forbid-compiler the native compiler raises if called.
CHILD = textwrap.dedent(
    """
    import json, sys
    import torch, torch_dojo
    from torch_dojo import _native, backend
    if "--forbid-compiler" in sys.argv:
        def forbidden(*a, **k):
            raise AssertionError("the compiler ran although the cache holds this graph")
        _native.compile_graph = forbidden
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    x = torch.randn(64, 256)
    torch.compile(model, backend="dojo")(x).square().mean().backward()
    print(json.dumps({
        "graphs": [[r.name, r.compiled_by, r.compile_seconds] for r in backend.compiled_graphs],
        "grad": model[0].weight.grad.sum().item(),
    }))
    """
)


def run_child(tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_every_graph_from_the_cache(tmp_path, isolated_cache):
    first = run_child(tmp_path)
    second = run_child(tmp_path, "--forbid-compiler")
    assert [(n, by) for n, by, _ in first["graphs"]] == [("forward", "compiler"), ("backward", "compiler")]
    assert [(n, by) for n, by, _ in second["graphs"]] == [("forward", "cache"), ("backward", "cache")]
    assert second["grad"] == first["grad"]  # the loaded Program computes the same, bit for bit
    assert len(list(isolated_cache.glob("*.dojo"))) == 2
    compile_s = sum(s for _, _, s in first["graphs"])
    load_s = sum(s for _, _, s in second["graphs"])
    print(
        f"\ncompile cache: compiling 2 graphs took {compile_s * 1e3:.1f} ms, loading them "
        f"{load_s * 1e3:.1f} ms: {compile_s / load_s:.2f}x"
    )


def mlp_step(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ x.T).sum(1)


def compile_and_run(x: torch.Tensor) -> torch.Tensor:
    """Compiles and runs, then waits for the background cache write."""
    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(mlp_step, backend="dojo")(x)
    cache.flush()
    return out


def only_entry(directory: Path) -> Path:
    (entry,) = directory.glob("*.dojo")
    return entry


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))


def garbage_program_with_a_valid_checksum(path: Path) -> None:
    """Checksums only catch damage; a well-formed entry whose Program does not validate must
    be refused by the native validation."""
    import hashlib

    head, _, body = path.read_bytes().partition(b"\n")
    header = json.loads(head)
    program = json.loads(body[: header["program_bytes"]])
    program["instrs"] = program["instrs"][: len(program["instrs"]) // 2]  # frees, stores missing
    program["buffers"] = program["buffers"][:1]
    new_program = json.dumps(program).encode()
    rest = body[header["program_bytes"] :]
    header.update(program_bytes=len(new_program), sha256=hashlib.sha256(new_program + rest).hexdigest())
    path.write_bytes(json.dumps(header).encode() + b"\n" + new_program + rest)


@pytest.mark.parametrize(
    "damage, why",
    [(truncate, "truncated"), (flip_a_byte, "checksum mismatch"), (garbage_program_with_a_valid_checksum, "saved Program")],
)
def test_a_corrupt_entry_is_recompiled_with_a_warning(isolated_cache, damage, why):
    x = torch.randn(16, 16)
    want = compile_and_run(x)
    entry = only_entry(isolated_cache)
    damage(entry)

    with pytest.warns(RuntimeWarning, match=r"compile cache entry .*\.dojo is corrupt .*compiled again") as record:
        got = compile_and_run(x)
    assert why in str(record[0].message), str(record[0].message)
    assert backend.compiled_graphs[-1].compiled_by == "compiler"
    torch.testing.assert_close(got, want, rtol=0, atol=0)

    # The entry was rewritten whole: the next compile loads it.
    compile_and_run(x)
    assert backend.compiled_graphs[-1].compiled_by == "cache"


def test_the_key_covers_graph_input_shapes_and_options():
    compile_and_run(torch.randn(16, 16))
    compile_and_run(torch.randn(16, 16))
    assert backend.compiled_graphs[-1].compiled_by == "cache"
    compile_and_run(torch.randn(8, 16))  # other input shape: other graph
    assert backend.compiled_graphs[-1].compiled_by == "compiler"
    graph = '{"name": "g"}'
    assert cache.entry_key(graph, {"mesh": "d1"}) == cache.entry_key(graph, {"mesh": "d1", "dump_ir": True})
    assert cache.entry_key(graph, {"mesh": "d1"}) != cache.entry_key(graph, {"mesh": "d1:4x4"})


def test_dojo_cache_0_turns_it_off(isolated_cache, monkeypatch):
    monkeypatch.setenv("DOJO_CACHE", "0")
    compile_and_run(torch.randn(16, 16))
    compile_and_run(torch.randn(16, 16))
    assert [r.compiled_by for r in backend.compiled_graphs[-2:]] == ["compiler", "compiler"]
    assert not list(isolated_cache.iterdir())


def test_configure_overrides_the_environment(tmp_path, isolated_cache):
    try:
        cache.configure(directory=tmp_path / "elsewhere")
        compile_and_run(torch.randn(16, 16))
        assert len(list((tmp_path / "elsewhere").glob("*.dojo"))) == 1
        assert cache.clear() == 1
        cache.configure(enabled=False)
        compile_and_run(torch.randn(16, 16))
        assert backend.compiled_graphs[-1].compiled_by == "compiler"
    finally:
        cache.configure()
    assert not list(isolated_cache.iterdir())


def test_default_directory_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("DOJO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.directory() == tmp_path / "xdg" / "torch_dojo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.directory() == tmp_path / "home" / ".cache" / "torch_dojo"


def test_concurrent_writers_never_leave_a_partial_entry(isolated_cache):
    """Writers race on one key while a reader loads it: every load is None (not there yet) or a
    whole, valid graph; afterwards no temporary file is left behind."""
    compile_and_run(torch.randn(16, 16))
    entry = only_entry(isolated_cache)
    key = entry.stem
    graph = backend.compiled_graphs[-1].graph
    entry.unlink()
    errors: list[BaseException] = []
    stop = threading.Event()

    def write():
        try:
            for _ in range(20):
                cache._store(entry, key, graph)
        except BaseException as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    def read():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a partial entry would warn "corrupt"
            while not stop.is_set():
                try:
                    loaded = cache._load(entry, key)
                    assert loaded is None or loaded.program_json() == graph.program_json()
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
                    return

    writers = [threading.Thread(target=write) for _ in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert not errors, errors
    assert [p.name for p in isolated_cache.iterdir()] == [entry.name]


def test_an_unwritable_cache_directory_does_not_stop_compiling(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("DOJO_CACHE_DIR", str(blocker / "cache"))
    got = compile_and_run(torch.eye(4))
    torch.testing.assert_close(got, torch.ones(4))
    assert "cannot write the compile cache entry" in caplog.text and "DOJO_CACHE_DIR" in caplog.text


def test_the_public_module_is_reachable():
    assert torch_dojo.cache is cache


def test_the_cache_keeps_under_its_size_limit_dropping_least_recently_used(isolated_cache):
    import time

    entries = []
    for n in (4, 5, 6):  # three entries, written oldest first
        compile_and_run(torch.randn(n, 16))
        (new,) = set(isolated_cache.glob("*.dojo")) - set(entries)
        entries.append(new)
    for age, entry in zip((30, 20, 10), entries):
        os.utime(entry, ns=(time.time_ns() - age * 10**9,) * 2)
    compile_and_run(torch.randn(4, 16))  # a load makes the oldest entry the most recently used
    assert backend.compiled_graphs[-1].compiled_by == "cache"

    sizes = sorted(p.stat().st_size for p in entries)
    limit = (sizes[-1] + sizes[-2]) * 4 // 3 + 1  # two entries fit under 3/4 of it, three do not
    assert cache.prune(limit=limit) == 1
    assert set(isolated_cache.glob("*.dojo")) == {entries[0], entries[2]}  # the 5x16 one went
    assert cache.prune(limit=10**12) == 0
