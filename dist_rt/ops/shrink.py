"""Shrink: ``Y = X + bias if X < -lambd; X - bias if X > lambd; else 0``."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Shrink", since_opset=9)
class Shrink(Op):
    """Soft/hard shrinkage with attributes ``lambd`` (0.5) and ``bias`` (0)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp, x = rt.xp, inputs[0]
        lambd = float(layer.attr("lambd", 0.5))
        bias = float(layer.attr("bias", 0.0))
        wide = x.astype("float64")
        y = xp.where(wide < -lambd, wide + bias, xp.where(wide > lambd, wide - bias, 0.0))
        return [y.astype(x.dtype)]
