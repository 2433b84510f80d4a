"""BatchNormalization: per-channel affine normalization of (N, C, *D).

Inference: ``Y = (X - mean) / sqrt(var + epsilon) * scale + B`` with the running stats.
Training (``training_mode=1``, opset 14+): batch statistics over (N, *D) normalize X, and the
extra outputs are the updated running stats
``running = input_stat * momentum + batch_stat * (1 - momentum)`` (population variance).
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._norm import check_param, compute_dtype, moments
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("BatchNormalization", since_opset=1)
class BatchNormalization(Op):
    """ONNX BatchNormalization: X, scale, B, input_mean, input_var."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 5)
        x = inputs[0]
        if x.shape is not None and len(x.shape) < 2:
            raise ShapeError(f"layer '{layer.name}' (BatchNormalization): input 0 has shape "
                             f"{tuple(x.shape)}, expected (N, C, ...)")
        channels = (x.shape[1],) if x.shape is not None else None
        descs = [TensorDesc(x.dtype, x.shape)]
        descs += [TensorDesc(inputs[3].dtype, channels)] * (len(layer.outputs) - 1)
        return descs

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, scale, bias, mean, var = inputs[:5]
        if x.ndim < 2:
            raise ShapeError(f"layer '{layer.name}' (BatchNormalization): input 0 has shape "
                             f"{tuple(x.shape)}, expected (N, C, ...)")
        c = x.shape[1]
        for i, p in enumerate((scale, bias, mean, var), start=1):
            check_param(layer, i, p, (c,), ("scale", "B", "input_mean", "input_var")[i - 1])
        eps = float(layer.attr("epsilon", 1e-5))
        ct = compute_dtype(x.dtype)
        shape = (1, c) + (1,) * (x.ndim - 2)
        xc = x.astype(ct, copy=False)
        training = int(layer.attr("training_mode", 0)) and layer.opset >= 14
        if training:
            axes = (0,) + tuple(range(2, x.ndim))
            bmean, bvar = moments(xp, xc, axes)
            use_mean, use_var = bmean, bvar
        else:
            use_mean = mean.astype(ct).reshape(shape)
            use_var = var.astype(ct).reshape(shape)
        y = (xc - use_mean) / xp.sqrt(use_var + eps) * scale.astype(ct).reshape(shape) \
            + bias.astype(ct).reshape(shape)
        outs = [y.astype(x.dtype, copy=False)]
        if training and len(layer.outputs) > 1:
            momentum = float(layer.attr("momentum", 0.9))
            run_mean = mean * momentum + bmean.reshape(c).astype(mean.dtype) * (1 - momentum)
            run_var = var * momentum + bvar.reshape(c).astype(var.dtype) * (1 - momentum)
            outs += [run_mean.astype(mean.dtype), run_var.astype(var.dtype)]
        return outs
