"""Gather: ``take(data, indices, axis)`` with negative indices counted from the end."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import here, set_sym, sym_value


def normalize_indices(layer, xp, indices, dim: int, what: str = "indices"):
    """Map indices in ``[-dim, dim)`` to ``[0, dim)``.

    Raises:
        ShapeError: An index is out of range (checked here since CuPy would not raise).
    """
    indices = indices.astype(np.int64, copy=False)
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < -dim or hi >= dim:
            raise ShapeError(f"{here(layer)}{what} range [{lo}, {hi}] is out of bounds for a "
                             f"dim of size {dim}")
    return xp.where(indices < 0, indices + dim, indices)


@register_op("Gather", since_opset=1)
class Gather(Op):
    """Output shape ``data[:axis] + indices + data[axis+1:]``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        data, idx = inputs
        if data.shape is None or idx.shape is None:
            set_sym(layer, [None])
            return [TensorDesc(data.dtype, None)]
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), len(data.shape))
        shape = data.shape[:axis] + tuple(idx.shape) + data.shape[axis + 1:]
        # Shape arithmetic: gathering elements of a tracked 1-D shape vector.
        elems, where = sym_value(layer, 0, inputs), sym_value(layer, 1, inputs)
        dims = None
        if elems is not None and where is not None and len(data.shape) == 1:
            n = len(elems)
            if all(-n <= i < n for i in where):
                dims = [elems[i] for i in where]
            else:
                raise ShapeError(f"{here(layer)}indices {where} are out of bounds for a dim "
                                 f"of size {n}")
        set_sym(layer, [dims])
        value = None
        if dims is not None and all(isinstance(d, int) for d in dims) and data.dtype is not None:
            value = np.asarray(dims, dtype=data.dtype).reshape(shape)
        return [TensorDesc(data.dtype, shape, value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        data, idx = inputs
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), data.ndim)
        idx = normalize_indices(layer, rt.xp, rt.xp.asarray(idx), data.shape[axis])
        return [rt.xp.take(data, idx, axis=axis)]
