"""ConvInteger: ``Y = conv(X - x_zero_point, W - w_zero_point)`` accumulated in int32."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.conv import Conv


def zero_shifted(x, zero_point, channel_axis_size=None):
    """``x - zero_point`` in int32; a per-channel (1-D) zero point applies along axis 0."""
    x = x.astype(np.int32)
    if zero_point is None:
        return x
    zp = zero_point.astype(np.int32)
    if zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape((-1,) + (1,) * (x.ndim - 1))
    return x - zp


@register_op("ConvInteger", since_opset=10)
class ConvInteger(Op):
    """Conv attributes as :class:`Conv`; inputs x, w (int8/uint8), x_zero_point,
    w_zero_point (scalar or per output channel)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 4)
        shape = Conv.infer(layer, inputs[:2])[0].shape
        return [TensorDesc(np.dtype(np.int32), shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x_zp = inputs[2] if len(inputs) > 2 else None
        w_zp = inputs[3] if len(inputs) > 3 else None
        x = zero_shifted(inputs[0], None if x_zp is None else x_zp.reshape(()))
        w = zero_shifted(inputs[1], w_zp)
        return Conv._run(layer, [x, w], rt)
