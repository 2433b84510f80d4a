"""Conv: N-d grouped, strided, dilated, padded convolution (cross-correlation).

``Y[n, m, o] = B[m] + sum_{c in group(m), k} W[m, c, k] * Xpad[n, c, o * s + k * d]``,
computed as im2col (see :mod:`dist_rt.ops._window`) followed by one batched matmul per group:
``(g, M/g, C/g*K) @ (N, g, C/g*K, O) -> (N, g, M/g, O)``.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import register_op
from dist_rt.ops._window import ConvLike, pad_spatial, window_params, windows


@register_op("Conv", since_opset=1)
class Conv(ConvLike):
    """ONNX Conv (opsets 1-22): X (N, C, *D), W (M, C/group, *k), optional B (M)."""

    @classmethod
    def out_channels(cls, layer, xs, ws, group):
        if ws is not None:
            if len(ws) != len(xs):
                raise ShapeError(f"layer '{layer.name}' (Conv): weight has shape {ws}, "
                                 f"expected rank {len(xs)} like input {xs}")
            c, cg = xs[1], ws[1]
            if isinstance(c, int) and isinstance(cg, int) and c != cg * group:
                raise ShapeError(f"layer '{layer.name}' (Conv): input has {c} channels, "
                                 f"weight {ws} with group={group} expects {cg * group}")
        return ws[0] if ws else None

    @classmethod
    def out_spatial(cls, layer, spatial, kernel):
        return window_params(layer, spatial, kernel)[3]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, w, bias, group = cls.operands(layer, inputs)
        n, c = x.shape[:2]
        m, cg = w.shape[:2]
        if c != cg * group or m % group:
            raise ShapeError(f"layer '{layer.name}' (Conv): input {tuple(x.shape)} and weight "
                             f"{tuple(w.shape)} do not fit group={group}")
        kernel = list(w.shape[2:])
        strides, dilations, pads, out = window_params(layer, x.shape[2:], kernel)
        nd = len(kernel)
        xpad = pad_spatial(xp, x, pads[:nd], pads[nd:])
        cols = windows(xp, xpad, kernel, strides, dilations, out)  # (N, C, K, *out)
        taps = cols.shape[2]
        cols = cols.reshape(n, group, cg * taps, -1)
        wmat = w.reshape(group, m // group, cg * taps)
        y = xp.matmul(wmat, cols).reshape(n, m, *out)
        if bias is not None:
            y = y + bias.reshape((m,) + (1,) * nd)
        return [y.astype(x.dtype, copy=False)]
