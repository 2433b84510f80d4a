"""CumSum: cumulative sum along the axis given as input 1 (``exclusive``, ``reverse``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import widen
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op


def cumulate(layer: Any, x: Any, axis: int, xp: Any, cum: Callable, identity: int) -> Any:
    """``cum(x)`` (``xp.cumsum``, ``xp.cumprod``) along ``axis`` in ``x``'s dtype, honouring
    the layer's ``exclusive`` and ``reverse`` attributes; ``identity`` leads an exclusive scan.
    """
    y = widen(x)
    reverse = bool(layer.attr("reverse", 0))
    if reverse:
        y = xp.flip(y, axis)
    if layer.attr("exclusive", 0) and y.shape[axis]:
        # exclusive[i] = inclusive[i - 1]: scan a copy shifted by one with a leading identity
        # (exact, unlike inclusive - X which rounds for floats).
        head = [slice(None)] * y.ndim
        head[axis] = slice(0, y.shape[axis] - 1)
        lead_shape = tuple(1 if i == axis else d for i, d in enumerate(y.shape))
        lead = xp.full(lead_shape, identity, dtype=y.dtype)
        y = xp.concatenate([lead, y[tuple(head)]], axis=axis)
    total = cum(y, axis=axis, dtype=y.dtype)
    if reverse:
        total = xp.flip(total, axis)
    return xp.ascontiguousarray(total).astype(x.dtype, copy=False)


@register_op("CumSum", since_opset=11)
class CumSum(Op):
    """``Y[i] = sum(X[j] for j <= i)`` along ``axis``; ``exclusive`` drops X[i] itself,
    ``reverse`` sums from the end."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x, axis = inputs
        if axis.shape is not None and len(axis.shape) > 1:
            raise ShapeError(f"layer '{layer.name}' (CumSum): axis has shape {axis.shape}, "
                             f"expected a scalar")
        if axis.value is not None and x.shape is not None:
            normalize_axis(layer, int(np.asarray(axis.value).reshape(-1)[0]), len(x.shape))
        return [TensorDesc(x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, axis_value = inputs
        raw = axis_value.get() if hasattr(axis_value, "get") else axis_value
        axis = normalize_axis(layer, int(np.asarray(raw).reshape(-1)[0]), x.ndim)
        return [cumulate(layer, x, axis, xp, xp.cumsum, 0)]
