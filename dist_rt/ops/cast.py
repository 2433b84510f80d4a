"""Cast: convert to the ONNX type in attribute ``to`` (bf16 and float8 included)."""

from __future__ import annotations

from dist_rt.ops._cast import convert, target_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("Cast", since_opset=1)
class Cast(Op):
    """``Y = cast(X, to)``; ``saturate`` (opset 19, default 1) clamps float8 overflow."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        return [TensorDesc(target_dtype(layer, layer.attr("to")), inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        dtype = target_dtype(layer, layer.attr("to"))
        return [convert(rt.xp, inputs[0], dtype, bool(layer.attr("saturate", 1)),
                        str(layer.attr("round_mode", "up")))]
