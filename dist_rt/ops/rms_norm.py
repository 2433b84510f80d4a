"""RMSNormalization (opset 23): ``Y = X / sqrt(mean(X^2 over [axis, rank)) + eps) * scale``.

Statistics run in float32 for 16-bit inputs (``stash_type=1``).
"""

from __future__ import annotations

from dist_rt.ops._norm import compute_dtype
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op


@register_op("RMSNormalization", since_opset=23)
class RMSNormalization(Op):
    """ONNX RMSNormalization: X, scale; attributes axis (-1), epsilon (1e-5), stash_type."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        x = inputs[0]
        if x.shape is not None:
            normalize_axis(layer, int(layer.attr("axis", -1)), len(x.shape))
        return [TensorDesc(x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale = inputs
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), x.ndim)
        ct = compute_dtype(x.dtype)
        xc = x.astype(ct, copy=False)
        ms = (xc * xc).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
        y = xc / xp.sqrt(ms + float(layer.attr("epsilon", 1e-5))) * scale.astype(ct)
        return [y.astype(x.dtype, copy=False)]
