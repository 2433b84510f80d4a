"""dist_rt::AddRMSNorm: a residual add and the RMS normalization of the sum, in one layer.

``S = A + B`` and ``Y = S / sqrt(mean(S^2 over the last axis) + epsilon) * scale``; both
``S`` (the residual stream, read again by the next block) and ``Y`` are outputs. It is the
target of ``builder/passes/fuse_add_rmsnorm.py``: a pre-norm transformer writes
``h = h + f(x); y = rms_norm(h)`` twice per block, and one layer reading A and B once saves
a launch and a pass over ``S`` per norm.

Like RMSNormalization, 16-bit inputs compute their statistics in float32 (``S`` itself is
rounded to the input dtype first, exactly as the unfused Add writes it), so fused and
unfused graphs agree bit for bit on the reference path. Only the last axis is normalized
(``axis=-1``), the only form the fusion produces.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._norm import compute_dtype
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op


@register_op("AddRMSNorm", since_opset=1, domain="dist_rt")
class AddRMSNorm(Op):
    """Inputs A, B (broadcasting, NumPy-style), scale (1-D, last axis); attribute epsilon.

    Outputs: S = A + B, Y = rms_norm(S) * scale.
    """

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3)
        a, b, scale = inputs
        shape = broadcast_shapes(layer, a.shape, b.shape)
        if (shape is not None and scale.shape is not None and shape
                and (len(scale.shape) != 1 or (isinstance(shape[-1], int)
                                               and isinstance(scale.shape[0], int)
                                               and scale.shape[0] != shape[-1]))):
            raise ShapeError(f"layer '{layer.name}' (AddRMSNorm): scale {scale.shape} must be "
                             f"1-D of the last dim of A + B {shape}")
        desc = TensorDesc(a.dtype, shape)
        return [desc, desc]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        a, b, scale = inputs
        s = a + b  # in the input dtype, as the unfused Add writes the residual
        ct = compute_dtype(s.dtype)
        sc = s.astype(ct, copy=False)
        ms = (sc * sc).mean(axis=-1, keepdims=True)
        y = sc / xp.sqrt(ms + float(layer.attr("epsilon", 1e-5))) * scale.astype(ct)
        return [s, y.astype(s.dtype, copy=False)]
