"""Expand: broadcast a tensor to a shape (bidirectionally, like ``X * ones(shape)``)."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op
from dist_rt.ops._tensor_util import host_ints, sym_value


@register_op("Expand", since_opset=8)
class Expand(Op):
    """Inputs ``input, shape``; output shape ``broadcast(input.shape, shape)``."""

    shape_inputs = (1,)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x = inputs[0]
        target = sym_value(layer, 1, inputs)
        if target is None or x.shape is None:
            n = inputs[1].shape[0] if inputs[1].shape and len(inputs[1].shape) == 1 else None
            rank = max(n, len(x.shape)) if isinstance(n, int) and x.shape is not None else None
            return [TensorDesc(x.dtype, None if rank is None else (None,) * rank)]
        # A target dim of 1 keeps the input's dim, so treat 1 like "broadcastable" there.
        return [TensorDesc(x.dtype, broadcast_shapes(layer, tuple(x.shape), tuple(target)))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        shape = np.broadcast_shapes(x.shape, tuple(host_ints(inputs[1])))
        return [rt.xp.ascontiguousarray(rt.xp.broadcast_to(x, shape))]
