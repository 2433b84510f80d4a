"""LpPool: windowed p-norm ``(sum |x|^p) ^ (1/p)``; padding contributes zeros."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._pool import WindowPool, geometry, pooled_windows


@register_op("LpPool", since_opset=1)
class LpPool(WindowPool):
    """ONNX LpPool (opsets 1-22): attribute ``p`` (default 2), pads, strides, dilations."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        p = float(layer.attr("p", 2))
        geo = geometry(layer, x.shape[2:])
        acc = x.astype("float32") if x.dtype.itemsize < 4 else x
        powered = pooled_windows(xp, xp.abs(acc) ** p, geo, 0).sum(axis=2)
        return [(powered ** (1.0 / p)).astype(x.dtype, copy=False)]
