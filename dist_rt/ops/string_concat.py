"""StringConcat: element-wise ``x + y`` of two broadcast string tensors."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op
from dist_rt.ops._strings import STRING, host_strings


@register_op("StringConcat", since_opset=20)
class StringConcat(Op):
    """``y[i] = a[i] + b[i]`` with NumPy broadcasting (host object arrays)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        return [TensorDesc(STRING, broadcast_shapes(layer, inputs[0].shape, inputs[1].shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        a, b = host_strings(inputs[0]), host_strings(inputs[1])
        out = np.frompyfunc(lambda x, y: str(x) + str(y), 2, 1)(a, b)
        return [np.asarray(out, dtype=object)]
