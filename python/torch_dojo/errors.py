"""Where in the user's model an error comes from.

Dynamo records, per FX node, the stack of the model code that created it
(``node.meta["stack_trace"]``). The compiler only knows node names, so
:func:`model_source_on_error` appends the model's source line to an
:class:`~torch_dojo.UnsupportedOpError` for every FX node the error lists in ``ops``.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator

import torch
import torch.fx

from ._native import UnsupportedOpError

__all__ = ["source_lines", "model_source_on_error", "with_model_source"]

# The innermost frame of a stack trace: `File "x.py", line 12, in forward` + the code line.
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>[^\n]+)\n(?P<code>[^\n]*)')


def source_lines(gm: torch.fx.GraphModule) -> dict[str, str]:
    """Node name → ``"file:line in func: code"`` of the model line that made it."""
    found: dict[str, str] = {}
    for node in gm.graph.nodes:
        trace = node.meta.get("stack_trace") or getattr(node, "stack_trace", None)
        if not trace:
            continue
        frames = list(_FRAME.finditer(trace))
        if frames:
            # The innermost frame of the user's code, not of torch.nn internals.
            own = [f for f in frames if not f["file"].startswith(_TORCH_DIR)]
            f = (own or frames)[-1]
            found[node.name] = f"{f['file']}:{f['line']} in {f['func'].strip()}: {f['code'].strip()}"
    return found


@contextlib.contextmanager
def model_source_on_error(gm: torch.fx.GraphModule) -> Iterator[None]:
    """Re-raise an UnsupportedOpError from the block with the model source line of every node
    it lists (when Dynamo recorded one)."""
    try:
        yield
    except UnsupportedOpError as err:
        if err.args:
            err.args = (with_model_source(err.args[0], gm, getattr(err, "ops", None) or ()),) + err.args[1:]
        raise


def with_model_source(message: str, gm: torch.fx.GraphModule, ops) -> str:
    """``message`` followed by the model source line of every FX node in ``ops`` (tuples whose
    second entry is the node name), when Dynamo recorded one."""
    lines = source_lines(gm) if ops else {}
    where = []
    for op in ops:
        node = op[1] if len(op) > 1 else None
        if node in lines and f"`{node}`: {lines[node]}" not in where:
            where.append(f"`{node}`: {lines[node]}")
    if not where:
        return message
    return f"{message}\nIn the model:\n" + "\n".join(f"  {w}" for w in where)
