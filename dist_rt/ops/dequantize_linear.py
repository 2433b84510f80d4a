"""DequantizeLinear: ``Y = (X - zero_point) * scale``."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._cast import target_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._quant import expand


@register_op("DequantizeLinear", since_opset=10)
class DequantizeLinear(Op):
    """Linear dequantization of int8/uint8/int16/uint16/int32 (or float8) data, per tensor,
    per axis or blocked. The output has the scale's dtype (``output_dtype``, opset 23, may
    override it)."""

    @classmethod
    def _out_dtype(cls, layer, scale_dtype):
        code = layer.attr("output_dtype", 0)
        if code:
            return target_dtype(layer, code)
        return np.dtype(scale_dtype) if scale_dtype is not None else np.dtype(np.float32)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        x, scale = inputs[0], inputs[1]
        zp = inputs[2] if len(inputs) > 2 else None
        if zp is not None and x.dtype is not None and zp.dtype is not None and \
                np.dtype(zp.dtype) != np.dtype(x.dtype):
            raise ShapeError(f"layer '{layer.name}' (DequantizeLinear): x_zero_point has dtype "
                             f"{np.dtype(zp.dtype)}, expected {np.dtype(x.dtype)} like x")
        return [TensorDesc(cls._out_dtype(layer, scale.dtype), x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale = inputs[0], inputs[1]
        zp = inputs[2] if len(inputs) > 2 else None
        work = np.float64 if scale.dtype == np.float64 else np.float32
        y = x.astype(work)
        if zp is not None:
            y = y - expand(layer, xp, zp.astype(work), x.shape, "x_zero_point")
        y = y * expand(layer, xp, scale.astype(work), x.shape, "x_scale")
        return [y.astype(cls._out_dtype(layer, scale.dtype))]
