"""Elementwise ops with NumPy broadcasting, and the ops that are linear in their inputs.

For ``Y = f(A, B)`` with ``Y`` of rank ``r``, sharding output dim ``d`` over N ranks::

    operand dim aligned with d        operand placement
    same size as Y's dim d            S(aligned)        (rank r holds chunk r)
    size 1 or missing (broadcast)     R                 (every rank needs all of it)

Partial values pass through ops that are linear in them: ``sum_r x_r + sum_r y_r =
sum_r (x_r + y_r)`` (Add/Sub, all operands Partial), ``(sum_r x_r) * c = sum_r x_r c``
(Mul, Div by a replicated operand), and unary linear ops (Neg, Identity, float Cast).
"""

from __future__ import annotations

from sharding.placement import P, R, Shard
from sharding.rules import RuleContext, Strategy, register_rule

_BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Equal", "Less", "Greater",
           "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "PRelu", "Sum", "Mean",
           "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Clip")
_UNARY = ("Relu", "Sigmoid", "Tanh", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg",
          "Abs", "Cast", "Identity", "Not", "Sin", "Cos", "Tan", "Softplus", "Softsign", "Elu",
          "Selu", "LeakyRelu", "HardSigmoid", "HardSwish", "Mish", "Celu", "ThresholdedRelu",
          "Floor", "Ceil", "Round", "Sign", "IsNaN", "IsInf", "Dropout", "Asin", "Acos", "Atan",
          "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot", "Swish", "CastLike")
_LINEAR_UNARY = ("Neg", "Identity", "Cast", "Dropout", "CastLike")


def broadcast_strategies(layer, ctx: RuleContext, operands: list[int]) -> list[Strategy]:
    """Shard each output dim; operands follow by right-aligned broadcasting.

    Args:
        layer: The layer; output 0 has the broadcast shape.
        ctx: Rule context.
        operands: Indices of inputs that broadcast with the output (others replicated).

    Returns:
        One strategy per shardable output dim.
    """
    y = layer.outputs[0]
    if y.shape is None:
        return []
    ro = len(y.shape)
    out = []
    for d in range(ro):
        if not ctx.can_shard(y, d):
            continue
        ins: list = []
        ok = True
        for i, t in enumerate(layer.inputs):
            if t is None:
                ins.append(None)
                continue
            if i not in operands:
                ins.append(R)
                continue
            if t.shape is None:
                ok = False
                break
            a = d - (ro - len(t.shape))
            if a >= 0 and t.shape[a] == y.shape[d]:
                ins.append(Shard(a))
            elif a < 0 or t.shape[a] == 1:
                ins.append(R)
            else:
                ok = False
                break
        if ok:
            outs = tuple(Shard(d) if o.shape is not None and len(o.shape) == ro else R
                         for o in layer.outputs)
            if any(p.is_replicate() for p in outs[1:]):
                continue
            out.append(Strategy(tuple(ins), outs, f"split-{d}", ctx.world_size))
    return out


@register_rule(*_BINARY)
def binary_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Broadcasting binary (and variadic) ops; Partial through the linear ones."""
    op = layer.op_type
    operands = list(range(len(layer.inputs)))
    if op == "Clip":
        operands = [0]  # min/max are scalars
    strategies = broadcast_strategies(layer, ctx, operands)
    k = len(layer.inputs)
    if op in ("Add", "Sub", "Sum") and _is_float(layer):
        strategies.append(Strategy(tuple(P for _ in range(k)), (P,), "partial", 1))
    elif op == "Mul" and _is_float(layer):
        strategies.append(Strategy((P, R), (P,), "partial", 1))
        strategies.append(Strategy((R, P), (P,), "partial", 1))
    elif op == "Div" and _is_float(layer):
        strategies.append(Strategy((P, R), (P,), "partial", 1))
    return strategies


@register_rule(*_UNARY)
def unary_rule(layer, ctx: RuleContext) -> list[Strategy]:
    """Unary ops: any dim may be sharded; Partial passes through linear ones."""
    strategies = broadcast_strategies(layer, ctx, [0])
    if layer.op_type in _LINEAR_UNARY and _is_float(layer) and len(layer.outputs) == 1:
        ins = tuple(None if t is None else (P if i == 0 else R)
                    for i, t in enumerate(layer.inputs))
        strategies.append(Strategy(ins, (P,), "partial", 1))
    return strategies


def _is_float(layer) -> bool:
    """Partial sums are only kept in floating point (integer/bool sums would be wrong for
    comparisons and overflow-prone)."""
    dts = [t.dtype for t in list(layer.inputs) + list(layer.outputs) if t is not None]
    return bool(dts) and all(d is not None and (d.kind == "f" or d.name == "bfloat16")
                            for d in dts)
