"""MaxUnpool: scatter pooled values back to the positions MaxPool's indices name."""

from __future__ import annotations

import numpy as np

from dist_rt.ops._extra_util import fail, host
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("MaxUnpool", since_opset=9)
class MaxUnpool(Op):
    """X (N, C, *in), I (same shape; flat indices), optional output_shape -> Y of zeros
    with ``Y.flat[I] = X`` over the inferred size ``(in - 1) * stride + kernel - pads``
    (an output_shape extends it with zeros at the end)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, index = inputs[0], inputs[1]
        shape_in = inputs[2] if len(inputs) > 2 else None
        kernel = list(layer.attr("kernel_shape", None) or [])
        nd = x.ndim - 2
        if len(kernel) != nd or index.shape != x.shape:
            raise fail(layer, f"X {x.shape}, indices {index.shape}, kernel_shape {kernel}: "
                              f"expected equal shapes and {nd} kernel dims")
        strides = list(layer.attr("strides", None) or [1] * nd)
        pads = list(layer.attr("pads", None) or [0] * (2 * nd))
        inferred = (*x.shape[:2], *[(x.shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i]
                                    - pads[i + nd] for i in range(nd)])
        y = xp.zeros(int(np.prod(inferred)), dtype=x.dtype)
        flat = index.reshape(-1).astype(np.int64)
        if flat.size and (int(flat.max()) >= y.size or int(flat.min()) < 0):
            raise fail(layer, f"an index is outside the output of {y.size} elements")
        y[flat] = x.reshape(-1)
        y = y.reshape(inferred)
        if shape_in is None:
            return [y]
        # An explicit output_shape: indices still address the inferred shape, which is
        # placed at the origin of a zero tensor of the requested (larger) shape.
        shape = tuple(int(v) for v in host(shape_in).reshape(-1))
        if len(shape) != y.ndim or any(s < i for s, i in zip(shape, inferred, strict=True)):
            raise fail(layer, f"output_shape {shape} is smaller than the pooled extent "
                              f"{inferred}")
        out = xp.zeros(shape, dtype=x.dtype)
        out[tuple(slice(0, i) for i in inferred)] = y
        return [out]
