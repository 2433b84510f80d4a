"""LinearAttention: recurrent linear attention (linear, gated, delta, gated delta rules)."""

from __future__ import annotations

import math

import numpy as np

from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op

_RULES = ("linear", "gated", "delta", "gated_delta")


def _heads(x, n):
    b, t, hd = x.shape
    return x.reshape(b, t, n, hd // n).transpose(0, 2, 1, 3).astype(np.float32)


@register_op("LinearAttention", since_opset=27)
class LinearAttention(Op):
    """Per step t, state S (B, H_kv, d_k, d_v) in float32:

    ``S *= exp(g_t)`` (gated), ``v_t = beta_t * (v_t - S^T k_t)`` (delta),
    ``S += k_t v_t^T``, ``o_t = scale * q_t S`` (S repeated over query-head groups).
    Inputs query/key/value (B, T, H*D), past_state, decay, beta; outputs Y (B, T, H_q*d_v)
    and present_state.
    """

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 6)
        return [TensorDesc(inputs[0].dtype, None), TensorDesc(
            inputs[3].dtype if len(inputs) > 3 and inputs[3] is not None else inputs[0].dtype,
            None)][:len(layer.outputs)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        q, k, v = inputs[:3]
        past, decay, beta = (list(inputs[3:]) + [None] * 3)[:3]
        rule = layer.attr("update_rule", "gated_delta")
        hq, hkv = layer.attr("q_num_heads", None), layer.attr("kv_num_heads", None)
        if rule not in _RULES:
            raise fail(layer, f"update_rule {rule!r} is not one of {', '.join(_RULES)}")
        if not hq or not hkv or hq % hkv:
            raise fail(layer, f"q_num_heads {hq} must be a positive multiple of kv_num_heads "
                              f"{hkv}")
        gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
        if gated != (decay is not None) or delta != (beta is not None):
            raise fail(layer, f"update_rule {rule!r} needs decay {gated} and beta {delta}")
        if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
            raise fail(layer, "query, key and value must be rank 3 (B, T, H*D)")
        b, t, _ = q.shape
        dk, dv = q.shape[2] // hq, v.shape[2] // hkv
        q4, k4, v4 = _heads(q, hq), _heads(k, hkv), _heads(v, hkv)
        if gated:
            g = (decay.reshape(b, t, hkv, 1) if decay.shape[-1] == hkv
                 else decay.reshape(b, t, hkv, dk)).transpose(0, 2, 1, 3).astype(np.float32)
        if delta:
            bt = beta.reshape(b, t, beta.shape[-1], 1).transpose(0, 2, 1, 3).astype(np.float32)
        if past is not None:
            if past.shape != (b, hkv, dk, dv):
                raise fail(layer, f"past_state has shape {past.shape}, expected "
                                  f"{(b, hkv, dk, dv)}")
            state, state_dtype = past.astype(np.float32), past.dtype
        else:
            state, state_dtype = xp.zeros((b, hkv, dk, dv), dtype=np.float32), q.dtype
        scale = layer.attr("scale", None)
        scale = 1.0 / math.sqrt(dk) if not scale else float(scale)
        group = hq // hkv
        out = xp.zeros((b, hq, t, dv), dtype=np.float32)
        for i in range(t):
            kt, vt = k4[:, :, i], v4[:, :, i]
            if gated:
                state = state * xp.exp(g[:, :, i])[..., None]
            if delta:
                vt = bt[:, :, i] * (vt - xp.einsum("bhdm,bhd->bhm", state, kt))
            state = state + kt[..., :, None] * vt[..., None, :]
            read = state if group == 1 else xp.repeat(state, group, axis=1)
            out[:, :, i] = scale * xp.einsum("bhd,bhdm->bhm", q4[:, :, i], read)
        y = out.transpose(0, 2, 1, 3).reshape(b, t, hq * dv).astype(q.dtype)
        return [y, state.astype(state_dtype)][:len(layer.outputs)]
