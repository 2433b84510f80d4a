"""CausalConvWithState: depthwise causal 1-D convolution carrying its left context."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("CausalConvWithState", since_opset=27)
class CausalConvWithState(Op):
    """``P = concat(past_state or 0, X)`` along length; ``Y[b, c, l] = bias[c] +
    sum_j P[b, c, l + j] * W[c, 0, j]`` (optionally SiLU); ``present = P[..., -(k-1):]``.

    Shapes: X (B, C, L), W (C, 1, k), bias (C,), past_state (B, C, k - 1).
    """

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 4)
        x, w = inputs[0], inputs[1]
        state = None
        if x.shape is not None and w.shape is not None and isinstance(w.shape[2], int):
            state = (x.shape[0], x.shape[1], w.shape[2] - 1)
        return [TensorDesc(x.dtype, x.shape), TensorDesc(x.dtype, state)][:len(layer.outputs)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        past = inputs[3] if len(inputs) > 3 else None
        activation = layer.attr("activation", "none")
        if activation not in ("none", "silu", "swish"):
            raise fail(layer, f"activation {activation!r} is not one of none, silu, swish")
        if x.ndim != 3 or w.ndim != 3 or w.shape[0] != x.shape[1]:
            raise fail(layer, f"input {x.shape} and weight {w.shape} must be (B, C, L) and "
                              f"(C, 1, k)")
        b, c, length = x.shape
        k = w.shape[2]
        if past is None:
            past = xp.zeros((b, c, k - 1), dtype=x.dtype)
        elif past.shape != (b, c, k - 1):
            raise fail(layer, f"past_state has shape {past.shape}, expected {(b, c, k - 1)}")
        padded = xp.concatenate([past, x], axis=2)
        wide, ww = widen(padded), widen(w)
        y = xp.zeros((b, c, length), dtype=wide.dtype)
        for j in range(k):
            y += wide[:, :, j:j + length] * ww[None, :, 0, j, None]
        if bias is not None:
            y += widen(bias)[None, :, None]
        y = y.astype(x.dtype)
        if activation != "none":
            f = widen(y)
            y = (f / (1 + xp.exp(-f))).astype(x.dtype)
        return [y, padded[:, :, padded.shape[2] - (k - 1):]][:len(layer.outputs)]
