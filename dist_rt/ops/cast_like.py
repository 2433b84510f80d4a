"""CastLike: convert input 0 to the dtype of input 1."""

from __future__ import annotations

from dist_rt.ops._cast import convert
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("CastLike", since_opset=15)
class CastLike(Op):
    """``Y = cast(X, dtype(target_type))``; ``saturate`` as for Cast."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        return [TensorDesc(inputs[1].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x, like = inputs
        return [convert(rt.xp, x, like.dtype, bool(layer.attr("saturate", 1)),
                        str(layer.attr("round_mode", "up")))]
