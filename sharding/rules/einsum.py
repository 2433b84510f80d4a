"""Contractions (MatMul, Gemm, Einsum) from einsum notation, like DTensor's matrix rules.

For ``Y = einsum("mk,kn->mn", X, W)`` over N ranks, each index letter gives one strategy::

    shard letter   X       W       Y       meaning (Megatron names)
    m              S(0)    R       S(0)    split rows of X (data/sequence parallel)
    n              R       S(1)    S(1)    column-parallel: W = [W_1 ... W_N], Y_r = X W_r
    k              S(1)    S(0)    P       row-parallel: Y = sum_r X_r W_r (all-reduce later)

Rank table for column-parallel ``W`` of shape (K, N_out) on 4 ranks::

    rank | W columns            | Y columns
    r    | [r*N_out/4, (r+1)*N_out/4) | same

A letter is sharded in every operand that has it with its full size; an operand that
broadcasts it (size 1) stays replicated. Letters whose size is symbolic or not divisible by N
are never sharded (replicate is always offered by the caller).
"""

from __future__ import annotations

import string

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule


def einsum_strategies(layer, ctx: RuleContext, specs: list[str], out_spec: str,
                      partial_ok: bool = True) -> list[Strategy]:
    """Strategies of a contraction ``specs[0],specs[1],...->out_spec``.

    Args:
        layer: The layer; ``layer.inputs[i]`` matches ``specs[i]`` (None = no operand).
        ctx: Rule context.
        specs: Index letters per input (``""`` for inputs outside the contraction).
        out_spec: Index letters of output 0.
        partial_ok: Whether contracted letters may be sharded (output Partial).

    Returns:
        One strategy per shardable letter.
    """
    n = ctx.world_size
    out: list[Strategy] = []
    letters = sorted(set("".join(specs)))
    for letter in letters:
        contracted = letter not in out_spec
        if contracted and not partial_ok:
            continue
        placements: list = []
        full = 0
        ok = True
        for t, spec in zip(layer.inputs, specs, strict=False):
            if t is None or letter not in spec:
                placements.append(None if t is None else R)
                continue
            if t.shape is None:
                ok = False
                break
            d = spec.index(letter)
            size = t.shape[d]
            if size == 1:
                placements.append(R)
                continue
            if not ctx.can_shard(t, d):
                ok = False
                break
            full += 1
            placements.append(Shard(d))
        if not ok or full == 0:
            continue
        if contracted:
            # Every operand holding k must be split on it, else the sum double counts.
            if any(letter in s and p is not None and p.is_replicate()
                   for s, p in zip(specs, placements, strict=False)):
                continue
            result = P
        else:
            result = Shard(out_spec.index(letter))
        name = "row" if contracted else ("column" if letter == out_spec[-1] else f"split-{letter}")
        out.append(Strategy(tuple(placements), (result,), name, n))
    return out


@register_rule("MatMul")
def matmul_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Y = A @ B`` with broadcast batch dims: ``...mk,...kn->...mn``.

    1-D operands are left replicated.
    """
    a, b = layer.inputs[0], layer.inputs[1]
    if a is None or b is None or a.shape is None or b.shape is None:
        return []
    ra, rb = len(a.shape), len(b.shape)
    if ra < 2 or rb < 2:
        return []
    nb = max(ra, rb) - 2
    batch = string.ascii_lowercase[:nb]
    sa = batch[nb - (ra - 2):] + "yz"
    sb = batch[nb - (rb - 2):] + "zx"
    strategies = einsum_strategies(layer, ctx, [sa, sb], batch + "yx")
    # Partial inputs pass through a product with a replicated operand (linearity).
    strategies.append(Strategy((P, R), (P,), "partial", 1))
    strategies.append(Strategy((R, P), (P,), "partial", 1))
    return strategies


@register_rule("Gemm")
def gemm_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """``Y = alpha * A' B' + beta * C`` with ``A' = A^T`` if transA, ``B' = B^T`` if transB.

    The bias C follows Y's sharding on n; under a k split (row-parallel) C must be Partial:
    only rank 0 adds it (a Partial constant holds zeros on the other ranks).
    """
    a, b = layer.inputs[0], layer.inputs[1]
    c = layer.inputs[2] if len(layer.inputs) > 2 else None
    if a is None or b is None or a.shape is None or b.shape is None or len(a.shape) != 2:
        return []
    sa = "km" if layer.attr("transA", 0) else "mk"
    sb = "nk" if layer.attr("transB", 0) else "kn"
    strategies = []
    for s in einsum_strategies(layer, ctx, [sa, sb] + ([""] if len(layer.inputs) > 2 else []),
                               "mn"):
        ins = list(s.inputs)
        if c is not None:
            if s.outputs[0].is_partial():
                if not c.is_constant:
                    continue
                ins[2] = P
            elif s.outputs[0].is_shard() and c.shape is not None:
                d = s.outputs[0].dim - 2 + len(c.shape)
                ins[2] = Shard(d) if d >= 0 and c.shape[d] != 1 else R
        strategies.append(Strategy(tuple(ins), s.outputs, s.name, s.split))
    return strategies


@register_rule("Einsum")
def einsum_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Any explicit ``Einsum`` equation without ellipsis, e.g. MoE ``"ebd,edf->ebf"``."""
    eq = str(layer.attr("equation", "")).replace(" ", "")
    if "->" not in eq or "." in eq:
        return []
    lhs, rhs = eq.split("->")
    specs = lhs.split(",")
    if len(specs) != len(layer.inputs):
        return []
    return einsum_strategies(layer, ctx, specs, rhs)
