"""InstanceNormalization: ``Y = (X - mean) / sqrt(var + epsilon) * scale[c] + B[c]`` with
statistics over the spatial dims of each (n, c)."""

from __future__ import annotations

from dist_rt.ops._norm import ChannelNorm, channel_affine, check_param, compute_dtype, moments
from dist_rt.ops._op import register_op


@register_op("InstanceNormalization", since_opset=1)
class InstanceNormalization(ChannelNorm):
    """ONNX InstanceNormalization: X (N, C, *D), scale (C), B (C); attribute epsilon."""

    arity = (3, 3)

    @classmethod
    def normalize(cls, layer, xp, x, scale, bias):
        c = x.shape[1]
        check_param(layer, 1, scale, (c,), "scale")
        check_param(layer, 2, bias, (c,), "B")
        ct = compute_dtype(x.dtype)
        xc = x.astype(ct, copy=False)
        mean, var = moments(xp, xc, tuple(range(2, x.ndim)))
        eps = float(layer.attr("epsilon", 1e-5))
        y = channel_affine((xc - mean) / xp.sqrt(var + eps), scale.astype(ct), bias.astype(ct))
        return y.astype(x.dtype, copy=False)
