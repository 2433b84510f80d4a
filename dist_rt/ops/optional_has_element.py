"""OptionalHasElement: whether an optional (or a plain tensor/sequence) holds a value."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("OptionalHasElement", since_opset=15)
class OptionalHasElement(Op):
    """``x is not None`` as a bool scalar; an omitted input counts as empty."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        return [TensorDesc(np.dtype(np.bool_), ())]

    @classmethod
    def _run(cls, layer, inputs, rt):
        present = bool(inputs) and inputs[0] is not None
        return [rt.xp.asarray(present, dtype=np.bool_)]
