"""Adagrad (ai.onnx.preview.training): one Adagrad step for each (X, G, H).

``r = R / (1 + T * decay_factor)``, ``g = norm_coefficient * X + G``, ``H' = H + g^2``,
``X' = X - r * g / (sqrt(H') + epsilon)``. Outputs: X'..., H'....
"""

from __future__ import annotations

from dist_rt.ops._op import Op, register_op
from dist_rt.ops._optimizer import groups, infer_updates


@register_op("Adagrad", since_opset=1, domain="ai.onnx.preview.training")
class Adagrad(Op):
    """Adaptive-gradient update."""

    @classmethod
    def infer(cls, layer, inputs):
        return infer_updates(layer, inputs, 3)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        xs, gs, hs = groups(layer, inputs, 3)
        decay = float(layer.attr("decay_factor", 0.0))
        eps = float(layer.attr("epsilon", 0.0))
        norm = float(layer.attr("norm_coefficient", 0.0))
        r = inputs[0] / (1 + inputs[1] * decay)
        new_x, new_h = [], []
        for x, g, h in zip(xs, gs, hs, strict=True):
            g = norm * x + g
            h2 = h + g * g
            new_x.append((x - r * g / (xp.sqrt(h2) + eps)).astype(x.dtype))
            new_h.append(h2.astype(h.dtype))
        return new_x + new_h
