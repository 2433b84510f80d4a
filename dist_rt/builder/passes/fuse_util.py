"""Pattern-matching helpers shared by the ``fuse_*`` passes.

A fusion walks producer links backwards from an anchor layer (the last op of the pattern).
Intermediates of the pattern must be read only by the pattern and must not be network
outputs, else fusing would compute them twice or lose a binding; the dead pattern layers are
removed afterwards with :meth:`Network.prune`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dist_rt.network import Layer, Network, Tensor


class Matcher:
    """Producer/consumer queries over one network snapshot.

    Args:
        network: The network; consumers are computed once, so rebuild the matcher after
            edits that rewire readers of tensors still to be matched.
    """

    def __init__(self, network: Network):
        self.network = network
        self.users = network.consumers()
        self.outputs = {t.name for t in network.outputs}

    def producer(self, t: Tensor | None, op_types: str | Sequence[str]) -> Layer | None:
        """The layer writing ``t`` when its op type is one of ``op_types``, else None."""
        if t is None or t.producer is None:
            return None
        types = (op_types,) if isinstance(op_types, str) else tuple(op_types)
        layer = t.producer
        return layer if layer.op_type in types and layer.domain in ("", "ai.onnx") else None

    def private(self, t: Tensor) -> bool:
        """True when exactly one layer reads ``t`` and it is not a network output."""
        return len(self.users.get(t.name, ())) == 1 and t.name not in self.outputs


def const_value(t: Tensor | None) -> np.ndarray | None:
    """The value of a constant tensor, else None."""
    return None if t is None or not t.is_constant else t.weights.numpy()


def const_scalar(t: Tensor | None) -> float | None:
    """The value of a one-element float/int constant, else None."""
    value = const_value(t)
    if value is None or value.size != 1:
        return None
    return float(np.asarray(value, dtype=np.float64).reshape(()))


def other(layer: Layer, t: Tensor) -> Tensor | None:
    """The other input of a binary layer that reads ``t`` (None when ``t`` is not an input)."""
    a, b = layer.inputs[0], layer.inputs[1]
    if a is t:
        return b
    if b is t:
        return a
    return None


def axes_of(layer: Layer) -> list[int] | None:
    """The ``axes`` of an Unsqueeze/Reduce* layer, from its attribute or constant input."""
    axes = layer.attr("axes")
    if axes is None and len(layer.inputs) > 1:
        value = const_value(layer.inputs[1])
        axes = None if value is None else value.reshape(-1).tolist()
    return None if axes is None else [int(a) for a in axes]


def fused_from(layers: Sequence[Layer]) -> list[str]:
    """Names of the layers a fused layer replaces (kept in its metadata for reports)."""
    return [lay.name for lay in layers]


def take_name(network: Network, t: Tensor) -> str:
    """Rename ``t`` (a pattern's last output) and return its old name for the fused layer.

    The fused layer's output then keeps the name readers, bindings and profiles know.
    """
    old = t.name
    del network.tensors[old]
    t.name = network.unique_name(f"{old}.unfused")
    network.tensors[t.name] = t
    return old


#: The domains of standard ONNX ops.
ONNX_DOMAINS = ("", "ai.onnx")


def anchors(network: Network, op_type: str, domains: Sequence[str] = ONNX_DOMAINS) -> list[Layer]:
    """The layers of ``op_type`` in ``domains``, listed before the pass starts editing."""
    return [lay for lay in network.layers if lay.op_type == op_type and lay.domain in domains]


def add_fused(network: Network, op_type: str, inputs: Sequence[Tensor], attrs: dict, *,
              name: str, outputs: Sequence[Tensor], replaces: Sequence[Layer],
              domain: str = "dist_rt", opset: int | None = None) -> Layer:
    """Add one layer computing ``outputs`` of the ``replaces`` pattern, and rewire readers.

    The new layer's outputs keep the names of ``outputs`` (see :func:`take_name`) and every
    reader of an old output reads the new one; the pattern layers are left dead for
    :func:`prune_fused`.

    Args:
        network: Edited in place.
        op_type: The fused op.
        inputs: Its inputs.
        attrs: Its attributes.
        name: Base of the layer name (made unique).
        outputs: The pattern tensors the fused layer's outputs replace, in order.
        replaces: The pattern layers (recorded in the layer's ``fused_from`` metadata).
        domain: The fused op's domain (``dist_rt`` ops get that opset declared).
        opset: The layer's opset when it must not follow the network's.

    Returns:
        The new layer.
    """
    if domain == "dist_rt":
        network.opsets.setdefault("dist_rt", 1)
    name = network.unique_name(name)
    names = [take_name(network, t) for t in outputs]
    new = network.add_layer(op_type, list(inputs), attrs, domain=domain, name=name,
                            outputs=names, infer=False)
    if opset is not None:
        new.opset = opset
    new.metadata["fused_from"] = fused_from(replaces)
    network.infer_layer(new)
    for old, t in zip(outputs, new.outputs, strict=True):
        network.replace_uses(old, t)
    return new


#: Threads copying a merged weight (NumPy copies release the GIL).
CONCAT_WORKERS = min(32, os.cpu_count() or 1)
#: Below this many output bytes one np.concatenate beats starting threads.
_PARALLEL_CONCAT_BYTES = 16 << 20


def concat_columns(arrays: Sequence[np.ndarray], workers: int | None = None) -> np.ndarray:
    """``np.concatenate(arrays, axis=1)`` of 2-D arrays, copied by several threads.

    ``out = [A_1 | ... | A_n]``: the merged weights (q/k/v, gate/up) of a billion-parameter
    model are close to 1 GB, read from memory maps of the ONNX external data into fresh
    memory, and one thread reaches only a fraction of a many-core host's memory bandwidth
    (and takes every page fault itself). Each thread fills blocks of output rows from every
    part, so its reads and writes stay sequential and no two threads touch the same bytes.
    Small or unusual inputs (not 2-D, mixed dtypes) go to ``np.concatenate`` as they are; the
    result is the same either way.

    Args:
        arrays: (K, N_i) arrays of one dtype.
        workers: Threads (default :data:`CONCAT_WORKERS`).

    Returns:
        The new (K, sum N_i) array.
    """
    workers = CONCAT_WORKERS if workers is None else max(1, int(workers))
    nbytes = sum(a.nbytes for a in arrays)
    if (workers == 1 or nbytes < _PARALLEL_CONCAT_BYTES or not arrays
            or any(a.ndim != 2 or a.dtype != arrays[0].dtype for a in arrays)
            or len({a.shape[0] for a in arrays}) != 1):
        return np.concatenate(arrays, axis=1)
    rows = arrays[0].shape[0]
    out = np.empty((rows, sum(a.shape[1] for a in arrays)), arrays[0].dtype)
    starts = np.cumsum([0] + [a.shape[1] for a in arrays])[:-1].tolist()
    step = -(-rows // (workers * 4))  # a few blocks a thread, so a slow one does not lag

    def copy_rows(r: int) -> None:
        for a, c in zip(arrays, starts, strict=True):
            out[r:r + step, c:c + a.shape[1]] = a[r:r + step]

    with ThreadPoolExecutor(min(workers, -(-rows // step)), "dist_rt-concat") as pool:
        list(pool.map(copy_rows, range(0, rows, step)))  # list(): re-raise a thread's error
    return out


#: Split takes its sizes as an input from this opset on (an attribute before).
SPLIT_INPUT_OPSET = 13


def split_columns(network: Network, merged: Layer, group: Sequence[Layer],
                  sizes: Sequence[int]) -> Layer:
    """Give ``group``'s outputs back as a last-axis Split of ``merged``'s output.

    The parallel-projection merges (one GEMM on concatenated weight columns) end this way:
    the Split's outputs take the old names and every reader moves to them.

    Args:
        network: Edited in place.
        merged: The layer computing every member's columns, in group order.
        group: The replaced layers (their first outputs are split back out).
        sizes: Columns of each member.

    Returns:
        The Split layer.
    """
    first = group[0]
    split_in, attrs = [merged.outputs[0]], {"axis": -1}
    if network.opset >= SPLIT_INPUT_OPSET:
        split_in.append(network.add_constant(network.unique_name(f"{merged.name}.split"),
                                             np.asarray(sizes, dtype=np.int64)))
    else:
        attrs["split"] = list(sizes)
    outs = [lay.outputs[0] for lay in group]
    names = [take_name(network, t) for t in outs]
    split = network.add_layer("Split", split_in, attrs,
                              name=network.unique_name(f"{first.name}.split"), outputs=names)
    split.metadata["fused_from"] = fused_from(group)
    for old, new in zip(outs, split.outputs, strict=True):
        network.replace_uses(old, new)
    return split


def prune_fused(network: Network, fused: int) -> None:
    """Drop the pattern layers left dead by ``fused`` fusions (nothing when none)."""
    if fused:
        network.toposort()  # prune walks layers in reverse topological order
        network.prune()
