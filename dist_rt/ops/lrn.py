"""LRN: local response normalization across channels.

``Y[n, c] = X[n, c] / (bias + alpha / size * sum_{c'} X[n, c']^2) ^ beta`` with ``c'`` over
``[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]`` clipped to the valid channels.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._norm import ChannelNorm, compute_dtype
from dist_rt.ops._op import register_op
from dist_rt.ops._window import pad_spatial


@register_op("LRN", since_opset=1)
class LRN(ChannelNorm):
    """ONNX LRN: attributes size (required), alpha, beta, bias."""

    @classmethod
    def normalize(cls, layer, xp, x):
        size = int(layer.attr("size", 0))
        if size < 1:
            raise ShapeError(f"layer '{layer.name}' (LRN): attribute size is {size}, expected "
                             f">= 1")
        alpha = float(layer.attr("alpha", 1e-4))
        beta = float(layer.attr("beta", 0.75))
        bias = float(layer.attr("bias", 1.0))
        xc = x.astype(compute_dtype(x.dtype), copy=False)
        sq = xp.moveaxis(xc * xc, 1, -1)  # channels last, so pad_spatial pads them
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        padded = pad_spatial(xp, sq, [lo], [hi])
        c = x.shape[1]
        total = sum(padded[..., i:i + c] for i in range(size))
        y = xc / (bias + alpha / size * xp.moveaxis(total, -1, 1)) ** beta
        return y.astype(x.dtype, copy=False)
