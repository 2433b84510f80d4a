"""ONNX export: :class:`~dist_rt.network.Network` -> ``ModelProto``, the importer's inverse.

``parse_onnx(export_onnx(net))`` behaves like ``net``: same bindings (names, dtypes,
symbolic dims), same layers and attributes, same weights. What ONNX has no field for travels
in ``metadata_props`` as JSON under ``dist_rt.`` keys: the network's metadata (rank,
world size, plan hash of a partitioned network) and a layer's ``nb_ranks``.

``DistCollective`` layers become nodes of domain ``dist_rt`` (opset 1) carrying
``collective_operation``, ``reduce_op``, ``root``, ``group``, ``group_size`` and ``axis``,
so tools that do not know dist_rt see a custom op rather than a wrong ONNX one.
"""

from __future__ import annotations

import json
from typing import Any

import onnx
from onnx import GraphProto, ModelProto, NodeProto, ValueInfoProto, helper

from dist_rt import dtypes
from dist_rt.errors import ModelError
from dist_rt.network import Layer, Network, Tensor
from dist_rt.onnx.attributes import to_attribute
from dist_rt.onnx.external import ExternalDataWriter, weights_to_tensor
from dist_rt.onnx.importer import META_PREFIX
from dist_rt.ops._subgraph import formal_inputs, implicit_names, is_network

#: Domain and opset of dist_rt's own ops in exported models.
DIST_DOMAIN = "dist_rt"
DIST_OPSET = 1
#: Network.metadata keys the importer fills from ModelProto fields (not re-exported as props).
_MODEL_FIELDS = ("producer_name", "producer_version", "ir_version", "model_version", "domain",
                 "doc_string", "metadata_props")


def export_onnx(network: Network, *, external_data_path: str | None = None,
                external_threshold: int = 1024) -> ModelProto:
    """Write ``network`` as an ONNX model.

    Args:
        network: The network (its layers are put in topological order, nothing else).
        external_data_path: When given, weights of at least ``external_threshold`` bytes are
            written to this file and referenced by its base name, so save the model in the
            same directory (``onnx.save(model, os.path.join(dir, "model.onnx"))``).
        external_threshold: Size in bytes from which a weight goes to the external file.

    Returns:
        The model; ``onnx.checker`` accepts it.

    Raises:
        ModelError: A dtype or attribute that ONNX cannot represent.
    """
    network.toposort()
    writer = (ExternalDataWriter(external_data_path, external_threshold)
              if external_data_path else None)
    try:
        initializers = [writer.tensor(t.name, t.weights) if writer else
                        weights_to_tensor(t.name, t.weights) for t in network.constants]
    finally:
        if writer is not None:
            writer.close()
    nodes = [_node(layer) for layer in network.layers]
    outputs = {t.name for t in network.outputs}
    value_info = [_value_info(t) for layer in network.layers for t in layer.outputs
                  if t.name not in outputs and t.dtype is not None]
    graph = helper.make_graph(
        nodes, network.name, [_value_info(t) for t in network.inputs],
        [_value_info(t) for t in network.outputs], initializers, value_info=value_info)
    opsets = dict(network.opsets)
    if any(n.domain == DIST_DOMAIN for n in nodes):
        opsets.setdefault(DIST_DOMAIN, DIST_OPSET)
    used = {n.domain for n in nodes}
    opset_import = [helper.make_opsetid(d, v) for d, v in sorted(opsets.items())
                    if d == "" or d in used]
    # The lowest IR version that has the opsets, but at least 10 (node metadata_props), so
    # runtimes older than this onnx package read the file.
    ir_version = max(10, helper.find_min_ir_version_for(opset_import, ignore_unknown=True))
    model = helper.make_model(graph, opset_imports=opset_import, producer_name="dist_rt",
                              ir_version=ir_version)
    _model_metadata(model, network.metadata)
    return model


def _value_info(tensor: Tensor, rename: dict[str, str] | None = None) -> ValueInfoProto:
    name = (rename or {}).get(tensor.name, tensor.name)
    if tensor.dtype is None:
        if tensor.kind != "tensor":
            return ValueInfoProto(name=name)  # element type unknown: leave it untyped
        raise ModelError(f"tensor '{tensor.name}' has no dtype; run Network.infer_shapes() "
                         f"before exporting")
    shape = None if tensor.shape is None else list(tensor.shape)
    if tensor.kind == "sequence":
        return helper.make_value_info(name, helper.make_sequence_type_proto(
            helper.make_tensor_type_proto(dtypes.to_onnx(tensor.dtype), None)))
    if tensor.kind == "optional":
        return helper.make_value_info(name, helper.make_optional_type_proto(
            helper.make_tensor_type_proto(dtypes.to_onnx(tensor.dtype), shape)))
    return helper.make_tensor_value_info(name, dtypes.to_onnx(tensor.dtype), shape)


def _graph(sub: Network, rename: dict[str, str]) -> GraphProto:
    """A nested Network (subgraph attribute) as a GraphProto.

    Its captured outer inputs are not graph inputs in ONNX: readers refer to the outer
    tensor by name, ``rename`` maps captured names to the current outer names.
    """
    sub.toposort()
    formal = formal_inputs(sub)
    nodes = [_node(layer, rename) for layer in sub.layers]
    inits = [weights_to_tensor(t.name, t.weights) for t in sub.constants]
    # ONNX lets subgraph inputs/outputs be untyped (Loop bodies often are).
    ins = [_value_info(t) if t.dtype is not None else ValueInfoProto(name=t.name)
           for t in formal]
    outs = [_value_info(t, rename) if t.dtype is not None
            else ValueInfoProto(name=rename.get(t.name, t.name)) for t in sub.outputs]
    return helper.make_graph(nodes, sub.name, ins, outs, inits)


def _node(layer: Layer, rename: dict[str, str] | None = None) -> NodeProto:
    rename = rename or {}
    attrs = dict(layer.attributes)
    implicit = implicit_names(layer)
    inputs = layer.inputs[:len(layer.inputs) - len(implicit)]
    # Names the subgraphs use for outer tensors -> the names those tensors have now.
    outer = {name: rename.get(t.name, t.name) for name, t in
             zip(implicit, layer.inputs[len(inputs):], strict=True)}
    for key, value in attrs.items():
        if is_network(value):
            attrs[key] = _graph(value, outer)
    domain = layer.domain
    if layer.op_type == "DistCollective":
        domain = DIST_DOMAIN
        attrs.setdefault("group_size", int(layer.nb_ranks))
        attrs["group"] = list(attrs.get("group", []) or [])
    node = helper.make_node(layer.op_type, [rename.get(t.name, t.name) if t is not None
                                            else "" for t in inputs],
                            [t.name for t in layer.outputs], name=layer.name,
                            domain=domain or None)
    node.attribute.extend(to_attribute(k, v, layer.name) for k, v in
                          sorted(attrs.items()) if v is not None)
    if layer.nb_ranks != 1 and layer.op_type != "DistCollective":
        prop = node.metadata_props.add()
        prop.key, prop.value = META_PREFIX + "nb_ranks", str(int(layer.nb_ranks))
    return node


def _model_metadata(model: ModelProto, metadata: dict[str, Any]) -> None:
    props = dict(metadata.get("metadata_props", {}) or {})
    for key, value in metadata.items():
        if key in _MODEL_FIELDS:
            continue
        try:
            props[META_PREFIX + key] = json.dumps(value)
        except TypeError:
            props[META_PREFIX + key] = json.dumps(str(value))
    if metadata.get("doc_string"):
        model.doc_string = str(metadata["doc_string"])
    if metadata.get("model_version"):
        model.model_version = int(metadata["model_version"])
    helper.set_model_props(model, props)


def save_onnx(network: Network, path: str, *, external_data: bool = False) -> None:
    """Export ``network`` to ``path``; with ``external_data`` weights go to ``path + ".data"``.

    Raises:
        ModelError: As :func:`export_onnx`.
    """
    data_path = path + ".data" if external_data else None
    model = export_onnx(network, external_data_path=data_path)
    onnx.save(model, path)
