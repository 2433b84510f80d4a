"""Gemm: ``Y = alpha * A' @ B' + beta * C`` with optional transposes and bias."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import check_same_dtype, widen
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op


@register_op("Gemm", since_opset=1)
class Gemm(Op):
    """``Y = alpha * op(A) @ op(B) + beta * C``; ``op`` transposes when transA/transB is set.

    A' is [M, K], B' is [K, N]; C (optional from opset 11) broadcasts to [M, N].
    """

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 3)
        check_same_dtype(layer, inputs, range(len(inputs)))
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        for i, d in enumerate((a, b)):
            if d.shape is not None and len(d.shape) != 2:
                raise ShapeError(f"layer '{layer.name}' (Gemm): input {i} has shape "
                                 f"{d.shape}, expected a 2-D matrix")
        if a.shape is None or b.shape is None:
            return [TensorDesc(a.dtype, None)]
        m, k_a = a.shape[::-1] if layer.attr("transA", 0) else a.shape
        k_b, n = b.shape[::-1] if layer.attr("transB", 0) else b.shape
        if isinstance(k_a, int) and isinstance(k_b, int) and k_a != k_b:
            raise ShapeError(f"layer '{layer.name}' (Gemm): inner dims differ, A' is "
                             f"{(m, k_a)} and B' is {(k_b, n)}")
        out = (m, n)
        if c is not None and c.shape is not None:
            if broadcast_shapes(layer, c.shape, out) != out and all(
                    isinstance(d, int) for d in out):
                raise ShapeError(f"layer '{layer.name}' (Gemm): C has shape {c.shape}, "
                                 f"expected one that broadcasts to {out}")
        return [TensorDesc(a.dtype, out)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        a, b = widen(inputs[0]), widen(inputs[1])
        c = inputs[2] if len(inputs) > 2 else None
        if layer.attr("transA", 0):
            a = a.T
        if layer.attr("transB", 0):
            b = b.T
        alpha, beta = layer.attr("alpha", 1.0), layer.attr("beta", 1.0)
        y = xp.matmul(a, b)
        if alpha != 1.0:
            y = alpha * y
        if c is not None and beta != 0.0:
            y = y + beta * widen(c) if beta != 1.0 else y + widen(c)
        return [xp.asarray(y).astype(inputs[0].dtype, copy=False)]
