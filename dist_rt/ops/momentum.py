"""Momentum (ai.onnx.preview.training): one SGD-with-momentum step for each (X, G, V).

``g = norm_coefficient * X + G``, ``V' = alpha V + beta' g`` (``beta' = beta`` when T > 0,
else 1); ``mode="standard"``: ``X' = X - R V'``; ``"nesterov"``: ``X' = X - R (g + alpha V')``.
Outputs: X'..., V'....
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, register_op
from dist_rt.ops._optimizer import groups, infer_updates
from dist_rt.ops._subgraph import scalar


@register_op("Momentum", since_opset=1, domain="ai.onnx.preview.training")
class Momentum(Op):
    """Momentum update (standard or Nesterov)."""

    @classmethod
    def infer(cls, layer, inputs):
        return infer_updates(layer, inputs, 3)

    @classmethod
    def _run(cls, layer, inputs, rt):
        xs, gs, vs = groups(layer, inputs, 3)
        alpha = float(layer.attr("alpha"))
        beta = float(layer.attr("beta")) if float(scalar(inputs[1])) > 0 else 1.0
        norm = float(layer.attr("norm_coefficient"))
        mode = layer.attr("mode", "standard")
        if mode not in ("standard", "nesterov"):
            raise ShapeError(f"layer '{layer.name}' (Momentum): mode {mode!r}, expected "
                             f"'standard' or 'nesterov'")
        r = inputs[0]
        new_x, new_v = [], []
        for x, g, v in zip(xs, gs, vs, strict=True):
            g = norm * x + g
            v2 = alpha * v + beta * g
            step = v2 if mode == "standard" else g + alpha * v2
            new_x.append((x - r * step).astype(x.dtype))
            new_v.append(v2.astype(v.dtype))
        return new_x + new_v
