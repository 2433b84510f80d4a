"""SequenceLength: the number of tensors in a sequence, as an int64 scalar."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("SequenceLength", since_opset=11)
class SequenceLength(Op):
    """``len(s)``."""

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(np.dtype(np.int64), ())]

    @classmethod
    def _run(cls, layer, inputs, rt):
        return [rt.xp.asarray(len(inputs[0]), dtype=np.int64)]
