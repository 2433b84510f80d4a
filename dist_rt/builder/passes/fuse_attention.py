"""Fuse exported scaled-dot-product attention into one dist_rt::Attention layer.

Pattern (as PyTorch exporters write ``softmax(q k^T * scale + mask) v`` with HF's
``repeat_kv`` for grouped-query attention)::

    k_rep = Reshape(Expand(Unsqueeze(k, axes=[2]), (.., G, ..)), (B, Hkv*G, S, D))  [GQA]
    Y = MatMul(Softmax(Add(Mul(MatMul(q, Transpose(k_rep, [0, 1, 3, 2])), scale), mask),
               axis=-1), v_rep)

becomes ``Attention(q, k, v[, mask], scale, causal, num_heads, kv_num_heads)`` reading the
*unrepeated* k and v (query head ``h`` reads kv head ``h // G``, exactly what the Expand +
Reshape repeat produces). The Mul (or Div) by a scalar is optional (scale 1 without it);
the mask Add is optional. A mask that is the exporter's causal pattern
``Where(LessOrEqual(r[None, :], r[:, None]), 0, -big)`` over one ``Range`` ``r`` of the
sequence length becomes ``causal=1`` (no mask tensor at all); any other mask is kept as the
layer's additive mask input.

Rejected alternative: matching on layer names (``/self_attn/``): exporters differ in
naming, while the dataflow pattern is what the math needs.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState
from dist_rt.builder.passes.fuse_util import (
    Matcher,
    add_fused,
    anchors,
    axes_of,
    const_scalar,
    other,
    prune_fused,
)
from dist_rt.network import Layer, Network, Tensor

#: A Where's "blocked" value must be at most this to read as -infinity (fp16 models use -1e4).
_NEG_BIG = -1e4


def _unrepeat(m: Matcher, t: Tensor) -> tuple[Tensor, list[Layer]]:
    """Undo the GQA repeat ``Reshape(Expand(Unsqueeze(x, [2])))``: (x, the three layers)."""
    reshape = m.producer(t, "Reshape")
    expand = m.producer(reshape.inputs[0], "Expand") if reshape else None
    unsq = m.producer(expand.inputs[0], "Unsqueeze") if expand else None
    if unsq is None or axes_of(unsq) != [2]:
        return t, []
    x = unsq.inputs[0]
    if x.shape is None or t.shape is None or len(x.shape) != 4 or len(t.shape) != 4:
        return t, []
    kv, heads = x.shape[1], t.shape[1]
    if not (isinstance(kv, int) and isinstance(heads, int) and kv and heads % kv == 0):
        return t, []
    if x.shape[0] != t.shape[0] or x.shape[2:] != t.shape[2:]:
        return t, []
    return x, [reshape, expand, unsq]


def _is_causal(m: Matcher, mask: Tensor, s_q, s_k) -> bool:
    """True for the exporter's top-left causal mask over a Range of the sequence length."""
    unsq = m.producer(mask, "Unsqueeze")
    where = m.producer(unsq.inputs[0], "Where") if unsq else None
    if where is None or axes_of(unsq) != [0, 1]:
        return False
    zero, blocked = const_scalar(where.inputs[1]), const_scalar(where.inputs[2])
    if zero != 0.0 or blocked is None or blocked > _NEG_BIG:
        return False
    cmp = m.producer(where.inputs[0], ("LessOrEqual", "GreaterOrEqual"))
    if cmp is None:
        return False
    cols, rows = cmp.inputs if cmp.op_type == "LessOrEqual" else cmp.inputs[::-1]
    col_u, row_u = m.producer(cols, "Unsqueeze"), m.producer(rows, "Unsqueeze")
    if col_u is None or row_u is None or axes_of(col_u) != [0] or axes_of(row_u) != [1]:
        return False
    rng = m.producer(col_u.inputs[0], "Range")
    if rng is None or row_u.inputs[0] is not col_u.inputs[0]:
        return False
    if const_scalar(rng.inputs[0]) != 0.0 or const_scalar(rng.inputs[2]) != 1.0:
        return False
    # Top-left causal equals end-aligned causal only for square scores (self-attention).
    shape = mask.shape
    return (shape is not None and len(shape) == 4 and s_q == s_k
            and shape[2] == s_q and shape[3] == s_k)


def _match(m: Matcher, out_mm: Layer) -> dict | None:
    """Match the pattern ending at ``out_mm`` = MatMul(probs, v)."""
    probs = out_mm.inputs[0]
    softmax = m.producer(probs, "Softmax")
    if softmax is None or not m.private(probs) or int(softmax.attr("axis", -1)) not in (-1, 3):
        return None
    chain, t = [out_mm, softmax], softmax.inputs[0]
    mask = None
    add = m.producer(t, "Add")
    if add is not None and m.private(t):
        scores_in = add.inputs[0] if m.producer(add.inputs[0], ("Mul", "Div", "MatMul")) \
            else add.inputs[1]
        mask, t = other(add, scores_in), scores_in
        chain.append(add)
    scale = 1.0
    mul = m.producer(t, ("Mul", "Div"))
    if mul is not None and m.private(t):
        raw = mul.inputs[0]
        c = const_scalar(mul.inputs[1])
        if c is None and mul.op_type == "Mul":
            raw, c = mul.inputs[1], const_scalar(mul.inputs[0])
        if c is None or c == 0.0:
            return None
        scale = c if mul.op_type == "Mul" else 1.0 / c
        chain.append(mul)
        t = raw
    qk = m.producer(t, "MatMul")
    if qk is None or not m.private(t):
        return None
    q, kt = qk.inputs
    tr = m.producer(kt, "Transpose")
    if tr is None or list(tr.attr("perm", [])) != [0, 1, 3, 2] or not m.private(kt):
        return None
    chain += [qk, tr]
    k, k_chain = _unrepeat(m, tr.inputs[0])
    v, v_chain = _unrepeat(m, out_mm.inputs[1])
    if q.shape is None or k.shape is None or v.shape is None or len(q.shape) != 4:
        return None
    heads, kv_heads = q.shape[1], k.shape[1]
    if not (isinstance(heads, int) and isinstance(kv_heads, int) and v.shape[1] == kv_heads
            and heads % kv_heads == 0):
        return None
    if len(k.shape) != 4 or len(v.shape) != 4:
        return None
    causal = mask is not None and _is_causal(m, mask, q.shape[2], k.shape[2])
    return {"q": q, "k": k, "v": v, "mask": None if causal else mask, "causal": int(causal),
            "scale": float(scale), "num_heads": heads, "kv_num_heads": kv_heads,
            "chain": chain + k_chain + v_chain}


def run(network: Network, state: BuildState) -> str:
    """Replace every matched attention pattern by one dist_rt::Attention layer.

    Args:
        network: Edited in place.
        state: Build state (unused).

    Returns:
        A summary line.
    """
    m = Matcher(network)
    fused = causal = 0
    for layer in anchors(network, "MatMul"):
        p = _match(m, layer)
        if p is None:
            continue
        inputs = [p["q"], p["k"], p["v"]] + ([p["mask"]] if p["mask"] is not None else [])
        attrs = {"scale": p["scale"], "causal": p["causal"], "num_heads": p["num_heads"],
                 "kv_num_heads": p["kv_num_heads"]}
        add_fused(network, "Attention", inputs, attrs, name=f"{layer.name}.attention",
                  outputs=layer.outputs[:1], replaces=p["chain"])
        fused += 1
        causal += p["causal"]
    prune_fused(network, fused)
    return f"{fused} attention patterns fused ({causal} causal)"
