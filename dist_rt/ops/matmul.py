"""MatMul: NumPy matmul semantics (batched, broadcasting leading dims)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs, register_op


@register_op("MatMul", since_opset=1)
class MatMul(Op):
    """``Y = A @ B``; 1-D operands are promoted then squeezed as in ``numpy.matmul``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        a, b = inputs
        if a.shape is None or b.shape is None:
            return [TensorDesc(a.dtype, None)]
        sa, sb = list(a.shape), list(b.shape)
        if not sa or not sb:
            raise ShapeError(f"layer '{layer.name}' (MatMul): scalar operands are not allowed")
        squeeze_a, squeeze_b = len(sa) == 1, len(sb) == 1
        if squeeze_a:
            sa = [1] + sa
        if squeeze_b:
            sb = sb + [1]
        k_a, k_b = sa[-1], sb[-2]
        if isinstance(k_a, int) and isinstance(k_b, int) and k_a != k_b:
            raise ShapeError(f"layer '{layer.name}' (MatMul): inner dims differ, input 0 has "
                             f"shape {tuple(a.shape)}, input 1 has shape {tuple(b.shape)}")
        batch = broadcast_shapes(layer, tuple(sa[:-2]), tuple(sb[:-2]))
        out = list(batch) + [sa[-2], sb[-1]]
        if squeeze_a:
            out.pop(-2)
        if squeeze_b:
            out.pop(-1)
        return [TensorDesc(a.dtype, tuple(out))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        a, b = inputs
        return [rt.xp.matmul(a, b)]
