"""Base of Softmax, LogSoftmax and Hardmax.

Opset 13+ normalizes along ``axis`` (default -1). Before 13 the input is seen as a 2-D
matrix ``[prod(shape[:axis]), prod(shape[axis:])]`` (default axis 1) and each row is
normalized; both are supported by reshaping to that matrix for old opsets.
"""

from __future__ import annotations

from typing import Any

from dist_rt.ops._elementwise import quiet, widen
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis


class SoftmaxLike(Op):
    """``Y = normalize(X)`` along one axis; subclasses give ``normalize``."""

    @staticmethod
    def normalize(xp: Any, x: Any, axis: int) -> Any:
        """Normalize along ``axis`` (non-negative); subclasses override."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        if x.shape is not None:
            default = -1 if layer.opset >= 13 else 1
            normalize_axis(layer, int(layer.attr("axis", default)), len(x.shape))
        return [TensorDesc(x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x = inputs[0]
        wide = widen(x)
        with quiet(xp):
            if layer.opset >= 13:
                axis = normalize_axis(layer, int(layer.attr("axis", -1)), x.ndim)
                y = cls.normalize(xp, wide, axis)
            else:
                axis = normalize_axis(layer, int(layer.attr("axis", 1)), x.ndim)
                rows = 1
                for d in x.shape[:axis]:
                    rows *= d
                y = cls.normalize(xp, wide.reshape(rows, -1), 1).reshape(x.shape)
        return [xp.asarray(y).astype(x.dtype, copy=False)]
