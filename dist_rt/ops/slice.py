"""Slice: ``starts/ends/axes/steps`` (attributes before opset 10, inputs from 10).

ONNX clamps like Python slicing, with one twist handled here: for a negative step an end of
``-1`` *after* clamping means "before index 0", which Python would read as "the last index".
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, host_ints, known_ints, normalize_axes, set_sym, sym_value

#: Ends at or beyond this are "to the end" even on a dim whose size is unknown.
_BIG = 2 ** 30


def clamp(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """Clamp ``start``/``end`` to a dim of size ``dim`` following the ONNX rules."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        return min(max(start, 0), dim), min(max(end, 0), dim)
    return min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)


def plan(layer, rank: int, starts, ends, axes, steps) -> list[tuple[int, int, int, int]]:
    """Validate the slice parameters: one ``(axis, start, end, step)`` per sliced axis.

    Raises:
        ShapeError: Lengths differ, an axis is repeated/out of range, or a step is 0.
    """
    n = len(starts)
    axes = list(range(n)) if axes is None else axes
    steps = [1] * n if steps is None else steps
    if not len(ends) == len(axes) == len(steps) == n:
        raise ShapeError(f"{here(layer)}starts {starts}, ends {ends}, axes {axes} and steps "
                         f"{steps} must have the same length")
    axes = normalize_axes(layer, axes, rank)
    if 0 in steps:
        raise ShapeError(f"{here(layer)}steps {steps} must not contain 0")
    return list(zip(axes, starts, ends, steps, strict=True))


def _count(start: int, end: int, step: int) -> int:
    return max(0, (end - start + step - (1 if step > 0 else -1)) // step)


@register_op("Slice", since_opset=1)
class Slice(Op):
    """Inputs ``data, starts, ends, axes?, steps?`` (opset 10+)."""

    @classmethod
    def _params(cls, layer, inputs, host: bool):
        if layer.attr("starts") is not None:
            axes = layer.attr("axes")
            return ([int(v) for v in layer.attr("starts")], [int(v) for v in layer.attr("ends")],
                    None if axes is None else [int(v) for v in axes], None)

        def get(i):
            if i >= len(inputs) or inputs[i] is None:
                return None
            return host_ints(inputs[i]) if host else known_ints(layer, i, inputs)

        return get(1), get(2), get(3), get(4)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 5)
        x = inputs[0]
        starts, ends, axes, steps = cls._params(layer, inputs, host=False)
        missing = starts is None or ends is None or (axes is None and len(inputs) > 3
                                                     and inputs[3] is not None) or (
            steps is None and len(inputs) > 4 and inputs[4] is not None)
        if x.shape is None or missing:
            set_sym(layer, [None])
            rank = None if x.shape is None else len(x.shape)
            return [TensorDesc(x.dtype, None if rank is None else (None,) * rank)]
        out = list(x.shape)
        for axis, start, end, step in plan(layer, len(out), starts, ends, axes, steps):
            dim = out[axis]
            if isinstance(dim, int):
                out[axis] = _count(*clamp(start, end, step, dim), step)
            elif not (start == 0 and step == 1 and end >= _BIG):
                out[axis] = None
        elems = sym_value(layer, 0, inputs)
        if elems is not None and len(x.shape) == 1 and len(elems) == x.shape[0]:
            _, start, end, step = plan(layer, 1, starts, ends, axes, steps)[0] \
                if starts else (0, 0, len(elems), 1)
            start, end = clamp(start, end, step, len(elems))
            elems = elems[start:end if end >= 0 else None:step]
        else:
            elems = None
        set_sym(layer, [elems])
        return [TensorDesc(x.dtype, tuple(out))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        starts, ends, axes, steps = cls._params(layer, inputs, host=True)
        index = [slice(None)] * x.ndim
        for axis, start, end, step in plan(layer, x.ndim, starts, ends, axes, steps):
            start, end = clamp(start, end, step, x.shape[axis])
            index[axis] = slice(start, end if end >= 0 else None, step)
        return [x[tuple(index)].copy()]
