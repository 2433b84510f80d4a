"""dist_rt::WeightOnlyMatMul: ``Y = A @ ((Wq - zero_point) * scale)`` with 8-bit weights.

The target of ``builder/passes/fuse_weight_only.py``: a QDQ model's
``MatMul(A, DequantizeLinear(Wq, scale, zero_point))`` over a constant int8/uint8 weight
becomes one layer that keeps Wq in 8 bits, so a decode step streams ``K * N`` weight bytes
instead of ``2 * K * N`` (fp16). The CUDA backend dequantizes inside its GEMM kernel
(``dist_rt/runtime/cuda/w8.py``); this reference dequantizes the whole weight to float32
(float64 for float64 A) and multiplies, on every call.

Inputs:
    A: (..., K), a float dtype.
    Wq: (K, N), int8 or uint8.
    scale: (N,) (one per output column) or one element (per tensor), any float dtype.
    zero_point (optional): Wq's dtype, the shape of ``scale``.

Output: (..., N) in A's dtype.
"""

from __future__ import annotations

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op

#: Weight dtypes the op takes.
WEIGHT_DTYPES = frozenset({np.dtype(np.int8), np.dtype(np.uint8)})


def _fail(layer, what: str) -> ShapeError:
    return ShapeError(f"layer '{layer.name}' (WeightOnlyMatMul): {what}")


def check(layer, a: TensorDesc, w: TensorDesc, scale: TensorDesc,
          zp: TensorDesc | None) -> None:
    """Check dtypes and (possibly symbolic) shapes of the inputs.

    Raises:
        ShapeError: Names the input, what it is and what was expected.
    """
    if a.dtype is not None and not dtypes.is_float(a.dtype):
        raise _fail(layer, f"input 0 (A) has dtype {np.dtype(a.dtype)}, expected a float dtype")
    if w.dtype is not None and np.dtype(w.dtype) not in WEIGHT_DTYPES:
        raise _fail(layer, f"input 1 (Wq) has dtype {np.dtype(w.dtype)}, expected int8 or "
                           f"uint8")
    if scale.dtype is not None and not dtypes.is_float(scale.dtype):
        raise _fail(layer, f"input 2 (scale) has dtype {np.dtype(scale.dtype)}, expected a "
                           f"float dtype")
    if zp is not None and None not in (zp.dtype, w.dtype) and zp.dtype != w.dtype:
        raise _fail(layer, f"input 3 (zero_point) has dtype {np.dtype(zp.dtype)}, expected "
                           f"{np.dtype(w.dtype)} like Wq")
    if w.shape is not None and len(w.shape) != 2:
        raise _fail(layer, f"input 1 (Wq) has shape {tuple(w.shape)}, expected (K, N)")
    if a.shape is not None and not a.shape:
        raise _fail(layer, "input 0 (A) is a scalar, expected (..., K)")
    k = None if w.shape is None else w.shape[0]
    n = None if w.shape is None else w.shape[1]
    if a.shape is not None and isinstance(k, int) and isinstance(a.shape[-1], int) \
            and a.shape[-1] != k:
        raise _fail(layer, f"input 0 (A) has shape {tuple(a.shape)}, expected (..., {k}) for "
                           f"Wq of shape {tuple(w.shape)}")
    for i, p, name in ((2, scale, "scale"), (3, zp, "zero_point")):
        if p is None or p.shape is None:
            continue
        one = len(p.shape) == 0 or (len(p.shape) == 1 and p.shape[0] == 1)
        if not one and (len(p.shape) != 1 or (isinstance(n, int) and isinstance(p.shape[0], int)
                                              and p.shape[0] != n)):
            raise _fail(layer, f"input {i} ({name}) has shape {tuple(p.shape)}, expected a "
                               f"scalar or ({n},) for Wq of shape {tuple(w.shape)}")
    if zp is not None and None not in (zp.shape, scale.shape) and \
            int(np.prod(zp.shape)) != int(np.prod(scale.shape)):
        raise _fail(layer, f"input 3 (zero_point) has shape {tuple(zp.shape)}, expected "
                           f"{tuple(scale.shape)} like scale")


@register_op("WeightOnlyMatMul", since_opset=1, domain="dist_rt")
class WeightOnlyMatMul(Op):
    """``Y = A @ ((Wq - zero_point) * scale)``; see the module docstring for the inputs."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 4)
        a, w, scale = inputs[:3]
        zp = inputs[3] if len(inputs) > 3 else None
        check(layer, a, w, scale, zp)
        if a.shape is None or w.shape is None:
            return [TensorDesc(a.dtype, None)]
        return [TensorDesc(a.dtype, (*a.shape[:-1], w.shape[1]))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        check_inputs(layer, inputs, 3, 4)
        a, w, scale = inputs[:3]
        zp = inputs[3] if len(inputs) > 3 else None
        check(layer, *(None if x is None else TensorDesc(x.dtype, tuple(x.shape))
                       for x in (a, w, scale, zp)))
        work = np.float64 if a.dtype == np.float64 else np.float32
        deq = w.astype(work)
        if zp is not None:
            deq = deq - zp.astype(work).reshape(-1)  # (N,) or (1,): broadcasts over rows
        deq = deq * scale.astype(work).reshape(-1)
        return [rt.xp.matmul(a.astype(work, copy=False), deq).astype(a.dtype, copy=False)]
