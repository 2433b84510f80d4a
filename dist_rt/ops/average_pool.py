"""AveragePool: windowed mean.

The divisor of each window counts the real input elements it covers, plus the explicit
(``pads`` / ``auto_pad``) padding when ``count_include_pad=1``; the extra tail that
``ceil_mode`` adds past the end pads is never counted.
"""

from __future__ import annotations

import dataclasses

from dist_rt.ops._op import register_op
from dist_rt.ops._pool import WindowPool, geometry, pooled_windows
from dist_rt.ops._window import pad_spatial


@register_op("AveragePool", since_opset=1)
class AveragePool(WindowPool):
    """ONNX AveragePool (opsets 1-22): ``count_include_pad``, ``ceil_mode``, ``dilations``."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        geo = geometry(layer, x.shape[2:])
        nd = len(geo.kernel)
        acc = x.astype("float32") if x.dtype.itemsize < 4 else x
        total = pooled_windows(xp, acc, geo, 0).sum(axis=2)
        ones = xp.ones((1, 1, *x.shape[2:]), dtype=acc.dtype)
        if int(layer.attr("count_include_pad", 0)):
            # explicit pads count as elements; the ceil tail (padded with 0 below) does not
            ones = pad_spatial(xp, ones, geo.pads[:nd], geo.pads[nd:], 1)
            unpadded = dataclasses.replace(geo, pads=[0] * (2 * nd))
            counts = pooled_windows(xp, ones, unpadded, 0).sum(axis=2)
        else:
            counts = pooled_windows(xp, ones, geo, 0).sum(axis=2)
        return [(total / xp.maximum(counts, 1)).astype(x.dtype, copy=False)]
