"""TopK: the k largest (or smallest) elements along ``axis`` and their int64 indices."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import widen
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op


def _k_of(layer, value) -> int:
    k = np.asarray(value).reshape(-1)
    if k.size != 1 or int(k[0]) < 0:
        raise ShapeError(f"layer '{layer.name}' (TopK): K is {k.tolist()}, expected one "
                         f"non-negative integer")
    return int(k[0])


@register_op("TopK", since_opset=1)
class TopK(Op):
    """``Values, Indices = topk(X, K, axis, largest, sorted)``.

    Equal values keep their index order (the lower index first), as ONNX requires. K is an
    input from opset 10 and the attribute ``k`` before.
    """

    shape_inputs = (1,)

    @classmethod
    def _k_source(cls, layer, inputs):
        if layer.opset < 10:
            return layer.attr("k", None)
        check_inputs(layer, inputs, 2)
        return inputs[1]

    @classmethod
    def infer(cls, layer, inputs):
        x = inputs[0]
        k = cls._k_source(layer, inputs)
        if isinstance(k, TensorDesc):
            k = k.value
        if x.shape is None:
            return [TensorDesc(x.dtype, None), TensorDesc(np.dtype(np.int64), None)]
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), len(x.shape))
        dim = None
        if k is not None:
            dim = _k_of(layer, k)
            size = x.shape[axis]
            if isinstance(size, int) and dim > size:
                raise ShapeError(f"layer '{layer.name}' (TopK): K is {dim}, expected at most "
                                 f"{size} (the size of axis {axis} of input {x.shape})")
        shape = tuple(dim if i == axis else d for i, d in enumerate(x.shape))
        return [TensorDesc(x.dtype, shape), TensorDesc(np.dtype(np.int64), shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        raw = cls._k_source(layer, inputs)
        k = _k_of(layer, raw.get() if hasattr(raw, "get") else raw)
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), x.ndim)
        if k > x.shape[axis]:
            raise ShapeError(f"layer '{layer.name}' (TopK): K is {k}, expected at most "
                             f"{x.shape[axis]} (axis {axis} of input {tuple(x.shape)})")
        wide = widen(x)
        n = x.shape[axis]
        if layer.attr("largest", 1):
            # A stable ascending sort of the reversed array, read from its end, is a
            # descending order in which equal values keep ascending original indices.
            order = xp.argsort(xp.flip(wide, axis), axis=axis, kind="stable")
            order = n - 1 - xp.flip(order, axis)
        else:
            order = xp.argsort(wide, axis=axis, kind="stable")
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, k)
        indices = order[tuple(index)].astype(np.int64)
        # sorted=0 allows any order; the sorted one is a valid choice.
        values = xp.take_along_axis(x, indices, axis=axis)
        return [values, indices]
