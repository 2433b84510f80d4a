"""InstanceNormalization: ``Y = (X - mean) / sqrt(var + epsilon) * scale[c] + B[c]`` with
statistics over the spatial dims of each (n, c)."""

from __future__ import annotations

from dist_rt.ops._norm import check_param, compute_dtype, moments
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._window import spatial_shape


@register_op("InstanceNormalization", since_opset=1)
class InstanceNormalization(Op):
    """ONNX InstanceNormalization: X (N, C, *D), scale (C), B (C); attribute epsilon."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        spatial_shape(layer, inputs[0].shape)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale, bias = inputs
        spatial_shape(layer, x.shape)
        c = x.shape[1]
        check_param(layer, 1, scale, (c,), "scale")
        check_param(layer, 2, bias, (c,), "B")
        ct = compute_dtype(x.dtype)
        xc = x.astype(ct, copy=False)
        mean, var = moments(xp, xc, tuple(range(2, x.ndim)))
        shape = (1, c) + (1,) * (x.ndim - 2)
        eps = float(layer.attr("epsilon", 1e-5))
        y = (xc - mean) / xp.sqrt(var + eps) * scale.astype(ct).reshape(shape) \
            + bias.astype(ct).reshape(shape)
        return [y.astype(x.dtype, copy=False)]
