"""RNN: ``H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb)`` (default f = Tanh)."""

from __future__ import annotations

from dist_rt.ops._op import Op, check_inputs, register_op
from dist_rt.ops._rnn import clipped, infer_outputs, run_recurrence


@register_op("RNN", since_opset=1)
class RNN(Op):
    """Simple recurrent layer; inputs X, W, R, B, sequence_lens, initial_h; outputs Y, Y_h."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 6)
        return infer_outputs(layer, inputs, with_cell=False)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp

        def cell(xw, h, c, r, rb, p, acts, clip):
            return acts[0](clipped(xp, xw + h @ r.T + rb, clip)), c

        return run_recurrence(xp, layer, inputs, 1, ["Tanh"], cell, with_cell=False)
