"""Turn an AOTAutograd FX graph (aten OpOverloads) into the JSON graph description that
``_native.compile_graph`` reads.

Format (one object per graph)::

    {"name": "forward",
     "inputs":  [{"name": "primals_1", "shape": [128, 64], "dtype": "f32"}],
     "nodes":   [{"name": "permute", "target": "aten.permute.default",
                  "operands": ["primals_1"],
                  "attrs": [{"name": "dims", "kind": "ints", "value": [1, 0]}],
                  "outputs": [{"shape": [64, 128], "dtype": "f32"}]}],
     "outputs": ["addmm_1", "primals_3", null]}

* Arguments are normalised against ``target._schema``: names come from the schema, defaults
  are filled in, and the order is the schema's.
* Tensor arguments (``Tensor``, ``Tensor?`` that is not None) are ``operands``, in schema order.
  A ``Tensor?`` that is None becomes the attr ``{"name": <arg>, "kind": "none"}`` so operand
  positions stay unambiguous, and a Python number given for a Tensor argument (decompositions
  write ``aten.mul.Tensor(x, 2)``) becomes an attr of kind int, float or bool. A ``Tensor[]`` adds one operand per element and the attr
  ``<arg>_count`` (kind int); if a ``Tensor?[]`` holds None entries, the attr
  ``<arg>_none_at`` (kind ints) lists their positions (they are not operands).
* Every other argument is an attr with kind int, float, bool, str, ints, floats, bools, none,
  dtype ("f32", "bool", "i64", ...), device, layout or memory_format (the last three as str).
  Floats that JSON cannot hold are the strings "inf", "-inf" and "nan".
* A node with several results (a tuple or list value) has one entry per result in
  ``outputs`` (null for a result that is None); its results are named ``<node>#<i>`` and
  ``operator.getitem`` nodes disappear into those names. A bare node name means result 0.
* A graph output that is None (the gradient of a non-differentiable input) is null.
* ``nodes`` follow the graph's order, except that a node only returned and computed from one
  other node comes right after that node (``_schedule``).
"""

from __future__ import annotations

import json
import math
import operator
from typing import Any

import torch
import torch.fx

from ._native import InvalidInputError, UnsupportedOpError

__all__ = ["capture", "capture_json", "dtype_name"]

_DTYPE_NAMES = {
    torch.float32: "f32",
    torch.float64: "f64",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.bool: "bool",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.int16: "i16",
    torch.int8: "i8",
    torch.uint8: "u8",
}

_DYNAMIC = "dynamic shapes are not supported yet; use torch.compile(..., dynamic=False)"


def dtype_name(dtype: torch.dtype) -> str:
    """The graph-format name of a torch dtype ("f32", "bool", "i64", ... or the torch name)."""
    return _DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))


def capture_json(gm: torch.fx.GraphModule, name: str) -> str:
    """The graph description of ``gm`` as a JSON string."""
    return json.dumps(capture(gm, name), allow_nan=False)


def capture(gm: torch.fx.GraphModule, name: str, skipped: list[str] | None = None) -> dict[str, Any]:
    """The graph description of ``gm`` as a dict (see the module doc).

    With ``skipped`` (a list), nodes that cannot be described (non-aten calls, graph
    constants, symbolic sizes, unknown dtypes) do not raise: their tensor results become graph
    inputs, and their names are appended to ``skipped``. Fallback partitioning uses this to
    ask the compiler about every other node at once.
    """
    if skipped is not None:
        return _capture_lenient(gm, name, skipped)
    values: dict[torch.fx.Node, str | list[str | None]] = {}
    inputs: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    outputs: list[str | None] = []
    not_ops: list[tuple[str, str, str]] = []

    for node in _schedule(gm.graph):
        if node.op == "placeholder":
            val = node.meta.get("val")
            if not isinstance(val, torch.Tensor):
                if isinstance(val, (torch.SymInt, torch.SymFloat, int, float)):
                    raise UnsupportedOpError(f"graph input `{node.name}` is a symbolic size: {_DYNAMIC}")
                raise InvalidInputError(f"graph input `{node.name}` is not a tensor ({type(val).__name__})")
            inputs.append({"name": node.name, **_tensor_type(val, node)})
            values[node] = node.name
        elif node.op == "get_attr":
            raise _unsupported(
                f"graph constants are not supported yet: `{node.name}` reads the attribute "
                f"`{node.target}` (a tensor created inside forward, or a frozen parameter)",
                [("get_attr", node.name, str(node.target))],
            )
        elif node.op == "call_function" and node.target is operator.getitem:
            source, index = node.args
            results = values.get(source)
            if not isinstance(results, list) or not isinstance(index, int):
                raise InvalidInputError(f"`{node.name}`: getitem on a value without several results")
            values[node] = results[index]
        elif node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            entry, names = _op_node(node, values)
            nodes.append(entry)
            values[node] = names
        elif node.op == "call_function":
            not_ops.append((_target_name(node.target), node.name, _operand_types(node)))
        elif node.op == "output":
            (results,) = node.args
            for r in results if isinstance(results, (list, tuple)) else [results]:
                outputs.append(None if r is None else _value(r, values, "graph output"))
        else:
            raise InvalidInputError(f"`{node.name}`: FX op `{node.op}` is not expected in an AOTAutograd graph")

    if not_ops:
        lines = "\n".join(f"  {t} (node `{n}`) on {o}" for t, n, o in not_ops)
        raise _unsupported(
            f"torch-dojo cannot run {len(not_ops)} non-aten call(s) of this graph:\n{lines}", not_ops
        )
    return {"name": name, "inputs": inputs, "nodes": nodes, "outputs": outputs}


def _schedule(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The graph's nodes in order, except that a node computed from one other node and only
    returned (a saved activation's transpose or view, which AOTAutograd's min-cut partitioner
    puts at the end of the forward) comes right after that node: its operand is then not kept
    in SRAM to the end, and the compiler stores it as soon as it is made. Random ops keep their
    place (their draws follow graph order)."""

    def late(n: torch.fx.Node) -> bool:
        random = isinstance(n.target, torch._ops.OpOverload) and torch.Tag.nondeterministic_seeded in n.target.tags
        return n.op == "call_function" and not random and len(n.all_input_nodes) == 1 and bool(n.users) and all(u.op == "output" for u in n.users)

    moved = {n for n in graph.nodes if late(n)}
    after: dict[torch.fx.Node, list[torch.fx.Node]] = {}
    for n in graph.nodes:
        if n in moved:
            after.setdefault(n.all_input_nodes[0], []).append(n)
    order: list[torch.fx.Node] = []
    # A moved node feeds only the output, so no moved node follows another.
    for n in graph.nodes:
        if n not in moved:
            order.append(n)
            order.extend(after.get(n, []))
    return order


def _op_node(node: torch.fx.Node, values: dict) -> tuple[dict[str, Any], str | list[str | None]]:
    target: torch._ops.OpOverload = node.target
    schema = target._schema
    operands: list[str] = []
    attrs: list[dict[str, Any]] = []
    bound = _bind(node, schema)
    for arg in schema.arguments:
        value = bound[arg.name]
        tensor_kind = _tensor_kind(arg.type)
        if tensor_kind == "tensor":
            if isinstance(value, torch.fx.Node):
                operands.append(_value(value, values, f"`{node.name}` argument `{arg.name}`"))
            else:  # None for an absent Tensor?, or a Python number (aten.mul.Tensor(x, 2))
                attrs.append({"name": arg.name, **_attr(value, arg.type, node, arg.name)})
        elif tensor_kind == "list":
            present = [v for v in value if v is not None]
            operands += [_value(v, values, f"`{node.name}` argument `{arg.name}`") for v in present]
            attrs.append({"name": f"{arg.name}_count", "kind": "int", "value": len(present)})
            none_at = [i for i, v in enumerate(value) if v is None]
            if none_at:
                attrs.append({"name": f"{arg.name}_none_at", "kind": "ints", "value": none_at})
        else:
            attrs.append({"name": arg.name, **_attr(value, arg.type, node, arg.name)})

    val = node.meta.get("val")
    if isinstance(val, (tuple, list)):
        outs = [None if v is None else _tensor_type(v, node) for v in val]
        names: str | list[str | None] = [None if v is None else f"{node.name}#{i}" for i, v in enumerate(val)]
    elif isinstance(val, torch.Tensor):
        outs = [_tensor_type(val, node)]
        names = node.name
    elif isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise UnsupportedOpError(f"`{node.name}` ({_target_name(target)}) computes a symbolic size: {_DYNAMIC}")
    else:
        raise InvalidInputError(f"`{node.name}` ({_target_name(target)}) has no tensor metadata (meta['val'])")
    entry = {
        "name": node.name,
        "target": _target_name(target),
        "operands": operands,
        "attrs": attrs,
        "outputs": outs,
    }
    return entry, names


def _bind(node: torch.fx.Node, schema) -> dict[str, Any]:
    """Arguments by schema name, defaults filled in."""
    positional = [a for a in schema.arguments if not a.kwarg_only]
    if len(node.args) > len(positional):
        raise InvalidInputError(f"`{node.name}`: {len(node.args)} positional arguments for schema {schema}")
    bound = {a.name: v for a, v in zip(positional, node.args)}
    for key, v in node.kwargs.items():
        if key in bound:
            raise InvalidInputError(f"`{node.name}`: argument `{key}` given twice")
        bound[key] = v
    known = {a.name for a in schema.arguments}
    if extra := set(bound) - known:
        raise InvalidInputError(f"`{node.name}`: unknown argument(s) {sorted(extra)} for schema {schema}")
    for a in schema.arguments:
        if a.name not in bound:
            if not a.has_default_value():
                raise InvalidInputError(f"`{node.name}`: missing argument `{a.name}` of schema {schema}")
            bound[a.name] = a.default_value
    return bound


def _tensor_kind(t) -> str | None:
    """"tensor" for Tensor / Tensor?, "list" for Tensor[] / Tensor?[], None otherwise."""
    if isinstance(t, torch.OptionalType):
        t = t.getElementType()
    if isinstance(t, torch.TensorType):
        return "tensor"
    if isinstance(t, torch.ListType):
        e = t.getElementType()
        if isinstance(e, torch.OptionalType):
            e = e.getElementType()
        if isinstance(e, torch.TensorType):
            return "list"
    return None


def _attr(value: Any, schema_type, node: torch.fx.Node, name: str) -> dict[str, Any]:
    where = f"`{node.name}` argument `{name}`"
    if isinstance(value, (torch.fx.Node, torch.SymInt, torch.SymFloat, torch.SymBool)):
        raise UnsupportedOpError(f"{where} is a symbolic value: {_DYNAMIC}")
    if value is None:
        return {"kind": "none", "value": None}
    if isinstance(value, bool):
        return {"kind": "bool", "value": value}
    if isinstance(value, int):
        return {"kind": "int", "value": value}
    if isinstance(value, float):
        return {"kind": "float", "value": _float(value)}
    if isinstance(value, str):
        return {"kind": "str", "value": value}
    if isinstance(value, torch.dtype):
        return {"kind": "dtype", "value": dtype_name(value)}
    if isinstance(value, torch.device):
        return {"kind": "device", "value": str(value)}
    if isinstance(value, torch.layout):
        return {"kind": "layout", "value": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"kind": "memory_format", "value": str(value).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (torch.fx.Node, torch.SymInt, torch.SymFloat, torch.SymBool)) for v in value):
            raise UnsupportedOpError(f"{where} holds symbolic values: {_DYNAMIC}")
        element = str(schema_type.getElementType()) if isinstance(schema_type, torch.ListType) else ""
        if all(isinstance(v, bool) for v in value) and (value or element == "bool"):
            return {"kind": "bools", "value": list(value)}
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value) and (
            value or element in ("int", "SymInt")
        ):
            return {"kind": "ints", "value": list(value)}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return {"kind": "floats", "value": [_float(float(v)) for v in value]}
    raise InvalidInputError(f"{where}: cannot describe a value of type {type(value).__name__} ({value!r})")


def _float(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _tensor_type(val: Any, node: torch.fx.Node) -> dict[str, Any]:
    if not isinstance(val, torch.Tensor):
        raise InvalidInputError(f"`{node.name}`: expected a tensor value, got {type(val).__name__}")
    shape = []
    for d in val.shape:
        if not isinstance(d, int):
            raise UnsupportedOpError(f"`{node.name}` has the symbolic shape {list(val.shape)}: {_DYNAMIC}")
        shape.append(d)
    return {"shape": shape, "dtype": dtype_name(val.dtype)}


def _value(arg: Any, values: dict, where: str) -> str:
    if not isinstance(arg, torch.fx.Node) or arg not in values:
        raise InvalidInputError(f"{where}: expected a tensor value of the graph, got {arg!r}")
    name = values[arg]
    if not isinstance(name, str):
        raise InvalidInputError(f"{where}: `{arg.name}` has several results; expected one of them")
    return name


def _target_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        # "aten::permute" + "default" -> "aten.permute.default"
        return f"{target._schema.name.replace('::', '.')}.{target._overloadname}"
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)


def _operand_types(node: torch.fx.Node) -> str:
    parts = []
    for a in node.args:
        val = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
        if isinstance(val, torch.Tensor):
            parts.append(f"{dtype_name(val.dtype)}{list(val.shape)}")
    return "[" + ", ".join(parts) + "]"


def _unsupported(message: str, ops: list[tuple[str, str, str]]) -> UnsupportedOpError:
    err = UnsupportedOpError(message)
    err.ops = tuple(ops)
    return err


#: Dtypes the native import reads (others, e.g. complex or unsigned, stay on the host).
_IMPORTABLE = {"f32", "f64", "f16", "bf16", "bool", "i8", "i16", "i32", "i64"}


def _capture_lenient(gm: torch.fx.GraphModule, name: str, skipped: list[str]) -> dict[str, Any]:
    values: dict[torch.fx.Node, str | list[str | None]] = {}
    inputs: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    outputs: list[str] = []

    def as_input(node: torch.fx.Node) -> None:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and dtype_name(val.dtype) in _IMPORTABLE:
            try:
                inputs.append({"name": node.name, **_tensor_type(val, node)})
                values[node] = node.name
            except (UnsupportedOpError, InvalidInputError):
                pass

    for node in gm.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            if node.op == "get_attr":
                skipped.append(node.name)
            as_input(node)
        elif node.op == "call_function":
            if node.target is operator.getitem:
                source, index = node.args
                results = values.get(source)
                if isinstance(results, list) and isinstance(index, int) and results[index] is not None:
                    values[node] = results[index]
                else:
                    as_input(node)
                continue
            try:
                if not isinstance(node.target, torch._ops.OpOverload) or not _target_name(node.target).startswith(
                    ("aten.", "prims.")
                ):
                    raise UnsupportedOpError("not an aten or prims op")
                entry, names = _op_node(node, values)
                if any(o is not None and o["dtype"] not in _IMPORTABLE for o in entry["outputs"]):
                    raise UnsupportedOpError("a dtype the compiler does not know")
            except (UnsupportedOpError, InvalidInputError):
                skipped.append(node.name)
                as_input(node)
                continue
            nodes.append(entry)
            values[node] = names
        elif node.op == "output":
            # The graph's results (those that are described): the compiler's answer can depend
            # on whether a value is used (an unused empty result is fine).
            (results,) = node.args
            for r in results if isinstance(results, (list, tuple)) else [results]:
                if isinstance(r, torch.fx.Node) and isinstance(values.get(r), str):
                    outputs.append(values[r])
    return {"name": name, "inputs": inputs, "nodes": nodes, "outputs": outputs}
