"""Fallback partitioning: run what torch-dojo supports on the mesh and the rest eagerly.

The compiler says which nodes of a graph it cannot run (``_native.unsupported_ops``, the
same check ``legalize-aten`` makes, so the answer is exact); nodes the capture cannot even
describe are unsupported too. ``CapabilityBasedPartitioner`` groups the supported nodes into
``fused_*`` submodules, each compiled for the mesh; the unsupported nodes stay in the outer
graph and run in eager PyTorch.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupport

from . import _native
from .capture import capture

__all__ = ["Unsupported", "find_unsupported", "split", "format_unsupported"]


@dataclass
class Unsupported:
    """The nodes of one graph that cannot run on the mesh."""

    #: FX node names.
    nodes: set[str] = field(default_factory=set)
    #: (overload, node, operand types) for the message, in graph order.
    ops: list[tuple[str, str, str]] = field(default_factory=list)
    #: call_function nodes in the graph (for counts).
    total: int = 0
    #: Graph constants (get_attr): the graph must be split so parts take them as inputs.
    constants: int = 0

    @property
    def needs_split(self) -> bool:
        return bool(self.nodes) or self.constants > 0


def _describe(node: torch.fx.Node) -> tuple[str, str, str]:
    from .capture import _operand_types, _target_name

    return (_target_name(node.target) if node.op == "call_function" else node.op, node.name, _operand_types(node))


def find_unsupported(gm: torch.fx.GraphModule, name: str) -> Unsupported:
    """Every node of ``gm`` torch-dojo cannot run, asked of the compiler in one call."""
    skipped: list[str] = []
    graph_json = json.dumps(capture(gm, name, skipped=skipped), allow_nan=False)
    from_compiler = {node for _, node, _ in _native.unsupported_ops(graph_json)}
    result = Unsupported()
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            result.constants += 1
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        result.total += 1
        if node.name in from_compiler or node.name in skipped:
            result.nodes.add(node.name)
            result.ops.append(_describe(node))
    return result


def format_unsupported(graph: str, unsupported: Unsupported) -> str:
    lines = "\n".join(f"  {t} (node `{n}`) on {o}" for t, n, o in unsupported.ops)
    return (
        f"torch-dojo runs {len(unsupported.nodes)} of {unsupported.total} node(s) of the {graph} graph "
        f"eagerly on the host (not supported on the mesh yet):\n{lines}"
    )


class _Support(OperatorSupport):
    def __init__(self, unsupported: set[str]):
        super().__init__()
        self.unsupported = unsupported

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        if node.op != "call_function":
            return False
        if node.target is operator.getitem:
            source = node.args[0]
            return isinstance(source, torch.fx.Node) and self.is_node_supported(submodules, source)
        return isinstance(node.target, torch._ops.OpOverload) and node.name not in self.unsupported


class _OnMesh(torch.nn.Module):
    """A fused submodule replaced by its compiled runner."""

    def __init__(self, runner: Callable, single: bool):
        super().__init__()
        self.runner = runner
        self.single = single

    def forward(self, *args):
        outs = self.runner(list(args))
        return outs[0] if self.single else tuple(outs)


def split(gm: torch.fx.GraphModule, unsupported: Unsupported, compile_part: Callable) -> torch.fx.GraphModule:
    """``gm`` with its supported regions replaced by ``compile_part(submodule, index)`` runners.

    ``compile_part`` returns a boxed callable (list of tensors in, list out), as the compiler
    for a whole graph does.
    """
    partitioner = CapabilityBasedPartitioner(gm, _Support(unsupported.nodes), allows_single_node_partition=True)
    partitions = partitioner.propose_partitions()
    fused = partitioner.fuse_partitions(partitions)
    index = 0
    for node in list(fused.graph.nodes):
        if node.op != "call_module" or not str(node.target).startswith("fused_"):
            continue
        sub = getattr(fused, node.target)
        out_node = next(n for n in sub.graph.nodes if n.op == "output")
        single = not isinstance(out_node.args[0], (tuple, list))
        runner = compile_part(sub, index)
        setattr(fused, node.target, _OnMesh(runner, single))
        index += 1
    fused.recompile()
    return fused
