"""DynamicQuantizeLinear: uint8 quantization with a scale and zero point from the data."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("DynamicQuantizeLinear", since_opset=11)
class DynamicQuantizeLinear(Op):
    """``scale = (max(x, 0) - min(x, 0)) / 255`` (1 when equal), ``zp = rint(clip(-min/scale,
    0, 255))``, ``Y = clip(rint(x / scale) + zp, 0, 255)``; outputs Y, scale, zp."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        u8 = np.dtype(np.uint8)
        return [TensorDesc(u8, inputs[0].shape), TensorDesc(inputs[0].dtype, ()),
                TensorDesc(u8, ())][:len(layer.outputs)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        f32 = np.float32
        hi = xp.maximum(f32(0), xp.max(x).astype(f32)) if x.size else f32(0)
        lo = xp.minimum(f32(0), xp.min(x).astype(f32)) if x.size else f32(0)
        scale = xp.where(hi == lo, f32(1), hi - lo).astype(f32) / f32(255)
        zp = xp.rint(xp.clip(f32(0) - lo / scale, 0, 255))
        y = xp.clip(xp.rint(x.astype(f32) / scale) + zp, 0, 255).astype(np.uint8)
        return [y, xp.asarray(scale).astype(x.dtype), xp.asarray(zp).astype(np.uint8)]
