"""NonZero: int64 coordinates ``(rank, count)`` of the non-zero elements, row-major."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("NonZero", since_opset=9)
class NonZero(Op):
    """The element count is data dependent, so the second dim is unknown at build time."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        rank = None if x.shape is None else max(len(x.shape), 1)
        return [TensorDesc(np.dtype(np.int64), None if rank is None else (rank, None))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        # A 0-D input counts as a 1-element vector in ONNX (NumPy deprecates nonzero on 0-D).
        coords = rt.xp.nonzero(x.reshape(1) if x.ndim == 0 else x)
        return [rt.xp.stack(coords).astype(np.int64).reshape(len(coords), -1)]
