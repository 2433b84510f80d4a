"""GroupNormalization: channels split into ``num_groups`` groups, each normalized over its
channels and spatial dims; then a per-channel (opset 21) or per-group (opset 18) affine.

``Y[n, c] = (X[n, c] - mean[n, g(c)]) / sqrt(var[n, g(c)] + epsilon) * scale + bias``.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._norm import ChannelNorm, channel_affine, check_param, compute_dtype, moments
from dist_rt.ops._op import register_op


@register_op("GroupNormalization", since_opset=18)
class GroupNormalization(ChannelNorm):
    """ONNX GroupNormalization: X (N, C, *D), scale, bias; attributes num_groups, epsilon."""

    arity = (3, 3)

    @classmethod
    def normalize(cls, layer, xp, x, scale, bias):
        n, c = x.shape[:2]
        groups = int(layer.attr("num_groups", 0))
        if groups < 1 or c % groups:
            raise ShapeError(f"layer '{layer.name}' (GroupNormalization): num_groups {groups} "
                             f"must divide the {c} channels of input {tuple(x.shape)}")
        per_channel = layer.opset >= 21
        for i, p in ((1, scale), (2, bias)):
            check_param(layer, i, p, (c,) if per_channel else (groups,), ("scale", "bias")[i - 1])
        ct = compute_dtype(x.dtype)
        xg = x.astype(ct, copy=False).reshape(n, groups, -1)
        mean, var = moments(xp, xg, (2,))
        eps = float(layer.attr("epsilon", 1e-5))
        y = ((xg - mean) / xp.sqrt(var + eps)).reshape(x.shape)
        s, b = scale.astype(ct), bias.astype(ct)
        if not per_channel:
            s, b = xp.repeat(s, c // groups), xp.repeat(b, c // groups)
        return channel_affine(y, s, b).astype(x.dtype, copy=False)
