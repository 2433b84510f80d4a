"""Where: ``Y = X if condition else Z``, all three broadcasting."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import check_same_dtype
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op


@register_op("Where", since_opset=9)
class Where(Op):
    """``Y[i] = X[i] if condition[i] else Z[i]`` with multidirectional broadcasting."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        cond, x, z = inputs
        if cond.dtype is not None and np.dtype(cond.dtype) != np.bool_:
            raise ShapeError(f"layer '{layer.name}' (Where): condition has dtype "
                             f"{np.dtype(cond.dtype)}, expected bool")
        check_same_dtype(layer, inputs, (1, 2))
        return [TensorDesc(x.dtype, broadcast_shapes(layer, cond.shape, x.shape, z.shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        cond, x, z = inputs
        return [rt.xp.where(cond, x, z).astype(x.dtype, copy=False)]
