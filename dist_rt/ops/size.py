"""Size: the number of elements of a tensor as an int64 scalar."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, check_inputs, register_op
from dist_rt.ops._tensor_util import int_desc, numel


@register_op("Size", since_opset=1)
class Size(Op):
    """``Y = prod(shape(X))`` (a 0-D int64)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        shape = inputs[0].shape
        n = numel(shape)
        if n is None and shape is not None and len(shape) == 1:
            return [int_desc(layer, np.int64, [shape[0]], ())]
        return [int_desc(layer, np.int64, None if n is None else [n], ())]

    @classmethod
    def _run(cls, layer, inputs, rt):
        n = int(np.prod(inputs[0].shape, dtype=np.int64))
        return [rt.xp.asarray(np.asarray(n, dtype=np.int64))]
