"""Conversion of ONNX ``AttributeProto`` values to plain Python/NumPy values."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import AttributeProto, GraphProto, helper, numpy_helper

from dist_rt.errors import UnsupportedOpError


def attribute_value(attr: AttributeProto, node_name: str = "", op_type: str = "") -> Any:
    """Return the Python value of an attribute.

    ints/floats stay scalars, lists become lists, strings become ``str``, tensors become
    NumPy arrays. Graph attributes (If/Loop/Scan bodies) are returned as ``GraphProto`` and
    rejected by the ops that would need them.

    Raises:
        UnsupportedOpError: Sparse tensors and type protos.
    """
    if attr.type == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type == AttributeProto.TENSORS:
        return [numpy_helper.to_array(t) for t in attr.tensors]
    if attr.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS,
                     AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
        raise UnsupportedOpError(f"node '{node_name}' ({op_type}): attribute '{attr.name}' of "
                                 f"type {AttributeProto.AttributeType.Name(attr.type)} is not "
                                 f"supported")
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_attribute(name: str, value: Any, node_name: str = "") -> AttributeProto:
    """Return the ``AttributeProto`` of a layer attribute (the inverse of attribute_value).

    Python ints/bools become INT, floats FLOAT, strings STRING, NumPy arrays TENSOR, lists
    the matching plural type. An empty list has no element to tell its type from; it is
    written as INTS, the type of every list attribute that may be empty in practice (perm,
    axes, group, pads).

    Raises:
        UnsupportedOpError: A value of a type ONNX attributes cannot hold.
    """
    if isinstance(value, np.ndarray):
        return helper.make_attribute(name, numpy_helper.from_array(value))
    if isinstance(value, GraphProto):  # a subgraph, already exported by the exporter
        return helper.make_attribute(name, value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, (int, float, str)):
        return helper.make_attribute(name, value)
    if isinstance(value, (list, tuple)):
        items = [v.item() if isinstance(v, np.generic) else v for v in value]
        if not items:
            return helper.make_attribute(name, [], attr_type=AttributeProto.INTS)
        if all(isinstance(v, np.ndarray) for v in items):
            return helper.make_attribute(name, [numpy_helper.from_array(v) for v in items])
        if all(isinstance(v, (int, bool)) for v in items):
            return helper.make_attribute(name, [int(v) for v in items])
        if all(isinstance(v, (int, float)) for v in items):
            return helper.make_attribute(name, [float(v) for v in items])
        if all(isinstance(v, str) for v in items):
            return helper.make_attribute(name, items)
    raise UnsupportedOpError(f"node '{node_name}': attribute '{name}' has a value of type "
                             f"{type(value).__name__} that ONNX attributes cannot hold")


#: TensorRT writes enum spellings (``kALL_REDUCE``, ``ALLREDUCE``); ours are snake case.
_COLLECTIVES = ("all_reduce", "all_gather", "broadcast", "reduce", "reduce_scatter",
                "all_to_all", "gather", "scatter")
_REDUCE_OPS = {"sum": "sum", "prod": "prod", "product": "prod", "max": "max", "min": "min",
               "avg": "avg", "average": "avg", "mean": "avg"}


def _canonical(text: str) -> str:
    key = str(text).strip().lower()
    return key[1:] if key.startswith("k") and key[1:].replace("_", "") in _SQUASHED else key


_SQUASHED = {c.replace("_", ""): c for c in _COLLECTIVES} | {
    k.replace("_", ""): k for k in _REDUCE_OPS}


def normalize_collective(attributes: dict[str, Any], node_name: str = "") -> dict[str, Any]:
    """Map TensorRT-style DistCollective attributes onto dist_rt's spellings.

    ``collective_operation`` and ``reduce_op`` accept any case, a ``k`` enum prefix and
    missing underscores (``kALL_REDUCE``, ``AllReduce``, ``all_reduce``); ``group`` and
    ``group_size`` are kept; ``root`` and ``axis`` default to 0.

    Raises:
        UnsupportedOpError: An operation or reduce op that dist_rt does not know.
    """
    out = dict(attributes)
    op = _canonical(out.get("collective_operation", "all_reduce"))
    op = _SQUASHED.get(op.replace("_", ""), op)
    if op not in _COLLECTIVES:
        raise UnsupportedOpError(f"node '{node_name}' (DistCollective): collective_operation "
                                 f"{attributes.get('collective_operation')!r} is not one of "
                                 f"{', '.join(_COLLECTIVES)}")
    red = _canonical(out.get("reduce_op", "sum"))
    red = _REDUCE_OPS.get(_SQUASHED.get(red.replace("_", ""), red))
    if red is None:
        raise UnsupportedOpError(f"node '{node_name}' (DistCollective): reduce_op "
                                 f"{attributes.get('reduce_op')!r} is not one of "
                                 f"{', '.join(sorted(set(_REDUCE_OPS.values())))}")
    out["collective_operation"] = op
    out["reduce_op"] = red
    out["group"] = [int(g) for g in out.get("group", []) or []]
    out.setdefault("root", 0)
    out.setdefault("axis", 0)
    return out
