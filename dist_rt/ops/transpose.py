"""Transpose: permute dims (default: reverse them)."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here


def _perm(layer, rank: int) -> list[int]:
    perm = layer.attr("perm")
    if perm is None:
        return list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if sorted(p % rank if rank else p for p in perm) != list(range(rank)) or any(
            not -rank <= p < rank for p in perm):
        raise ShapeError(f"{here(layer)}perm {perm} is not a permutation of {rank} dims")
    return [p % rank for p in perm]


@register_op("Transpose", since_opset=1)
class Transpose(Op):
    """``Y.shape[i] = X.shape[perm[i]]``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        perm = _perm(layer, len(x.shape))
        value = None if x.value is None else np.transpose(x.value, perm)
        return [TensorDesc(x.dtype, tuple(x.shape[p] for p in perm), value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        return [rt.xp.ascontiguousarray(rt.xp.transpose(x, _perm(layer, x.ndim)))]
