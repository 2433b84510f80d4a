"""LSTM: long short-term memory, gates ordered i, o, f, c; optional peepholes P (i, o, f)."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._rnn import RecurrentOp, clipped


@register_op("LSTM", since_opset=1)
class LSTM(RecurrentOp):
    """``i = f(.. + P_i C)``, ``f = f(.. + P_f C)`` (``1 - i`` with ``input_forget``),
    ``c~ = g(..)``, ``C' = f * C + i * c~``, ``o = f(.. + P_o C')``, ``H' = o * h(C')``;
    defaults f = Sigmoid, g = h = Tanh. Inputs X, W, R, B, sequence_lens, initial_h,
    initial_c, P; outputs Y, Y_h, Y_c."""

    gates = 4
    default_activations = ("Sigmoid", "Tanh", "Tanh")
    with_cell = True

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        couple = bool(layer.attr("input_forget", 0))

        def cell(xw, h, c, r, rb, p, acts, clip):
            n = h.shape[1]
            pre = xw + h @ r.T + rb
            pi, po, pf = (0, 0, 0) if p is None else (p[:n], p[n:2 * n], p[2 * n:])
            i = acts[0](clipped(xp, pre[:, :n] + pi * c, clip))
            f = 1 - i if couple else acts[0](clipped(xp, pre[:, 2 * n:3 * n] + pf * c, clip))
            cand = acts[1](clipped(xp, pre[:, 3 * n:], clip))
            c_new = f * c + i * cand
            o = acts[0](clipped(xp, pre[:, n:2 * n] + po * c_new, clip))
            return o * acts[2](c_new), c_new

        return cls.recur(xp, layer, inputs, cell)
