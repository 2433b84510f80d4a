"""Loading and checking an ONNX model before it is translated (steps 1-4 of the importer).

Read the protobuf without its external data, check the graph's structure ourselves so errors
name the node (dangling names, duplicate outputs, cycles), run ``onnx.checker``, lift old
opsets, and run ONNX shape inference to seed dtypes and shapes. Split from
:mod:`dist_rt.onnx.importer` so each module stays one job.
"""

from __future__ import annotations

import os
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto, helper

from dist_rt.errors import GraphError, ParseError
from dist_rt.network import DEFAULT_OPSET

#: The lowest default-domain opset our ops are written against; older models are converted.
MIN_OPSET = 13
#: onnx.checker and shape inference serialize the model; above this size they cost too much.
_CHECK_LIMIT = 1 << 30


def load_model(src: Any, base_dir: str | None) -> tuple[ModelProto, str]:
    """Read a path, bytes or ModelProto without its external data; returns (model, base dir).

    Raises:
        ParseError: Missing file or bytes that are not a ModelProto.
    """
    if isinstance(src, ModelProto):
        model, base = src, base_dir or os.getcwd()
    elif isinstance(src, (bytes, bytearray, memoryview)):
        model, base = _decode(bytes(src), "<bytes>"), base_dir or os.getcwd()
    elif isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.isfile(path):
            raise ParseError(f"ONNX file {path!r} does not exist or is not a file")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ParseError(f"ONNX file {path!r} cannot be read: {exc}") from None
        model = _decode(data, path)
        base = base_dir or os.path.dirname(os.path.abspath(path))
    else:
        raise ParseError(f"parse_onnx expects a path, bytes or onnx.ModelProto, got "
                         f"{type(src).__name__}")
    _check_fields(model, "the model" if isinstance(src, ModelProto) else
                  f"{src!r}" if isinstance(src, (str, os.PathLike)) else "<bytes>")
    return model, base


def _decode(data: bytes, where: str) -> ModelProto:
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise ParseError(f"{where} is not a valid ONNX model (protobuf decode failed: "
                         f"{exc})") from None
    # Random bytes sometimes decode as a ModelProto with unknown fields and no graph.
    if not model.HasField("graph") or not model.opset_import:
        raise ParseError(f"{where} is not a valid ONNX model: it has no graph or no "
                         f"opset_import")
    return model


def _check_fields(model: ModelProto, where: str) -> None:
    """Refuse what would crash later steps: non-UTF-8 names and negative dims.

    Raises:
        ParseError: Names the tensor or node.
    """
    # Damaged strings (invalid UTF-8) come back from protobuf as bytes, not str.
    g = model.graph
    for node in g.node:
        for text in [node.name, node.op_type, node.domain, *node.input, *node.output]:
            if not isinstance(text, str):
                raise ParseError(f"{where} is not a valid ONNX model: node name, op type or "
                                 f"tensor name {text[:40]!r} is not valid UTF-8")
    for text in [v.name for v in [*g.input, *g.output, *g.initializer]]:
        if not isinstance(text, str):
            raise ParseError(f"{where} is not a valid ONNX model: tensor name {text[:40]!r} "
                             f"is not valid UTF-8")
    # onnx.shape_inference aborts the process (C++ assert) on negative dims: refuse them here.
    for v in [*g.input, *g.output, *g.value_info]:
        bad = [d.dim_value for d in v.type.tensor_type.shape.dim if d.dim_value < 0]
        if any(not isinstance(d.dim_param, str) for d in v.type.tensor_type.shape.dim):
            raise ParseError(f"{where}: tensor '{v.name}' has a dim name that is not UTF-8")
        if bad:
            raise ParseError(f"{where}: tensor '{v.name}' has a negative dim {bad[0]}")
    for t in g.initializer:
        if any(d < 0 for d in t.dims):
            raise ParseError(f"{where}: initializer '{t.name}' has negative dims {list(t.dims)}")


def _subgraph_inputs(node: NodeProto) -> list[str]:
    """Outer-scope names that ``node``'s subgraphs read (its implicit inputs)."""
    names: list[str] = []
    for attr in node.attribute:
        for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for sub in graph.node:
                for name in list(sub.input) + _subgraph_inputs(sub):
                    if name and name not in local:
                        names.append(name)
                local.update(sub.output)
    return names


def sorted_graph(model: ModelProto) -> ModelProto:
    """Check names and order the top graph's nodes topologically.

    Returns the model itself when its nodes are already sorted (the common case), else a
    copy with sorted nodes.

    Raises:
        GraphError: Duplicate output, dangling input or cycle; names the node.
    """
    graph = model.graph
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    producer: dict[str, int] = {}
    for idx, node in enumerate(graph.node):
        for out in node.output:
            if not out:
                continue
            if out in producer or out in defined:
                first = (f"node '{node_label(graph.node[producer[out]], producer[out])}'"
                         if out in producer else "a graph input or initializer")
                raise GraphError(f"tensor '{out}' is produced by {first} and again by node "
                                 f"'{node_label(node, idx)}' ({node.op_type})")
            producer[out] = idx
    deps: list[list[int]] = []
    for idx, node in enumerate(graph.node):
        mine = []
        for name in list(node.input) + _subgraph_inputs(node):
            if not name or name in defined:
                continue
            if name not in producer:
                raise GraphError(f"node '{node_label(node, idx)}' ({node.op_type}): input "
                                 f"'{name}' is not a graph input, an initializer or the "
                                 f"output of any node")
            mine.append(producer[name])
        deps.append(mine)
    order = _topological_order(graph.node, deps)
    if order == list(range(len(graph.node))):
        return model
    sorted_model = ModelProto()
    sorted_model.CopyFrom(model)
    del sorted_model.graph.node[:]
    sorted_model.graph.node.extend(graph.node[i] for i in order)
    return sorted_model


def _topological_order(nodes: Any, deps: list[list[int]]) -> list[int]:
    state = [0] * len(deps)   # 0 new, 1 on the stack, 2 done
    order: list[int] = []
    for root in range(len(deps)):
        if state[root]:
            continue
        stack = [(root, 0)]
        state[root] = 1
        while stack:
            idx, i = stack.pop()
            if i < len(deps[idx]):
                stack.append((idx, i + 1))
                dep = deps[idx][i]
                if state[dep] == 1:
                    raise GraphError(f"the graph has a cycle through node "
                                     f"'{node_label(nodes[dep], dep)}' ({nodes[dep].op_type})")
                if state[dep] == 0:
                    state[dep] = 1
                    stack.append((dep, 0))
            else:
                state[idx] = 2
                order.append(idx)
    return order


def node_label(node: NodeProto, index: int) -> str:
    """The name errors use for a node: its name, else ``<op_type>_<index>``."""
    return node.name or f"{node.op_type}_{index}"


def check_model(model: ModelProto) -> None:
    """Run ``onnx.checker`` (skipped above 1 GiB); its errors become one-line ParseErrors."""
    if model.ByteSize() > _CHECK_LIMIT:
        return
    try:
        onnx.checker.check_model(_without_external_data(model))
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseError(f"the model fails onnx.checker: {first}") from None


def _without_external_data(model: ModelProto) -> ModelProto:
    """The model with externally stored initializers turned into graph inputs.

    onnx.checker resolves external-data locations against the current directory for a
    ModelProto; the importer checks them itself against ``base_dir`` (external.py), so the
    checker sees only the graph.
    """
    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return model
    names = {t.name for t in external}
    listed = {i.name for i in model.graph.input}
    copy = ModelProto()
    copy.CopyFrom(model)
    kept = [t for t in copy.graph.initializer if t.name not in names]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    copy.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                            for t in external if t.name not in listed)
    return copy


def default_opset(model: ModelProto) -> int:
    """The model's default-domain opset (dist_rt's default when none is imported)."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return DEFAULT_OPSET


def upgrade_opset(model: ModelProto) -> ModelProto:
    """Lift a model below opset 13 with the version converter; keep it when that fails."""
    if default_opset(model) >= MIN_OPSET or model.ByteSize() > _CHECK_LIMIT:
        return model
    if default_opset(model) < 9 and any(n.op_type == "Scan" for n in model.graph.node):
        return model  # the 8 -> 9 adapter drops Scan's batch axis from the bindings
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except (RuntimeError, ValueError, onnx.checker.ValidationError,
            onnx.shape_inference.InferenceError, onnx.version_converter.ConvertError):
        # Each op handles its own older versions; importing unconverted is the fallback.
        return model


def _huge_range(model: ModelProto) -> bool:
    """A Range over initializers longer than 2**20: ONNX's data propagation would build it
    element by element until memory runs out."""
    consts = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Range" and all(i in consts for i in node.input[:3]):
            try:
                start, limit, delta = (float(onnx.numpy_helper.to_array(consts[i]).reshape(-1)[0])
                                       for i in node.input[:3])
            except (ValueError, TypeError, KeyError, IndexError):
                return True
            if delta == 0 or abs((limit - start) / delta) > 1 << 20:
                return True
    return False

def onnx_value_info(model: ModelProto) -> dict[str, ValueInfoProto]:
    """ONNX shape inference (with data propagation): value infos by name, to seed ours."""
    graph = model.graph
    infos = list(graph.value_info) + list(graph.output)
    if model.ByteSize() <= _CHECK_LIMIT:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False,
                                                         data_prop=not _huge_range(model))
            infos = list(inferred.graph.value_info) + list(inferred.graph.output)
        except (onnx.shape_inference.InferenceError, RuntimeError, ValueError, MemoryError):
            pass  # our own inference still runs; ONNX's only seeds it (MemoryError: its
            # data propagation materializes huge Range/ConstantOfShape values)
    return {vi.name: vi for vi in infos}
