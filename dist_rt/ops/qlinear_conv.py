"""QLinearConv: quantized convolution with int32 accumulation and requantization."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.conv import Conv
from dist_rt.ops.conv_integer import zero_shifted
from dist_rt.ops.qlinear_matmul import requantize


@register_op("QLinearConv", since_opset=10)
class QLinearConv(Op):
    """Inputs: x, x_scale, x_zero_point, w, w_scale, w_zero_point (per output channel
    allowed), y_scale, y_zero_point, optional int32 bias B.
    ``Y = quant((conv(x - x_zp, w - w_zp) + B) * x_s * w_s / y_s) + y_zp``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 8, 9)
        shape = Conv.infer(layer, [inputs[0], inputs[3]])[0].shape
        return [TensorDesc(inputs[7].dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp = inputs[:8]
        bias = inputs[8] if len(inputs) > 8 else None
        acc = Conv._run(layer, [zero_shifted(x, x_zp.reshape(())), zero_shifted(w, w_zp)],
                        rt)[0]
        nd = acc.ndim - 2
        if bias is not None:
            acc = acc + bias.astype(np.int32).reshape((-1,) + (1,) * nd)
        w_s = w_s.astype(np.float64)
        if w_s.ndim == 1 and w_s.size > 1:
            w_s = w_s.reshape((-1,) + (1,) * nd)
        scale = x_s.astype(np.float64) * w_s / y_s.astype(np.float64)
        return [requantize(rt.xp, acc.astype(np.float64), scale, y_zp, x.dtype)]
