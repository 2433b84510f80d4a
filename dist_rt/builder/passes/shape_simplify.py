"""Shape simplification: the ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chains that
exporters (torch.onnx dynamo) emit for dynamic dims become constant ``0``/``-1`` targets.

A chain computes a shape vector at run time. This pass evaluates it symbolically: each
element is an int (static), a symbolic dim name from shape inference (``'batch'``), an
anonymous dim ``(tensor, axis)`` (a dim of unknown name, identified by where it was read), or
unknown. Then, for a ``Reshape(data, target)``:

* an element equal to ``data``'s dim at the same position (same symbol, or read from
  ``data`` itself at that axis) becomes ``0``: ONNX copies that dim from the input;
* an int stays an int;
* if at most one element is left over (unknown, or a dim of some other position), it
  becomes ``-1``: the element count of a valid reshape fixes it.

For an ``Expand(x, target)``, an element equal to ``x``'s right-aligned dim becomes ``1``
(broadcasting keeps ``x``'s dim); Expand has no ``-1``, so every element must resolve.

When every element resolves the target is a constant and the chain is pruned; otherwise the
layer is left as it is. Fully static chains were already folded by ``fold_constants``.
Targets holding a literal ``0`` are skipped (it would change meaning). Dynamo writes
``allowzero=1``; once the target has no literal 0 that flag changes nothing, so the rewritten
layer gets ``allowzero=0`` for its copy-``0`` s.

A ``-1`` cannot be solved when another dim is 0 (an empty tensor), where the original target
was fine; so ``-1`` is only introduced when every profile keeps every input dim >= 1 (or
there is no profile and the inputs have no static 0 dim).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.builder.passes import BuildState
from dist_rt.network import Layer, Network, Tensor

#: One element of a symbolic shape vector: int, symbol str, (tensor name, axis), or None.
Elem = Any
_UNKNOWN = None


def _ints(t: Tensor | None) -> list[int] | None:
    if t is None or not t.is_constant or t.weights.size > 64:
        return None
    value = t.weights.numpy()
    if value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.reshape(-1)]


def _axes(layer: Layer) -> list[int] | None:
    if len(layer.inputs) > 1 and layer.inputs[1] is not None:
        return _ints(layer.inputs[1])
    axes = layer.attr("axes")
    return None if axes is None else [int(a) for a in axes]


class _Evaluator:
    """Symbolic values of small 1-D/scalar integer tensors, memoized by tensor name."""

    def __init__(self) -> None:
        self.memo: dict[str, tuple[list[Elem], bool] | None] = {}

    def value(self, t: Tensor) -> tuple[list[Elem], bool] | None:
        """``(elements, is_scalar)`` of ``t``, or None when it is not a shape vector."""
        if t.name not in self.memo:
            self.memo[t.name] = self._eval(t)
        return self.memo[t.name]

    def _eval(self, t: Tensor) -> tuple[list[Elem], bool] | None:
        if t.is_constant:
            ints = _ints(t)
            return None if ints is None or t.rank not in (0, 1) else (ints, t.rank == 0)
        layer = t.producer
        if layer is None or layer.domain not in ("", "ai.onnx") or t is not layer.outputs[0]:
            return None
        op, ins = layer.op_type, layer.inputs
        if op == "Shape":
            shape = ins[0].shape
            if shape is None:
                return None
            rank = len(shape)
            start, end = int(layer.attr("start", 0)), layer.attr("end")
            end = rank if end is None else int(end)
            start = min(max(start + rank if start < 0 else start, 0), rank)
            end = min(max(end + rank if end < 0 else end, 0), rank)
            return ([d if d is not None else (ins[0].name, i)
                     for i, d in enumerate(shape)][start:end], False)
        if op == "Cast" and t.dtype is not None and t.dtype.kind == "i":
            return self._of(ins[0])
        if op == "Gather" and int(layer.attr("axis", 0)) == 0:
            data, idx = self._of(ins[0]), _ints(ins[1])
            if data is None or data[1] or idx is None or ins[1].rank not in (0, 1):
                return None
            elems = data[0]
            if any(not -len(elems) <= i < len(elems) for i in idx):
                return None
            return [elems[i] for i in idx], ins[1].rank == 0
        if op == "Unsqueeze":
            data = self._of(ins[0])
            return None if data is None or not data[1] or _axes(layer) not in ([0], [-1]) \
                else (data[0], False)
        if op == "Squeeze":
            data = self._of(ins[0])
            return None if data is None or len(data[0]) != 1 else (data[0], True)
        if op == "Concat" and int(layer.attr("axis", 0)) in (0, -1):
            parts = [self._of(x) for x in ins]
            if any(p is None or p[1] for p in parts):
                return None
            return [e for p in parts for e in p[0]], False
        if t.shape is not None and len(t.shape) == 1 and isinstance(t.shape[0], int):
            return [_UNKNOWN] * t.shape[0], False  # a shape vector we cannot see into
        return None

    def _of(self, t: Tensor | None) -> tuple[list[Elem], bool] | None:
        return None if t is None else self.value(t)


def _same_dim(elem: Elem, tensor: Tensor, axis: int) -> bool:
    """True when ``elem`` provably equals ``tensor``'s dim ``axis``."""
    if tensor.shape is None or not 0 <= axis < len(tensor.shape) or elem is _UNKNOWN:
        return False
    dim = tensor.shape[axis]
    if isinstance(elem, tuple):
        return elem == (tensor.name, axis)
    return isinstance(elem, str) and isinstance(dim, str) and elem == dim


def _reshape_target(layer: Layer, elems: list[Elem], allow_free: bool) -> list[int] | None:
    data = layer.inputs[0]
    target, free = [], 0
    for i, e in enumerate(elems):
        if isinstance(e, int):
            if e == 0:
                return None
            free += e == -1
            target.append(e)
        elif _same_dim(e, data, i):
            target.append(0)
        else:
            free += 1
            target.append(-1)
    if free > 1 or (free and -1 not in elems and not allow_free):
        return None
    return target


def _expand_target(layer: Layer, elems: list[Elem], allow_free: bool) -> list[int] | None:
    x = layer.inputs[0]
    if x.shape is None:
        return None
    lead = len(elems) - len(x.shape)
    target = []
    for i, e in enumerate(elems):
        if isinstance(e, int):
            target.append(e)
        elif i >= lead and _same_dim(e, x, i - lead):
            target.append(1)
        else:
            return None
    return target


def run(network: Network, state: BuildState) -> str:
    """Replace computed Reshape/Expand targets by constants where provably equivalent.

    ``state.config.profiles`` tells whether a dim can be 0 at run time.
    """
    network.toposort()
    shapes_before = sum(lay.op_type == "Shape" for lay in network.layers)
    evaluator = _Evaluator()
    # -1 is safe only while no dim can be 0 at run time (see the module docstring).
    allow_free = all(min(lo, default=1) >= 1 for p in state.config.profiles
                     for lo in p.min.values())
    allow_free = allow_free and all(d != 0 for t in network.inputs for d in t.shape or ())
    rewritten = 0
    for layer in network.layers:
        if (layer.op_type not in ("Reshape", "Expand") or layer.domain not in ("", "ai.onnx")
                or len(layer.inputs) < 2 or layer.inputs[1] is None
                or layer.inputs[1].is_constant):
            continue
        value = evaluator.value(layer.inputs[1])
        if value is None or value[1]:
            continue
        pick = _reshape_target if layer.op_type == "Reshape" else _expand_target
        target = pick(layer, value[0], allow_free)
        if target is None:
            continue
        if layer.op_type == "Reshape":
            layer.attributes["allowzero"] = 0  # no literal 0 left: our 0s copy input dims
        const = network.add_constant(network.unique_name(f"{layer.name}.shape"),
                                     np.asarray(target, dtype=np.int64))
        layer.inputs[1] = const
        rewritten += 1
    network.prune()
    shapes_after = sum(lay.op_type == "Shape" for lay in network.layers)
    return (f"rewrote {rewritten} Reshape/Expand targets, Shape layers "
            f"{shapes_before} -> {shapes_after}")
