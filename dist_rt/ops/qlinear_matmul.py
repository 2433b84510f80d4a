"""QLinearMatMul: quantized matmul, ``Y = quant((A - a_zp) @ (B - b_zp) * a_s * b_s / y_s)``."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.matmul import MatMul


def requantize(xp, acc, scale, zero_point, fallback):
    """Round ``acc * scale`` half to even, add the zero point and saturate to its dtype."""
    y = acc * scale
    dtype = np.dtype(fallback) if zero_point is None else zero_point.dtype
    if zero_point is not None:
        y = y + zero_point
    info = np.iinfo(dtype)
    return xp.clip(xp.rint(y), info.min, info.max).astype(dtype)


@register_op("QLinearMatMul", since_opset=10)
class QLinearMatMul(Op):
    """Inputs: a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point
    (int8/uint8 data, scalar or per-row/column scales); int32 accumulation."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 8)
        shape = MatMul.infer(layer, [inputs[0], inputs[3]])[0].shape
        return [TensorDesc(inputs[7].dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp = inputs
        acc = xp.matmul(a.astype(np.int32) - a_zp.astype(np.int32),
                        b.astype(np.int32) - b_zp.astype(np.int32))
        return [requantize(xp, acc, a_s * b_s / y_s, y_zp, a.dtype)]
