"""Scaled-dot-product attention core shared by ONNX ``Attention`` and dist_rt's fused op.

Math, for query head ``h`` and its kv head ``h // G`` (``G = Hq / Hkv``, grouped-query
attention; ``G = 1`` is multi-head attention):

    S[b, h, i, j] = softcap(scale * q[b, h, i] . k[b, h // G, j]) + bias[b, h, i, j]
    P[b, h, i, :] = softmax(S[b, h, i, :])      (a row whose bias is all -inf gives P = 0)
    Y[b, h, i]    = sum_j P[b, h, i, j] * v[b, h // G, j]

GQA is computed without repeating K/V: q is viewed as (B, Hkv, G, S, D), so one batched
matmul serves the G query heads of each kv head. Scores, softmax and the P.V product run in
float32 for 16-bit inputs (float64 stays float64); the output is cast back to q's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.errors import ShapeError


def score_dtype(dtype: Any) -> np.dtype:
    """float32 for 16-bit inputs, else the input dtype (float64 keeps its precision)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def mask_to_bias(xp: Any, mask: Any, dtype: Any) -> Any:
    """A bool mask (True = attend) becomes 0 / -inf; a float mask is cast and used as is."""
    if mask.dtype == np.bool_:
        return xp.where(mask, dtype.type(0), dtype.type(-np.inf))
    return mask.astype(dtype)


def causal_bias(xp: Any, s: int, skv: int, offset: Any, dtype: Any,
                left: int = -1, right: int = -1, causal: bool = True) -> Any:
    """0 / -inf bias letting query ``i`` see key ``j`` iff ``j <= i + offset``.

    Args:
        xp: Array module.
        s: Query length.
        skv: Key length.
        offset: int, or a (B,) array for per-batch offsets (the result is then (B, 1, S, Skv)).
        dtype: Float dtype of the result.
        left: Sliding window: also require ``i + offset - j <= left`` (-1: unbounded).
        right: Sliding window: also require ``j - (i + offset) <= right`` (-1: unbounded).
        causal: Apply the causal frontier (False: only the window bounds).
    """
    i = xp.arange(s).reshape(s, 1)
    j = xp.arange(skv).reshape(1, skv)
    per_batch = np.ndim(offset) > 0
    pos = i + (xp.asarray(offset).reshape(-1, 1, 1) if per_batch else int(offset))
    allowed = xp.ones(pos.shape[:-1] + (skv,), dtype=bool)
    if causal:
        allowed &= j <= pos
    if left >= 0:
        allowed &= pos - j <= left
    if right >= 0:
        allowed &= j - pos <= right
    bias = xp.where(allowed, dtype.type(0), dtype.type(-np.inf))
    return bias[:, None] if per_batch else bias


def softmax_rows(xp: Any, scores: Any) -> Any:
    """Softmax over the last axis; rows that are entirely -inf give zeros, not NaN."""
    top = scores.max(axis=-1, keepdims=True)
    top = xp.where(xp.isneginf(top), 0, top)
    e = xp.exp(scores - top)
    total = e.sum(axis=-1, keepdims=True)
    return e / xp.where(total == 0, 1, total)


def attend(xp: Any, q: Any, k: Any, v: Any, *, scale: float, bias: Any = None,
           softcap: float = 0.0, where: str = "") -> tuple[Any, dict[str, Any]]:
    """Attention of 4-D q (B, Hq, S, D), k (B, Hkv, Skv, D), v (B, Hkv, Skv, Dv).

    Args:
        xp: Array module.
        q: Queries.
        k: Keys.
        v: Values.
        scale: Multiplies q.k.
        bias: Additive bias broadcastable to (B, Hq, S, Skv) in the score dtype, or None.
        softcap: ``softcap * tanh(scores / softcap)`` before the bias when > 0.
        where: Error prefix (layer name and op type).

    Returns:
        ``(Y, stages)``: Y (B, Hq, S, Dv) in q's dtype; ``stages`` holds the intermediate
        score tensors (B, Hq, S, Skv): ``"qk"`` (scaled and soft-capped), ``"biased"``,
        ``"softmax"``.

    Raises:
        ShapeError: Shapes do not fit (head dims, GQA ratio, batch, kv lengths).
    """
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    if k.shape[0] != b or v.shape[0] != b or k.shape[3] != d or v.shape[1] != hkv \
            or v.shape[2] != skv or hkv == 0 or hq % hkv:
        raise ShapeError(f"{where}q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                         f"do not fit: expected q (B, Hq, S, D), k (B, Hkv, Skv, D), "
                         f"v (B, Hkv, Skv, Dv) with Hq a multiple of Hkv")
    g = hq // hkv
    dt = score_dtype(q.dtype)
    qg = q.astype(dt, copy=False).reshape(b, hkv, g, s, d)
    kt = xp.swapaxes(k.astype(dt, copy=False), -1, -2)[:, :, None]
    scores = (xp.matmul(qg, kt) * dt.type(scale)).reshape(b, hq, s, skv)
    if softcap > 0:
        scores = xp.tanh(scores / dt.type(softcap)) * dt.type(softcap)
    stages = {"qk": scores}
    if bias is not None:
        scores = scores + bias
    stages["biased"] = scores
    probs = softmax_rows(xp, scores)
    if bias is not None:
        # rows masked entirely by the bias give 0, whatever the scores were
        dead = xp.isneginf(xp.broadcast_to(bias, scores.shape).max(axis=-1, keepdims=True))
        probs = xp.where(dead, dt.type(0), probs)
    stages["softmax"] = probs
    out = xp.matmul(probs.reshape(b, hkv, g, s, skv), v.astype(dt, copy=False)[:, :, None])
    return out.reshape(b, hq, s, v.shape[3]).astype(q.dtype, copy=False), stages
