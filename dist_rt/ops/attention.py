"""ONNX Attention (opsets 23-25): scaled-dot-product attention over 3-D or 4-D inputs.

Follows the ONNX reference exactly: 3-D inputs (B, S, H * D) are split into
``q_num_heads`` / ``kv_num_heads`` heads; ``past_key`` / ``past_value`` (B, Hkv, P, D) are
prepended to K/V and returned as ``present_*``; ``attn_mask`` (bool True = attend, or float
additive) shorter than the total kv length is padded with "masked"; ``is_causal`` lets query
``i`` see keys ``j <= i + P`` (P = past length, or ``nonpad_kv_seqlen[b] - S`` per batch);
``nonpad_kv_seqlen`` (opset 24) masks keys past each batch's length; ``left_window_size`` /
``right_window_size`` (opset 25) add a sliding window; ``softcap`` caps the scores with tanh.
``qk_matmul_output_mode`` selects the optional 4th output: 0/1 scaled (soft-capped) Q.K^T,
2 after the bias, 3 after the softmax. The math is in :mod:`dist_rt.ops._attention`.
"""

from __future__ import annotations

import math

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._attention import attend, causal_bias, mask_to_bias, score_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def _split_heads(layer, t, heads, what):
    """(B, S, H * D) -> (B, H, S, D)."""
    if not heads or t.shape[2] % heads:
        raise ShapeError(f"layer '{layer.name}' (Attention): {what} has shape {tuple(t.shape)};"
                         f" hidden size {t.shape[2]} must be a multiple of the head count "
                         f"{heads} (q_num_heads / kv_num_heads attributes)")
    b, s, hidden = t.shape
    return t.reshape(b, s, heads, hidden // heads).transpose(0, 2, 1, 3)


def _heads(layer, name, shape3):
    heads = int(layer.attr(name, 0) or 0)
    return heads if heads else None


@register_op("Attention", since_opset=23)
class Attention(Op):
    """ONNX Attention: Q, K, V, attn_mask, past_key, past_value, nonpad_kv_seqlen."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 7)
        q, k, v = inputs[:3]
        past = inputs[4] if len(inputs) > 4 else None
        nout = len(layer.outputs)
        if any(t.shape is None for t in (q, k, v)):
            return [TensorDesc(q.dtype, None)] * nout
        rank = len(q.shape)
        if rank not in (3, 4) or len(k.shape) != rank or len(v.shape) != rank:
            raise ShapeError(f"layer '{layer.name}' (Attention): Q {q.shape}, K {k.shape}, "
                             f"V {v.shape} must all be 3-D (B, S, H*D) or all 4-D (B, H, S, D)")
        if rank == 4:
            y = (q.shape[0], q.shape[1], q.shape[2], v.shape[3])
            hkv, skv, dk, dv = k.shape[1], k.shape[2], k.shape[3], v.shape[3]
        else:
            hq, hkv = _heads(layer, "q_num_heads", q.shape), _heads(layer, "kv_num_heads", None)
            if not hq or not hkv:
                raise ShapeError(f"layer '{layer.name}' (Attention): 3-D inputs need the "
                                 f"q_num_heads and kv_num_heads attributes")
            y = (q.shape[0], q.shape[1], _div(v.shape[2], hkv) * hq
                 if isinstance(v.shape[2], int) else None)
            skv, dk, dv = k.shape[1], _div(k.shape[2], hkv), _div(v.shape[2], hkv)
        total = skv
        if past is not None and past.shape is not None:
            total = past.shape[2] + skv if isinstance(past.shape[2], int) and \
                isinstance(skv, int) else None
        descs = [TensorDesc(q.dtype, y),
                 TensorDesc(k.dtype, (q.shape[0], hkv, total, dk)),
                 TensorDesc(v.dtype, (q.shape[0], hkv, total, dv))]
        if nout > 3:
            hq = q.shape[1] if rank == 4 else _heads(layer, "q_num_heads", None)
            descs.append(TensorDesc(q.dtype, (q.shape[0], hq, q.shape[-2 if rank == 4 else 1],
                                              total)))
        return descs[:nout]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        inputs = list(inputs) + [None] * (7 - len(inputs))
        q, k, v, mask, past_k, past_v, nonpad = inputs[:7]
        where = f"layer '{layer.name}' (Attention): "
        if (past_k is None) != (past_v is None):
            raise ShapeError(f"{where}past_key and past_value must be given together")
        rank = q.ndim
        if rank == 3:
            q = _split_heads(layer, q, int(layer.attr("q_num_heads", 0)), "Q")
            k = _split_heads(layer, k, int(layer.attr("kv_num_heads", 0)), "K")
            v = _split_heads(layer, v, int(layer.attr("kv_num_heads", 0)), "V")
        elif rank != 4 or k.ndim != 4 or v.ndim != 4:
            raise ShapeError(f"{where}Q {tuple(q.shape)}, K {tuple(k.shape)}, V "
                             f"{tuple(v.shape)} must all be 3-D or all 4-D")
        if past_k is not None:
            k = xp.concatenate([past_k, k], axis=2)
            v = xp.concatenate([past_v, v], axis=2)
        present_k, present_v = k, v
        s, skv = q.shape[2], k.shape[2]
        dt = score_dtype(q.dtype)
        bias = None
        if mask is not None:
            short = skv - mask.shape[-1]
            if short < 0:
                raise ShapeError(f"{where}attn_mask {tuple(mask.shape)} is longer than the "
                                 f"total kv length {skv}")
            bias = mask_to_bias(xp, mask, dt)
            if short:
                width = [(0, 0)] * (bias.ndim - 1) + [(0, short)]
                bias = xp.pad(bias, width, constant_values=-np.inf)
        offset = 0 if past_k is None else past_k.shape[2]
        if nonpad is not None:
            offset = nonpad.reshape(-1).astype(np.int64) - s
        causal = bool(int(layer.attr("is_causal", 0)))
        left = int(layer.attr("left_window_size", -1))
        right = int(layer.attr("right_window_size", -1))
        if causal or left >= 0 or right >= 0:
            extra = causal_bias(xp, s, skv, offset, dt, left, right, causal)
            bias = extra if bias is None else bias + extra
        if nonpad is not None:
            keep = xp.arange(skv)[None, :] < nonpad.reshape(-1, 1)
            pad_bias = xp.where(keep, dt.type(0), dt.type(-np.inf))[:, None, None, :]
            bias = pad_bias if bias is None else bias + pad_bias
        scale = layer.attr("scale", None)
        scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)
        y, stages = attend(xp, q, k, v, scale=scale, bias=bias,
                           softcap=float(layer.attr("softcap", 0.0) or 0.0), where=where)
        if rank == 3:
            y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
        outs = [y, present_k, present_v]
        if len(layer.outputs) > 3:
            mode = int(layer.attr("qk_matmul_output_mode", 0))
            key = {0: "qk", 1: "qk", 2: "biased", 3: "softmax"}.get(mode)
            if key is None:
                raise ShapeError(f"{where}qk_matmul_output_mode {mode}, expected 0 to 3")
            qk = xp.broadcast_to(stages[key], (q.shape[0], q.shape[1], s, skv))
            outs.append(qk.astype(q.dtype))
        return outs[:len(layer.outputs)]


def _div(a, b):
    return a // b if isinstance(a, int) and b else None
