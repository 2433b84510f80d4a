"""Adam (ai.onnx.preview.training): one Adam step for each (X, G, V, H).

``g = norm_coefficient * X + G``, ``V' = alpha V + (1 - alpha) g``,
``H' = beta H + (1 - beta) g^2``, ``r = R sqrt(1 - beta^T) / (1 - alpha^T)`` when T > 0
(else R), ``X' = (1 - norm_coefficient_post) (X - r V' / (sqrt(H') + epsilon))``.
Outputs: X'..., V'..., H'....
"""

from __future__ import annotations

import math

from dist_rt.ops._op import Op, register_op
from dist_rt.ops._optimizer import groups, infer_updates
from dist_rt.ops._subgraph import scalar


@register_op("Adam", since_opset=1, domain="ai.onnx.preview.training")
class Adam(Op):
    """Adaptive-moment update."""

    @classmethod
    def infer(cls, layer, inputs):
        return infer_updates(layer, inputs, 4)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        xs, gs, vs, hs = groups(layer, inputs, 4)
        alpha = float(layer.attr("alpha", 0.9))
        beta = float(layer.attr("beta", 0.999))
        eps = float(layer.attr("epsilon", 1e-6))
        norm = float(layer.attr("norm_coefficient", 0.0))
        post = float(layer.attr("norm_coefficient_post", 0.0))
        step = float(scalar(inputs[1]))
        r = float(scalar(inputs[0]))
        if step > 0:
            r = r * math.sqrt(1 - beta ** step) / (1 - alpha ** step)
        new_x, new_v, new_h = [], [], []
        for x, g, v, h in zip(xs, gs, vs, hs, strict=True):
            g = norm * x + g
            v2 = alpha * v + (1 - alpha) * g
            h2 = beta * h + (1 - beta) * g * g
            x2 = (1 - post) * (x - r * v2 / (xp.sqrt(h2) + eps))
            new_x.append(x2.astype(x.dtype))
            new_v.append(v2.astype(v.dtype))
            new_h.append(h2.astype(h.dtype))
        return new_x + new_v + new_h
