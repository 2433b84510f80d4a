"""OptionalGetElement: the value inside an optional (a tensor/sequence passes through)."""

from __future__ import annotations

from dist_rt.errors import ExecutionError
from dist_rt.ops._op import Op, TensorDesc, register_op


@register_op("OptionalGetElement", since_opset=15)
class OptionalGetElement(Op):
    """``x`` unwrapped; an empty optional is an error."""

    deterministic = False

    @classmethod
    def infer(cls, layer, inputs):
        x = inputs[0]
        kind = "tensor" if x.kind == "optional" else x.kind
        return [TensorDesc(x.dtype, x.shape if x.kind == "tensor" else None, None, kind)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        if inputs[0] is None:
            raise ExecutionError(f"layer '{layer.name}' (OptionalGetElement): the optional "
                                 f"input is empty")
        return [inputs[0]]
