"""GRU: gated recurrent unit, gates ordered z (update), r (reset), h (hidden)."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._rnn import RecurrentOp, clipped


@register_op("GRU", since_opset=1)
class GRU(RecurrentOp):
    """``z = f(Xw_z + H R_z^T + Rb_z)``, ``r = f(Xw_r + H R_r^T + Rb_r)``,
    ``h~ = g(Xw_h + (r * H) R_h^T + Rb_h)`` (or ``g(Xw_h + r * (H R_h^T + Rb_h))`` with
    ``linear_before_reset``), ``H' = (1 - z) * h~ + z * H``; defaults f = Sigmoid, g = Tanh."""

    gates = 3
    default_activations = ("Sigmoid", "Tanh")

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        before_reset = bool(layer.attr("linear_before_reset", 0))

        def cell(xw, h, c, r, rb, p, acts, clip):
            n = h.shape[1]
            rz, rr, rh = r[:n], r[n:2 * n], r[2 * n:]
            z = acts[0](clipped(xp, xw[:, :n] + h @ rz.T + rb[:n], clip))
            g = acts[0](clipped(xp, xw[:, n:2 * n] + h @ rr.T + rb[n:2 * n], clip))
            if before_reset:
                pre = xw[:, 2 * n:] + g * (h @ rh.T + rb[2 * n:])
            else:
                pre = xw[:, 2 * n:] + (g * h) @ rh.T + rb[2 * n:]
            ht = acts[1](clipped(xp, pre, clip))
            return (1 - z) * ht + z * h, c

        return cls.recur(xp, layer, inputs, cell)
