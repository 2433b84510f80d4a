"""QuantizeLinear: ``Y = saturate(round(X / scale) + zero_point)``."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._cast import convert, is_float8, target_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._quant import expand, int_range


@register_op("QuantizeLinear", since_opset=10)
class QuantizeLinear(Op):
    """Linear quantization to int8/uint8/int16/uint16/int32 (or float8), per tensor, per
    axis or blocked. Rounds half to even; integer results saturate to the type's range.

    The output type is the zero point's, else attribute ``output_dtype`` (opset 21), else
    uint8.
    """

    @classmethod
    def _out_dtype(cls, layer, zp_dtype):
        if zp_dtype is not None:
            return np.dtype(zp_dtype)
        code = layer.attr("output_dtype", 0)
        return target_dtype(layer, code) if code else np.dtype(np.uint8)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        x, scale = inputs[0], inputs[1]
        zp = inputs[2] if len(inputs) > 2 else None
        if x.dtype is not None and np.dtype(x.dtype).kind in "iub":
            raise ShapeError(f"layer '{layer.name}' (QuantizeLinear): input X has dtype "
                             f"{np.dtype(x.dtype)}, expected a float type")
        if zp is not None and scale.is_static and zp.is_static and \
                int(np.prod(zp.shape)) != int(np.prod(scale.shape)):
            raise ShapeError(f"layer '{layer.name}' (QuantizeLinear): y_zero_point has shape "
                             f"{zp.shape}, expected the y_scale shape {scale.shape}")
        return [TensorDesc(cls._out_dtype(layer, None if zp is None else zp.dtype), x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale = inputs[0], inputs[1]
        zp = inputs[2] if len(inputs) > 2 else None
        out = cls._out_dtype(layer, None if zp is None else zp.dtype)
        # float32 as onnxruntime; float64 input keeps its precision.
        work = np.float64 if x.dtype == np.float64 else np.float32
        s = expand(layer, xp, scale.astype(work), x.shape, "y_scale")
        y = x.astype(work) / s
        if is_float8(out):
            if zp is not None:
                y = y + expand(layer, xp, zp.astype(work), x.shape, "y_zero_point")
            return [convert(xp, y, out, bool(layer.attr("saturate", 1)))]
        y = xp.rint(y)
        if zp is not None:
            y = y + expand(layer, xp, zp.astype(work), x.shape, "y_zero_point")
        bounds = int_range(out)
        if bounds is None:
            raise ShapeError(f"layer '{layer.name}' (QuantizeLinear): output dtype {out} is "
                             f"not an integer or float8 type")
        return [xp.clip(y, *bounds).astype(out)]
