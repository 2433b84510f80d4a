"""LayerNormalization (opset 17): normalize over dims ``[axis, rank)``.

``Y = (X - mean) * inv_std * Scale + B`` with ``inv_std = 1 / sqrt(var + epsilon)``; the
optional outputs Mean and InvStdDev have X's shape with dims ``>= axis`` set to 1.
Statistics run in float32 for 16-bit inputs (``stash_type=1``).
"""

from __future__ import annotations

from dist_rt.ops._norm import compute_dtype, moments
from dist_rt.ops._op import Op, TensorDesc, check_inputs, normalize_axis, register_op


@register_op("LayerNormalization", since_opset=17)
class LayerNormalization(Op):
    """ONNX LayerNormalization: X, Scale, optional B; attributes axis, epsilon, stash_type."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        x = inputs[0]
        if x.shape is None:
            return [TensorDesc(x.dtype, None)] * len(layer.outputs)
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), len(x.shape))
        stat = tuple(x.shape[:axis]) + (1,) * (len(x.shape) - axis)
        ct = compute_dtype(x.dtype) if x.dtype is not None else None
        return [TensorDesc(x.dtype, x.shape)] + [TensorDesc(ct, stat)] * 2

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        axis = normalize_axis(layer, int(layer.attr("axis", -1)), x.ndim)
        ct = compute_dtype(x.dtype)
        xc = x.astype(ct, copy=False)
        mean, var = moments(xp, xc, tuple(range(axis, x.ndim)))
        inv_std = 1 / xp.sqrt(var + float(layer.attr("epsilon", 1e-5)))
        y = (xc - mean) * inv_std * scale.astype(ct)
        if bias is not None:
            y = y + bias.astype(ct)
        return [y.astype(x.dtype, copy=False), mean, inv_std]
