"""Executes a captured graph description (torch_dojo.capture's JSON) with aten ops.

Test helper: if interpreting the JSON reproduces eager results, the capture lost nothing the
compiler needs (argument order, defaults, attrs, multi-result naming)."""

import torch

from torch_dojo.capture import _DTYPE_NAMES, _tensor_kind

# The capture's dtype names, read back.
_DTYPES = {name: dtype for dtype, name in _DTYPE_NAMES.items()}


def _float(v):
    return float(v) if isinstance(v, str) else v


def _decode(attr):
    kind, v = attr["kind"], attr["value"]
    if kind == "float":
        return _float(v)
    if kind == "floats":
        return [_float(x) for x in v]
    if kind == "dtype":
        return _DTYPES[v]
    if kind == "device":
        return torch.device(v)
    if kind in ("layout", "memory_format"):
        return getattr(torch, v)
    return v


def _lookup(env, name):
    if name in env:
        return env[name]
    base, _, index = name.rpartition("#")
    return env[base][int(index)]


def interpret(graph, inputs):
    env = {i["name"]: t for i, t in zip(graph["inputs"], inputs, strict=True)}
    for node in graph["nodes"]:
        ns, op, overload = node["target"].split(".")
        target = getattr(getattr(getattr(torch.ops, ns), op), overload)
        operands = iter(_lookup(env, o) for o in node["operands"])
        attrs = {a["name"]: a for a in node["attrs"]}
        args, kwargs = [], {}
        for arg in target._schema.arguments:
            kind = _tensor_kind(arg.type)
            if kind == "tensor":
                value = _decode(attrs[arg.name]) if arg.name in attrs else next(operands)
            elif kind == "list":
                count = attrs[f"{arg.name}_count"]["value"]
                none_at = set(attrs.get(f"{arg.name}_none_at", {"value": []})["value"])
                present = [next(operands) for _ in range(count)]
                value = [None if i in none_at else present.pop(0) for i in range(count + len(none_at))]
            else:
                value = _decode(attrs[arg.name])
            if arg.kwarg_only:
                kwargs[arg.name] = value
            else:
                args.append(value)
        assert next(operands, None) is None, f"{node['name']}: unused operands"
        env[node["name"]] = target(*args, **kwargs)
    return [None if o is None else _lookup(env, o) for o in graph["outputs"]]
