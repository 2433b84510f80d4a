"""RNN: ``H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb)`` (default f = Tanh)."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._rnn import RecurrentOp, clipped


@register_op("RNN", since_opset=1)
class RNN(RecurrentOp):
    """Simple recurrent layer; inputs X, W, R, B, sequence_lens, initial_h; outputs Y, Y_h."""

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp

        def cell(xw, h, c, r, rb, p, acts, clip):
            return acts[0](clipped(xp, xw + h @ r.T + rb, clip)), c

        return cls.recur(xp, layer, inputs, cell)
