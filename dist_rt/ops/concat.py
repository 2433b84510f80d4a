"""Concat: join tensors along ``axis``; tracked shape vectors are concatenated too."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op
from dist_rt.ops._tensor_util import fmt, here, set_sym, sym_value


@register_op("Concat", since_opset=1)
class Concat(Op):
    """All inputs share a rank and every dim except ``axis``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, len(inputs))
        descs = [d for d in inputs if d is not None]
        dtype = descs[0].dtype
        shapes = [d.shape for d in descs]
        if any(s is None for s in shapes):
            set_sym(layer, [None])
            return [TensorDesc(dtype, None)]
        rank = len(shapes[0])
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), rank)
        out = list(shapes[0])
        for i, s in enumerate(shapes[1:], 1):
            if len(s) != rank:
                raise ShapeError(f"{here(layer)}input {i} has shape {fmt(s)}, expected rank "
                                 f"{rank} like input 0 {fmt(shapes[0])}")
            for d in range(rank):
                if d == axis:
                    continue
                a, b = out[d], s[d]
                if isinstance(a, int) and isinstance(b, int) and a != b:
                    raise ShapeError(f"{here(layer)}input {i} has shape {fmt(s)}, expected dim "
                                     f"{d} = {a} like input 0 {fmt(shapes[0])}")
                if not isinstance(a, int) and b is not None:
                    out[d] = b  # prefer the more precise dim (int over symbol over None)
        along = [s[axis] for s in shapes]
        if all(isinstance(d, int) for d in along):
            out[axis] = sum(along)
        elif len([d for d in along if d != 0]) == 1:
            out[axis] = next(d for d in along if d != 0)
        else:
            out[axis] = None
        elems = None
        if rank == 1:
            parts = [sym_value(layer, i, inputs) for i, d in enumerate(inputs) if d is not None]
            if all(p is not None for p in parts):
                elems = [e for p in parts for e in p]
        set_sym(layer, [elems])
        value = None
        if elems is not None and all(isinstance(e, int) for e in elems) and dtype is not None:
            value = np.asarray(elems, dtype=dtype)
        return [TensorDesc(dtype, tuple(out), value)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        arrays = [a for a in inputs if a is not None]
        axis = normalize_axis(layer, int(layer.attr("axis", 0)), arrays[0].ndim)
        return [rt.xp.concatenate(arrays, axis=axis)]
