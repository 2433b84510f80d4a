"""MatMulInteger: ``Y = (A - a_zero_point) @ (B - b_zero_point)`` in int32."""

from __future__ import annotations

import numpy as np

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.matmul import MatMul


@register_op("MatMulInteger", since_opset=10)
class MatMulInteger(Op):
    """8-bit integer matmul accumulated in int32 (NumPy matmul shape rules).

    ``a_zero_point`` is a scalar or one value per row of A ([M]); ``b_zero_point`` a scalar or
    one value per column of B ([N]).
    """

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 4)
        for i, d in enumerate(inputs[:2]):
            if d.dtype is not None and np.dtype(d.dtype) not in (np.int8, np.uint8):
                raise ShapeError(f"layer '{layer.name}' (MatMulInteger): input {i} has dtype "
                                 f"{np.dtype(d.dtype)}, expected int8 or uint8")
        shape = MatMul.infer(layer, inputs[:2])[0].shape
        return [TensorDesc(np.dtype(np.int32), shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        a = inputs[0].astype(np.int32)
        b = inputs[1].astype(np.int32)
        a_zp = inputs[2] if len(inputs) > 2 else None
        b_zp = inputs[3] if len(inputs) > 3 else None
        if a_zp is not None:
            a_zp = a_zp.astype(np.int32)
            # A per-row zero point [M] subtracts along rows, so it needs a trailing axis.
            a = a - (a_zp.reshape(-1, 1) if a_zp.ndim == 1 and a_zp.size > 1 else a_zp)
        if b_zp is not None:
            b = b - b_zp.astype(np.int32)
        return [xp.matmul(a, b).astype(np.int32)]
