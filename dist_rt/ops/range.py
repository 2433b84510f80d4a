"""Range: ``start, start + delta, ...`` up to (excluding) ``limit``."""

from __future__ import annotations

import math

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import here, set_sym, sym_value, to_numpy


def _length(layer, start, limit, delta) -> int:
    if delta == 0:
        raise ShapeError(f"{here(layer)}delta must not be 0")
    return max(int(math.ceil((limit - start) / delta)), 0)


#: Longest range whose value is computed at build time (a damaged limit must not OOM us).
_MAX_VALUE_ELEMENTS = 1 << 20


@register_op("Range", since_opset=11)
class Range(Op):
    """Inputs: scalars ``start, limit, delta`` of one dtype; output length
    ``max(ceil((limit - start) / delta), 0)``."""

    shape_inputs = (0, 1, 2)

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        dtype = inputs[0].dtype
        values = [None if d.value is None else to_numpy(d.value).reshape(-1)[0] for d in inputs]
        if all(v is not None for v in values):
            n = _length(layer, *(v.item() for v in values))
            if n > _MAX_VALUE_ELEMENTS:  # a huge range is computed at run time, never here
                set_sym(layer, [None])
                return [TensorDesc(dtype, (n,))]
            value = (values[0] + np.arange(n, dtype=dtype) * values[2]).astype(dtype)
            set_sym(layer, [None])
            return [TensorDesc(dtype, (n,), value)]
        # range(0, L, 1) over a tracked symbolic L (position ids) has length L.
        limit = sym_value(layer, 1, inputs)
        start, delta = values[0], values[2]
        if start is not None and delta is not None and start == 0 and delta == 1 and limit:
            return [TensorDesc(dtype, (limit[0],))]
        return [TensorDesc(dtype, (None,))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        start, limit, delta = (to_numpy(a).reshape(-1)[0] for a in inputs)
        n = _length(layer, start.item(), limit.item(), delta.item())
        dtype = to_numpy(inputs[0]).dtype
        # start + i * delta, as the spec defines it (not cumulative additions).
        return [rt.xp.asarray((start + np.arange(n, dtype=dtype) * delta).astype(dtype))]
