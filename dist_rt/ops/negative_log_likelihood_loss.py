"""NegativeLogLikelihoodLoss: ``-weight[t] * X[n, t, d...]`` with reduction."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._loss import loss_shape, nll
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("NegativeLogLikelihoodLoss", since_opset=12)
class NegativeLogLikelihoodLoss(Op):
    """Inputs: log-probabilities (N, C, d1...), target (N, d1...), optional weight (C,)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        return [TensorDesc(inputs[0].dtype, loss_shape(layer, inputs[0], inputs[1]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x, target = inputs[0], inputs[1]
        weight = inputs[2] if len(inputs) > 2 else None
        loss = nll(rt.xp, layer, widen(x), target, None if weight is None else widen(weight))
        return [loss.astype(x.dtype)]
