"""ConstantOfShape: a tensor of the given shape filled with ``value`` (default float32 0)."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, host_ints, sym_value


def _fill(layer) -> np.ndarray:
    value = layer.attr("value")
    if value is None:
        return np.zeros(1, dtype=np.float32)
    value = np.asarray(value)
    if value.size != 1:
        raise ShapeError(f"{here(layer)}attribute 'value' must hold one element, got shape "
                         f"{value.shape}")
    return value.reshape(1)


@register_op("ConstantOfShape", since_opset=9)
class ConstantOfShape(Op):
    """Input ``shape`` (1-D int64); attribute ``value`` (a one-element tensor)."""

    shape_inputs = (0,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        fill = _fill(layer)
        dims = sym_value(layer, 0, inputs)
        if dims is None:
            n = inputs[0].shape[0] if inputs[0].shape and len(inputs[0].shape) == 1 else None
            return [TensorDesc(fill.dtype, (None,) * n if isinstance(n, int) else None)]
        for d in dims:
            if isinstance(d, int) and d < 0:
                raise ShapeError(f"{here(layer)}shape {dims} has a negative dim")
        return [TensorDesc(fill.dtype, tuple(dims))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        fill = _fill(layer)
        shape = tuple(host_ints(inputs[0]))
        if any(d < 0 for d in shape):
            raise ShapeError(f"{here(layer)}shape {list(shape)} has a negative dim")
        return [rt.xp.full(shape, fill[0], dtype=fill.dtype)]
