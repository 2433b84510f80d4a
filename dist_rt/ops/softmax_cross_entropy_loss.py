"""SoftmaxCrossEntropyLoss: negative log-likelihood of ``log_softmax(scores, axis=1)``."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._loss import loss_shape, nll
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("SoftmaxCrossEntropyLoss", since_opset=12)
class SoftmaxCrossEntropyLoss(Op):
    """Inputs: scores (N, C, d1...), labels (N, d1...), optional weights (C,). Outputs: the
    loss and, optionally, the log-probabilities (the scores' shape)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        x = inputs[0]
        outs = [TensorDesc(x.dtype, loss_shape(layer, x, inputs[1])), TensorDesc(x.dtype, x.shape)]
        return outs[:len(layer.outputs)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, labels = inputs[0], inputs[1]
        weight = inputs[2] if len(inputs) > 2 else None
        s = widen(x)
        shifted = s - xp.max(s, axis=1, keepdims=True)
        log_prob = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        loss = nll(xp, layer, log_prob, labels, None if weight is None else widen(weight))
        return [loss.astype(x.dtype), log_prob.astype(x.dtype)][:len(layer.outputs)]
