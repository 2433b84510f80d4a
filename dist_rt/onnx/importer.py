"""ONNX import: ``ModelProto`` (or a file) -> :class:`~dist_rt.network.Network`.

The pipeline, one step a line in :func:`parse_onnx`:

1. load the protobuf without reading external data (big weights stay on disk);
2. check the graph's structure ourselves (dangling names, duplicate outputs, cycles) so the
   error names the node, then run ``onnx.checker`` for everything else;
3. lift opsets below 13 with ``onnx.version_converter`` (kept as is when it cannot);
4. run ONNX shape inference (with data propagation) to seed dtypes/shapes;
5. translate node by node (Constant nodes become constants, ``If`` on a constant condition
   is inlined, ``DistCollective`` from any domain becomes ours), inferring as we go;
6. fold layers whose outputs are known at build time into constants and prune dead layers.

Graph inputs that also have an initializer are imported as constants. For IR version >= 4
ONNX calls them overridable inputs with a default; an engine has fixed bindings, so like
TensorRT's parser we keep the default (their names are listed in
``network.metadata["overridable_inputs"]``).
"""

from __future__ import annotations

import json
import os
from collections import ChainMap
from collections.abc import Iterable, MutableMapping
from typing import Any

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, ValueInfoProto

from dist_rt import dtypes
from dist_rt.builder.refit import FOLDED_WEIGHTS
from dist_rt.errors import GraphError, ModelError, ParseError, UnsupportedOpError
from dist_rt.network import DEFAULT_OPSET, Network, Tensor
from dist_rt.onnx.attributes import attribute_value, normalize_collective
from dist_rt.onnx.external import initializer_weights
from dist_rt.onnx.loading import (
    check_model,
    default_opset,
    load_model,
    node_label,
    onnx_value_info,
    sorted_graph,
    upgrade_opset,
)
from dist_rt.ops import get_op, is_supported, supported_ops
from dist_rt.weights import Weights

#: Folded constants above this many elements stay computed at run time.
_FOLD_LIMIT = 1 << 16
#: Prefix of metadata_props keys that carry Network.metadata (JSON values).
META_PREFIX = "dist_rt."


def parse_onnx(path_or_model: str | os.PathLike | bytes | ModelProto, *,
               fold_constants: bool = True, base_dir: str | None = None) -> Network:
    """Import an ONNX model into a :class:`Network`.

    Args:
        path_or_model: Path of a ``.onnx`` file, its bytes, or a ``ModelProto``.
        fold_constants: Replace layers whose outputs are known at build time by constants
            and prune layers no output depends on.
        base_dir: Directory of external-data files; defaults to the model file's directory
            (the current directory for a ``ModelProto`` or bytes).

    Returns:
        The network, topologically sorted, with dtypes/shapes inferred.

    Raises:
        ParseError: Missing file, malformed protobuf, or a model onnx.checker rejects.
        GraphError: A dangling input name, a tensor produced twice, or a cycle (names the node).
        UnsupportedOpError: An op (or opset, or subgraph) without an implementation here.
        ShapeError: Shapes that do not fit an operator.
    """
    model, base = load_model(path_or_model, base_dir)      # protobuf only, external data on disk
    model = sorted_graph(model)                       # structure checks naming the node
    check_model(model)                                      # onnx.checker, one-line ParseError
    model = upgrade_opset(model)                      # opset < 13 -> 13 when possible
    value_info = onnx_value_info(model)          # seeds for dtypes/shapes
    net, known = _GraphImporter(model, base, value_info).run()   # nodes -> layers
    if fold_constants:
        fold_known(net, known)                         # build-time values -> constants
        net.prune()                                    # drop layers no output needs
    net.validate()
    return net


# ------------------------------------------------------------------------------------------
# Loading and checking
# ------------------------------------------------------------------------------------------

def _kind_of(vi: ValueInfoProto) -> str:
    """``"tensor"``, ``"sequence"`` or ``"optional"`` (the outermost ONNX type of ``vi``)."""
    return {"sequence_type": "sequence", "optional_type": "optional"}.get(
        vi.type.WhichOneof("value") or "", "tensor")


def _element_type(tp: Any) -> Any:
    """The tensor TypeProto inside sequence/optional wrappers (or ``tp`` itself)."""
    while tp.WhichOneof("value") in ("sequence_type", "optional_type"):
        inner = getattr(tp, tp.WhichOneof("value"))
        if not inner.HasField("elem_type"):
            break
        tp = inner.elem_type
    return tp


def _type_of(vi: ValueInfoProto, what: str) -> tuple[np.dtype | None, tuple | None]:
    """(dtype, shape) of a ValueInfo; dim_param -> str, missing dims -> None.

    For sequence and optional types, those of the (innermost) tensor element.
    """
    tp = _element_type(vi.type)
    kind = tp.WhichOneof("value")
    if kind is None or kind in ("sequence_type", "optional_type"):
        return None, None
    if kind != "tensor_type":
        raise UnsupportedOpError(f"{what} '{vi.name}' has ONNX type {kind}; only tensors, "
                                 f"sequences and optionals are supported")
    tt = tp.tensor_type
    try:
        dtype = dtypes.from_onnx(tt.elem_type) if tt.elem_type else None
    except ModelError as exc:
        raise UnsupportedOpError(f"{what} '{vi.name}': {exc}") from None
    if not tt.HasField("shape"):
        return dtype, None
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")
        dims.append(int(d.dim_value) if which == "dim_value"
                    else d.dim_param if which == "dim_param" and d.dim_param else None)
    return dtype, tuple(dims)


# ------------------------------------------------------------------------------------------
# Graph translation
# ------------------------------------------------------------------------------------------

class _GraphImporter:
    """Translates one model's graph, node by node, into a Network."""

    def __init__(self, model: ModelProto, base_dir: str, value_info: dict[str, ValueInfoProto]):
        self.model = model
        self.base_dir = base_dir
        self.value_info = value_info
        graph = model.graph
        self.net = Network(graph.name or "network", opset=default_opset(model))
        for imp in model.opset_import:
            domain = "" if imp.domain == "ai.onnx" else imp.domain
            self.net.opsets[domain] = int(imp.version)
        self.known: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    def run(self) -> tuple[Network, dict[str, np.ndarray]]:
        graph, net = self.model.graph, self.net
        self._metadata()
        scope: dict[str, Tensor] = {}
        inits = {t.name for t in graph.initializer}
        for t in graph.initializer:
            scope[t.name] = net.add_constant(t.name, initializer_weights(t, self.base_dir))
        overridable = []
        for vi in graph.input:
            if vi.name in inits:
                overridable.append(vi.name)
                continue
            dtype, shape = _type_of(vi, "graph input")
            kind = _kind_of(vi)
            if dtype is None and kind == "tensor":
                raise ParseError(f"graph input '{vi.name}' has no element type")
            scope[vi.name] = net.add_input(vi.name, dtype, shape if shape is not None else ())
            scope[vi.name].kind = kind
            if shape is None or kind != "tensor":
                scope[vi.name].shape = None
        if overridable and self.model.ir_version >= 4:
            net.metadata["overridable_inputs"] = overridable
        self._add_nodes(graph.node, scope, prefix="")
        for vi in graph.output:
            tensor = scope.get(vi.name)
            if tensor is None:
                raise GraphError(f"graph output '{vi.name}' is not produced by any node")
            self._seed(tensor, vi)
            if tensor.kind == "tensor" and _kind_of(vi) != "tensor" and vi.type.WhichOneof(
                    "value") is not None:
                tensor.kind = _kind_of(vi)
            net.mark_output(tensor)
        return net, self.known

    def _metadata(self) -> None:
        m, meta = self.model, self.net.metadata
        meta.update({"producer_name": m.producer_name, "producer_version": m.producer_version,
                     "ir_version": int(m.ir_version), "model_version": int(m.model_version),
                     "domain": m.domain, "doc_string": m.doc_string})
        other = {}
        for prop in m.metadata_props:
            if prop.key.startswith(META_PREFIX):
                try:
                    meta[prop.key[len(META_PREFIX):]] = json.loads(prop.value)
                except json.JSONDecodeError:
                    meta[prop.key[len(META_PREFIX):]] = prop.value
            else:
                other[prop.key] = prop.value
        if other:
            meta["metadata_props"] = other

    def _seed(self, tensor: Tensor, vi: ValueInfoProto | None) -> None:
        """Fill what our inference left unknown from an ONNX ValueInfo."""
        if vi is None:
            return
        if tensor.kind != "tensor" or _kind_of(vi) != "tensor":
            if tensor.dtype is None:
                tensor.dtype = _type_of(vi, "tensor")[0] if _element_type(vi.type).HasField(
                    "tensor_type") else None
            return
        try:
            dtype, shape = _type_of(vi, "tensor")
        except UnsupportedOpError:
            return
        if tensor.dtype is None and dtype is not None:
            tensor.dtype = dtype
        if shape is None:
            return
        if tensor.shape is None:
            tensor.shape = shape
        elif len(tensor.shape) == len(shape):
            tensor.shape = tuple(ours if isinstance(ours, int) or theirs is None else
                                 ours if isinstance(ours, str) and not isinstance(theirs, int)
                                 else theirs for ours, theirs in zip(tensor.shape, shape,
                                                                     strict=True))

    def _add_nodes(self, nodes: Iterable[NodeProto], scope: MutableMapping[str, Tensor],
                   prefix: str) -> None:
        for idx, node in enumerate(nodes):
            self._add_node(node, idx, scope, prefix)

    def _add_node(self, node: NodeProto, idx: int, scope: MutableMapping[str, Tensor],
                  prefix: str) -> None:
        net = self.net
        op_type = node.op_type
        domain = "" if node.domain == "ai.onnx" else node.domain
        label = prefix + node_label(node, idx)
        # ONNX does not require unique node names (many are empty); layer names must be.
        name = label if label not in self._names else net.unique_name(label)
        self._names.add(name)
        attrs = {a.name: attribute_value(a, label, op_type) for a in node.attribute}
        if op_type == "Constant" and domain == "":
            self._constant(node, label, attrs, scope, prefix)
            return
        if op_type == "If" and domain == "" and self._inline_if(node, label, attrs, scope,
                                                                 prefix):
            return
        many = [k for k, v in attrs.items()
                if isinstance(v, list) and v and isinstance(v[0], GraphProto)]
        if many:
            raise UnsupportedOpError(f"node '{label}' ({op_type}): attributes holding lists of "
                                     f"graphs ({', '.join(many)}) are not supported")
        # Subgraphs become nested Networks; the outer tensors they read (implicit inputs)
        # follow the node's own inputs, so toposort and the runtime see the dependency.
        implicit: list[Tensor] = []
        for key in sorted(k for k, v in attrs.items() if isinstance(v, GraphProto)):
            attrs[key], captured = self._subgraph(attrs[key], f"{label}/{key}", scope)
            implicit += [t for t in captured if all(t.name != u.name for u in implicit)]
        nb_ranks = 1
        if op_type == "DistCollective":
            # TensorRT and other tools put it in their own domain; the semantics are ours.
            domain = ""
            attrs = normalize_collective(attrs, label)
            nb_ranks = len(attrs["group"]) or int(attrs.get("group_size", 0) or 1)
        self._check_supported(op_type, domain, label)
        inputs: list[Tensor | None] = []
        for i, in_name in enumerate(node.input):
            if not in_name:
                inputs.append(None)
                continue
            if in_name not in scope:
                raise GraphError(f"node '{label}' ({op_type}): input {i} '{in_name}' is not "
                                 f"defined before use")
            inputs.append(scope[in_name])
        inputs += implicit
        out_names = [prefix + o if o else net.unique_name(f"{name}_unused{i}")
                     for i, o in enumerate(node.output)]
        layer = net.add_layer(op_type, inputs, attrs, name=name, outputs=out_names,
                              domain=domain, infer=False)
        layer.nb_ranks = nb_ranks
        for prop in node.metadata_props:
            if prop.key == META_PREFIX + "nb_ranks":
                layer.nb_ranks = int(prop.value)
        if node.name:
            layer.metadata["onnx_node"] = node.name
        net.infer_layer(layer, self.known)
        for onnx_name, tensor in zip(node.output, layer.outputs, strict=True):
            if onnx_name:
                scope[onnx_name] = tensor
                if not prefix:
                    self._seed(tensor, self.value_info.get(onnx_name))

    def _check_supported(self, op_type: str, domain: str, label: str) -> None:
        opset = self.net.opsets.get(domain, DEFAULT_OPSET if not domain else 1)
        if not is_supported(op_type, domain):
            ops = ", ".join(supported_ops(domain)) or "none"
            raise UnsupportedOpError(f"node '{label}': op {op_type!r} (domain "
                                     f"{domain or 'ai.onnx'!r}, opset {opset}) is not "
                                     f"supported; supported ops in that domain: {ops}")
        try:
            get_op(op_type, domain, opset)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"node '{label}' ({op_type}): {exc}") from None

    def _constant(self, node: NodeProto, label: str, attrs: dict[str, Any],
                  scope: MutableMapping[str, Tensor], prefix: str) -> None:
        value = constant_attribute_value(attrs, label)
        out = prefix + node.output[0]
        scope[node.output[0]] = self.net.add_constant(out, Weights(value))

    def _inline_if(self, node: NodeProto, label: str, attrs: dict[str, Any],
                   scope: MutableMapping[str, Tensor], prefix: str) -> bool:
        """Inline the taken branch of an If whose condition is known at build time.

        Returns:
            False (nothing done) when the condition is only known at run time.
        """
        cond = scope.get(node.input[0]) if node.input else None
        value = None
        if cond is not None:
            value = cond.weights.numpy() if cond.is_constant else self.known.get(cond.name)
        if value is None or np.size(value) != 1:
            return False
        branch: GraphProto = attrs["then_branch" if bool(np.asarray(value).reshape(-1)[0])
                                   else "else_branch"]
        if len(branch.output) != len(node.output):
            raise GraphError(f"node '{label}' (If): the taken branch has "
                             f"{len(branch.output)} outputs, the node {len(node.output)}")
        sub_prefix = f"{prefix}{label}/"
        local: MutableMapping[str, Tensor] = ChainMap({}, scope)
        for t in branch.initializer:
            local[t.name] = self.net.add_constant(sub_prefix + t.name,
                                                  initializer_weights(t, self.base_dir))
        self._add_nodes(branch.node, local, sub_prefix)
        for i, (vi, out) in enumerate(zip(branch.output, node.output, strict=True)):
            if vi.name not in local:
                raise GraphError(f"node '{label}' (If): branch output '{vi.name}' is not "
                                 f"produced in the branch")
            if not out:
                continue
            # An Identity keeps the If's output name, which later nodes and bindings use.
            name = self.net.unique_name(f"{label}/out{i}")
            self._names.add(name)
            layer = self.net.add_layer("Identity", [local[vi.name]], name=name,
                                       outputs=[prefix + out], infer=False)
            self.net.infer_layer(layer, self.known)
            scope[out] = layer.outputs[0]
        return True

    def _subgraph(self, graph: GraphProto, label: str,
                  scope: MutableMapping[str, Tensor]) -> tuple[Network, list[Tensor]]:
        """Import a graph attribute as a nested Network.

        Its formal inputs come first in ``sub.inputs``; every outer-scope tensor it reads
        (at any depth) becomes a further input named as in the outer scope, listed in
        ``sub.metadata["outer_inputs"]``.

        Returns:
            (the nested network, the outer tensors it reads, in the same order).
        """
        sub = Network(graph.name or label, opset=self.net.opset)
        sub.opsets = dict(self.net.opsets)
        child = _GraphImporter.__new__(_GraphImporter)
        child.model, child.base_dir, child.value_info = self.model, self.base_dir, {}
        child.net, child.known, child._names = sub, {}, set()
        local = _CaptureScope(sub, scope)
        for t in graph.initializer:
            local.own[t.name] = sub.add_constant(t.name, initializer_weights(t, self.base_dir))
        for vi in graph.input:
            dtype, shape = _type_of(vi, f"subgraph '{label}' input")
            tensor = sub.add_input(vi.name, dtype, ())
            tensor.shape, tensor.kind = shape, _kind_of(vi)
            local.own[vi.name] = tensor
        child._add_nodes(graph.node, local, prefix="")
        for vi in graph.output:
            if vi.name not in local:
                raise GraphError(f"subgraph '{label}': output '{vi.name}' is not produced in "
                                 f"the subgraph")
            tensor = local[vi.name]
            child._seed(tensor, vi)
            if tensor.kind == "tensor" and vi.type.WhichOneof("value") is not None:
                tensor.kind = _kind_of(vi)
            sub.outputs.append(tensor)
        sub.metadata["outer_inputs"] = [t.name for t in local.captured_inner]
        fold_known(sub, child.known)
        sub.toposort()
        return sub, local.captured_outer


class _CaptureScope(MutableMapping):
    """A subgraph's name scope: its own tensors, then the enclosing scope's.

    Reading an outer name adds an input of that name to the subgraph (once) and records
    the outer tensor, which becomes an implicit input of the node holding the subgraph.
    """

    def __init__(self, sub: Network, outer: MutableMapping[str, Tensor]):
        self.sub, self.outer = sub, outer
        self.own: dict[str, Tensor] = {}
        self.captured_inner: list[Tensor] = []
        self.captured_outer: list[Tensor] = []

    def __getitem__(self, name: str) -> Tensor:
        if name in self.own:
            return self.own[name]
        outer = self.outer[name]
        tensor = self.sub.add_input(name, outer.dtype, ())
        tensor.shape, tensor.kind = outer.shape, outer.kind
        self.own[name] = tensor
        self.captured_inner.append(tensor)
        self.captured_outer.append(outer)
        return tensor

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self.outer

    def __setitem__(self, name: str, tensor: Tensor) -> None:
        self.own[name] = tensor

    def __delitem__(self, name: str) -> None:
        del self.own[name]

    def __iter__(self) -> Any:
        return iter(self.own)

    def __len__(self) -> int:
        return len(self.own)


def constant_attribute_value(attrs: dict[str, Any], label: str) -> np.ndarray:
    """The value of an ONNX ``Constant`` node from its (converted) attributes.

    Raises:
        GraphError: Not exactly one value attribute.
        UnsupportedOpError: ``sparse_value``.
    """
    given = [k for k in attrs if k.startswith("value") or k == "sparse_value"]
    if len(given) != 1:
        raise GraphError(f"node '{label}' (Constant): needs exactly one value attribute, got "
                         f"{given or 'none'}")
    key, value = given[0], attrs[given[0]]
    if key == "sparse_value":
        raise UnsupportedOpError(f"node '{label}' (Constant): sparse_value is not supported")
    if key in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if key in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    if key in ("value_string", "value_strings"):
        return np.asarray(value, dtype=object)
    return np.asarray(value)


# ------------------------------------------------------------------------------------------
# Folding
# ------------------------------------------------------------------------------------------

def fold_known(net: Network, known: dict[str, np.ndarray]) -> int:
    """Replace layers whose outputs are all known at build time by constants.

    Each output tensor keeps its name (so bindings and readers are unchanged) and becomes a
    constant holding the value. Only deterministic ops and values up to ``_FOLD_LIMIT``
    elements are folded.

    Args:
        net: The network, edited in place.
        known: Build-time values by tensor name (from ``Network.infer_shapes``).

    Returns:
        Number of layers folded.
    """
    folded = []
    for layer in net.layers:
        if not layer.op.deterministic or not layer.outputs:
            continue
        values = [known.get(t.name) for t in layer.outputs]
        if any(v is None or np.size(v) > _FOLD_LIMIT for v in values):
            continue
        if layer.op_type not in ("Shape", "Size"):
            # A weight folded into a new constant (a transposed tied embedding...) cannot be
            # refit without replaying the fold: Engine.refit refuses it by this record.
            for t in layer.inputs:
                if t is not None and t.is_constant:
                    net.metadata.setdefault(FOLDED_WEIGHTS, {}).setdefault(
                        t.name, f"{layer.op_type} node '{layer.name}' (folded on import)")
        for tensor, value in zip(layer.outputs, values, strict=True):
            value = np.asarray(value)
            if tensor.dtype is not None and value.dtype != tensor.dtype:
                value = value.astype(tensor.dtype)
            tensor.producer = None
            tensor.weights = Weights(value)
            tensor.dtype, tensor.shape = value.dtype, tuple(value.shape)
        folded.append(layer)
    net.remove_layers(folded)
    return len(folded)
