"""Optional: an optional value holding its input, or empty when there is none."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("Optional", since_opset=15)
class Optional(Op):
    """``x`` wrapped as an optional (run-time value: the element, or None)."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        x = inputs[0] if inputs else None
        return [TensorDesc(None if x is None else x.dtype, None, None, "optional")]

    @classmethod
    def _run(cls, layer, inputs, rt):
        return [inputs[0] if inputs else None]
