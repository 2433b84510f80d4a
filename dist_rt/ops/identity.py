"""Identity: ``Y = X`` (tensors, sequences and optionals)."""

from __future__ import annotations

from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._tensor_util import set_sym, sym_value


@register_op("Identity", since_opset=1)
class Identity(Op):
    """Returns its input unchanged; build-time values and symbolic dims pass through."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        set_sym(layer, [sym_value(layer, 0, inputs)])
        return [TensorDesc(x.dtype, x.shape, x.value, x.kind)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        if x is None or isinstance(x, list):  # an empty optional, a sequence
            return [None if x is None else list(x)]
        # A copy, so that a later in-place op on Y can never modify X.
        return [x.copy()]
