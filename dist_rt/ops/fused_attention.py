"""dist_rt::Attention: fused scaled-dot-product attention, the target of attention fusion.

Inputs ``q`` (B, Hq, S, D), ``k`` (B, Hkv, Skv, D), ``v`` (B, Hkv, Skv, Dv) and an optional
``mask`` broadcastable to (B, Hq, S, Skv): bool (True = attend) or float (added to the
scores). Output ``Y`` (B, Hq, S, Dv)::

    S[b, h, i, j] = scale * q[b, h, i] . k[b, h // G, j] + mask[b, h, i, j]
                    (+ -inf where causal and j > i + Skv - S)
    Y[b, h, i]    = sum_j softmax_j(S[b, h, i, :]) * v[b, h // G, j]

* ``scale`` defaults to ``1 / sqrt(D)``.
* ``causal=1`` aligns the causal frontier to the *end*: query ``i`` attends keys
  ``j <= i + (Skv - S)``, so a decode step (S = 1) against a KV cache sees every key, and
  S = Skv is ordinary top-left causal attention.
* GQA: ``G = num_heads / kv_num_heads``; query head ``h`` reads kv head ``h // G``.
* A query row whose keys are all masked returns zeros (no NaN).
* Softmax runs in float32 for float16/bfloat16 inputs; Y has q's dtype.
* ``output_layout="bshd"`` writes Y as (B, S, Hq, Dv) instead (default ``"bhsd"``): the
  exporter's ``Transpose(0, 2, 1, 3)`` before the output projection's Reshape is then folded
  into the op (``builder/passes/fuse_attention_layout.py``) and its copy disappears.

Tensor parallelism (head split): heads are independent, so a rank holding query heads
``[h0, h1)`` and their kv heads ``[h0 // G, h1 // G)`` computes exactly those heads of Y with
no communication; ``layer.nb_ranks`` is the number of ranks the heads are split over. The
attributes ``num_heads`` / ``kv_num_heads`` stay the *global* head counts (they fix G); the
local inputs must hold whole kv groups (``q.shape[1] == k.shape[1] * G``, i.e. ``h0`` is a
multiple of G), which makes the local mapping ``h_local // G`` exact. A head-sharded mask
(dim 1 of size > 1) is sliced the same way by the partitioner.
"""

from __future__ import annotations

import math

from dist_rt.errors import ShapeError
from dist_rt.ops._attention import attend, causal_bias, mask_to_bias, score_dtype
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op

#: Values of the ``output_layout`` attribute: (B, H, S, D) or (B, S, H, D).
LAYOUTS = ("bhsd", "bshd")


def output_layout(layer) -> str:
    """The layer's ``output_layout`` (bytes from ONNX decoded), checked against LAYOUTS."""
    value = layer.attr("output_layout", "bhsd")
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in LAYOUTS:
        raise ShapeError(f"layer '{layer.name}' (Attention): output_layout {value!r} is not "
                         f"one of {list(LAYOUTS)}")
    return value


def _group(layer, hq, hkv):
    """The GQA ratio from the attributes (global heads), else from the local shapes."""
    heads, kv_heads = int(layer.attr("num_heads", 0)), int(layer.attr("kv_num_heads", 0))
    if heads and kv_heads:
        if heads % kv_heads:
            raise ShapeError(f"layer '{layer.name}' (Attention): num_heads {heads} is not a "
                             f"multiple of kv_num_heads {kv_heads}")
        return heads // kv_heads
    if isinstance(hq, int) and isinstance(hkv, int) and hkv and hq % hkv == 0:
        return hq // hkv
    return None


@register_op("Attention", since_opset=1, domain="dist_rt")
class FusedAttention(Op):
    """dist_rt fused attention: q, k, v, optional mask; causal, scale, num_heads,
    kv_num_heads."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 4)
        q, k, v = inputs[:3]
        mask = inputs[3] if len(inputs) > 3 else None
        shapes = [t.shape for t in (q, k, v)]
        if any(s is None for s in shapes):
            return [TensorDesc(q.dtype, None)]
        qs, ks, vs = shapes
        if not (len(qs) == len(ks) == len(vs) == 4):
            raise ShapeError(f"layer '{layer.name}' (Attention): q {qs}, k {ks}, v {vs} must "
                             f"all be 4-D (B, H, S, D)")

        def differ(a, b):
            return isinstance(a, int) and isinstance(b, int) and a != b

        g = _group(layer, qs[1], ks[1])
        bad = (differ(qs[0], ks[0]) or differ(qs[0], vs[0]) or differ(qs[3], ks[3])
               or differ(ks[1], vs[1]) or differ(ks[2], vs[2])
               or (g is not None and isinstance(ks[1], int) and differ(qs[1], ks[1] * g)))
        if bad:
            raise ShapeError(f"layer '{layer.name}' (Attention): q {qs}, k {ks}, v {vs} do not "
                             f"fit: expected q (B, Hq, S, D), k (B, Hkv, Skv, D), "
                             f"v (B, Hkv, Skv, Dv) with Hq = Hkv * {g or 'G'}")
        if mask is not None and mask.shape is not None:
            full = (qs[0], qs[1], qs[2], ks[2])
            try:
                out = broadcast_shapes(layer, full, mask.shape)
            except ShapeError:
                out = None
            # the mask must broadcast *to* the score shape, never enlarge it
            if len(mask.shape) > 4 or out is None or any(
                    isinstance(a, int) and isinstance(b, int) and a != b
                    for a, b in zip(out, full, strict=True)):
                raise ShapeError(f"layer '{layer.name}' (Attention): mask {mask.shape} does "
                                 f"not broadcast to (B, Hq, S, Skv) {full}")
        if output_layout(layer) == "bshd":
            return [TensorDesc(q.dtype, (qs[0], qs[2], qs[1], vs[3]))]
        return [TensorDesc(q.dtype, (qs[0], qs[1], qs[2], vs[3]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        q, k, v = inputs[:3]
        mask = inputs[3] if len(inputs) > 3 else None
        where = f"layer '{layer.name}' (Attention): "
        if not (q.ndim == k.ndim == v.ndim == 4):
            raise ShapeError(f"{where}q {tuple(q.shape)}, k {tuple(k.shape)}, v "
                             f"{tuple(v.shape)} must all be 4-D (B, H, S, D)")
        g = _group(layer, q.shape[1], k.shape[1])
        if g is not None and q.shape[1] != k.shape[1] * g:
            raise ShapeError(f"{where}q has {q.shape[1]} heads and k {k.shape[1]}, expected "
                             f"{k.shape[1] * g} query heads (GQA group size {g})")
        scale = layer.attr("scale", None)
        scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else float(scale)
        dt = score_dtype(q.dtype)
        bias = None
        if mask is not None:
            if mask.ndim > 4:
                raise ShapeError(f"{where}mask {tuple(mask.shape)} has more than 4 dims")
            bias = mask_to_bias(xp, mask, dt)
        s, skv = q.shape[2], k.shape[2]
        if int(layer.attr("causal", 0)):
            causal = causal_bias(xp, s, skv, skv - s, dt)
            bias = causal if bias is None else bias + causal
        if bias is not None:
            try:
                xp.broadcast_shapes(bias.shape, (q.shape[0], q.shape[1], s, skv))
            except ValueError as exc:
                raise ShapeError(f"{where}mask {tuple(mask.shape)} does not broadcast to "
                                 f"(B, Hq, S, Skv) {(q.shape[0], q.shape[1], s, skv)}") from exc
        y, _ = attend(xp, q, k, v, scale=scale, bias=bias, where=where)
        if output_layout(layer) == "bshd":
            y = xp.ascontiguousarray(y.transpose(0, 2, 1, 3))  # the reference pays the copy
        return [y]
