"""Remove layers that compute nothing: Identity, inference-mode Dropout, Cast to the dtype
the tensor already has, Reshape/Flatten/Squeeze/Unsqueeze to the shape it already has; then
drop dead layers.

A removed layer's output is replaced by its input everywhere. When that output is a network
output, the binding name must survive: the input tensor is renamed to the output's name when
it is an intermediate; otherwise (the input is itself a binding or a constant) the layer stays.
"""

from __future__ import annotations

from dist_rt import dtypes
from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes._util import binding_names, remove_and_prune
from dist_rt.errors import DistRtError
from dist_rt.network import Layer, Network, Tensor

_SAME_SHAPE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand")


def _static(t: Tensor) -> bool:
    return t.shape is not None and all(isinstance(d, int) for d in t.shape)


def _is_noop(layer: Layer, consumers: dict[str, list[Layer]], outputs: set[str]) -> bool:
    if not layer.inputs or layer.inputs[0] is None or len(layer.outputs) < 1:
        return False
    src, dst = layer.inputs[0], layer.outputs[0]
    op = layer.op_type
    if layer.domain not in ("", "ai.onnx"):
        return False
    if op == "Identity":
        return True
    if op == "Dropout":
        extra = layer.outputs[1:]
        if any(consumers.get(t.name) or t.name in outputs for t in extra):
            return False
        training = layer.inputs[2] if len(layer.inputs) > 2 else None
        if training is None:
            return True
        return training.is_constant and not bool(training.weights.numpy().any())
    if op == "Cast":
        try:
            to = dtypes.from_onnx(int(layer.attr("to", -1)))
        except DistRtError:
            return False
        return src.dtype is not None and src.dtype == to
    if op in _SAME_SHAPE_OPS:
        return (_static(src) and _static(dst) and tuple(src.shape) == tuple(dst.shape)
                and src.dtype == dst.dtype)
    return False


def _bypass(network: Network, layer: Layer) -> bool:
    src, dst = layer.inputs[0], layer.outputs[0]
    if dst in network.outputs:
        bindings = binding_names(network)
        if src.producer is None or src.name in bindings:
            return False
        # Hand the binding name to the input tensor; the layer's output disappears.
        del network.tensors[src.name]
        del network.tensors[dst.name]
        src.name = dst.name
        network.tensors[src.name] = src
    network.replace_uses(dst, src)
    return True


def run(network: Network, state: BuildState) -> str:
    """Bypass no-op layers and prune dead ones."""
    network.toposort()
    outputs = {t.name for t in network.outputs}
    consumers = network.consumers()
    removed = []
    for layer in list(network.layers):
        if _is_noop(layer, consumers, outputs) and _bypass(network, layer):
            removed.append(layer)
    dead = remove_and_prune(network, removed)
    return f"removed {len(removed)} no-op layers, {dead} dead layers"
