"""Running nested networks (If/Loop/Scan/SequenceMap bodies) inside an op's ``_run``.

A graph attribute is imported as a nested :class:`~dist_rt.network.Network`: its formal
inputs come first in ``sub.inputs``, then one input per outer-scope tensor it reads, named
as in ``sub.metadata["outer_inputs"]``. The layer holding the subgraphs lists those outer
tensors after its own ONNX inputs (its implicit inputs), in the order of
:func:`implicit_names`, so the toposort, the liveness analysis and the runtime see them.

The body runs layer by layer with each op's ``run`` and the caller's ``RunContext``, so it
works on every backend (values stay on the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dist_rt.errors import ExecutionError
from dist_rt.ops._op import RunContext, TensorDesc

if TYPE_CHECKING:
    from dist_rt.network import Layer, Network


def is_network(value: Any) -> bool:
    """True for a nested Network (duck-typed: ``dist_rt.network`` imports this package)."""
    return hasattr(value, "layers") and hasattr(value, "tensors") and hasattr(value, "outputs")


def outer_names(sub: Network) -> list[str]:
    """Names of the outer-scope tensors ``sub`` reads (its trailing inputs)."""
    return list(sub.metadata.get("outer_inputs", []))


def formal_inputs(sub: Network) -> list:
    """The subgraph's own (ONNX) inputs, without the captured outer tensors."""
    return list(sub.inputs[:len(sub.inputs) - len(outer_names(sub))])


def implicit_names(layer: Layer) -> list[str]:
    """Outer tensor names the layer's subgraphs read, in implicit-input order."""
    names: list[str] = []
    for key in sorted(layer.attributes):
        value = layer.attributes[key]
        if is_network(value):
            names += [n for n in outer_names(value) if n not in names]
    return names


def split_inputs(layer: Layer, inputs: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """(the layer's own ONNX inputs, outer name -> value of the implicit inputs)."""
    names = implicit_names(layer)
    own = len(inputs) - len(names)
    return list(inputs[:own]), dict(zip(names, inputs[own:], strict=True))


def explicit_descs(layer: Layer, inputs: Sequence[TensorDesc | None]) -> list:
    """The descriptions of the layer's own ONNX inputs (implicit ones dropped)."""
    return list(inputs[:len(inputs) - len(implicit_names(layer))])


def output_descs(sub: Network) -> list[TensorDesc]:
    """Descriptions of a subgraph's outputs."""
    return [TensorDesc(t.dtype, t.shape, None, t.kind) for t in sub.outputs]


def merge_descs(a: TensorDesc, b: TensorDesc) -> TensorDesc:
    """What two branches' outputs have in common (dims that differ become unknown)."""
    shape = a.shape
    if a.shape != b.shape:
        shape = None if a.shape is None or b.shape is None or len(a.shape) != len(b.shape) \
            else tuple(x if x == y else None for x, y in zip(a.shape, b.shape, strict=True))
    return TensorDesc(a.dtype if a.dtype is not None else b.dtype, shape, None,
                      a.kind if a.kind != "tensor" else b.kind)


def run_subgraph(sub: Network, feeds: dict[str, Any], rt: RunContext) -> list[Any]:
    """Run ``sub`` on ``feeds`` (formal and outer inputs by name); returns its outputs.

    Raises:
        ExecutionError: An input of the subgraph is not fed.
    """
    values: dict[str, Any] = {}
    for t in sub.constants:
        array = t.weights.numpy()
        # Strings stay host object arrays (no device has them).
        values[t.name] = array if array.dtype == object else rt.xp.asarray(array)
    for t in sub.inputs:
        if t.name not in feeds:
            raise ExecutionError(f"subgraph '{sub.name}': input '{t.name}' has no value")
        values[t.name] = feeds[t.name]
    for layer in sub.layers:
        outs = layer.op.run(layer, [None if t is None else values[t.name]
                                    for t in layer.inputs], rt)
        for t, value in zip(layer.outputs, outs, strict=False):
            values[t.name] = value
    return [values[t.name] for t in sub.outputs]


def scalar(value: Any) -> Any:
    """A 0-d/1-element device or host array as a Python scalar."""
    return np.asarray(value.get() if hasattr(value, "get") else value).reshape(-1)[0].item()
