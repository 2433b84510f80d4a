"""Base classes of the elementwise ops: unary, binary (broadcasting) and variadic.

Each concrete op (``add.py``, ``exp.py``...) only says its math in a static ``fn``; these
bases do the arity checks, dtype checks, symbolic broadcasting and dtype preservation.

Low-precision floats (fp16, bf16) are computed in float32 and rounded back once, as
onnxruntime does on the CPU: computing transcendental functions directly in fp16 loses
several ulps, and NumPy has no bf16 kernels of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from dist_rt import dtypes
from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, check_inputs

_LOW_PRECISION = (np.dtype(np.float16), dtypes.bfloat16)


def widen(x: Any) -> Any:
    """Return ``x`` as float32 when it is fp16/bf16, else ``x`` itself."""
    return x.astype(np.float32) if x.dtype in _LOW_PRECISION else x


def is_float_dtype(dtype: Any) -> bool:
    """True for every floating-point dtype, the ml_dtypes ones (bf16, fp8) included."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt in _LOW_PRECISION or "float" in dt.name


def quiet(xp: Any) -> contextlib.AbstractContextManager:
    """Silence NumPy's floating-point warnings (log(0), 0/0...): ONNX defines the results.

    CuPy never warns, so it gets a no-op context.
    """
    return np.errstate(all="ignore") if xp is np else contextlib.nullcontext()


def check_same_dtype(layer: Any, inputs: Sequence[TensorDesc | None],
                     indices: Sequence[int]) -> None:
    """Raise ShapeError when the given inputs have different (known) dtypes.

    Raises:
        ShapeError: Two of the inputs differ in dtype.
    """
    known = [(i, inputs[i].dtype) for i in indices
             if i < len(inputs) and inputs[i] is not None and inputs[i].dtype is not None]
    for i, dt in known[1:]:
        if np.dtype(dt) != np.dtype(known[0][1]):
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): input {i} has dtype "
                             f"{np.dtype(dt)}, expected {np.dtype(known[0][1])} like input "
                             f"{known[0][0]}")


class Unary(Op):
    """``Y = fn(X)`` elementwise; the output keeps X's dtype unless ``out_dtype`` is set."""

    #: Fixed output dtype (e.g. bool for IsNaN); None keeps the input dtype.
    out_dtype: ClassVar[np.dtype | None] = None
    #: Compute fp16/bf16 inputs in float32 (transcendentals); False for exact ops.
    widen_low_precision: ClassVar[bool] = True

    @staticmethod
    def fn(xp: Any, x: Any, layer: Any) -> Any:
        """The elementwise math; subclasses override."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        x = inputs[0]
        return [TensorDesc(cls.out_dtype if cls.out_dtype is not None else x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        xp = rt.xp
        with quiet(xp):
            y = cls.fn(xp, widen(x) if cls.widen_low_precision else x, layer)
        dtype = cls.out_dtype if cls.out_dtype is not None else x.dtype
        return [xp.asarray(y).astype(dtype, copy=False)]


class UnaryPredicate(Unary):
    """A unary test (IsNaN, IsInf): bool output, computed on the input as given."""

    out_dtype = np.dtype(np.bool_)
    widen_low_precision = False


class Binary(Op):
    """``C = fn(A, B)`` with multidirectional broadcasting."""

    #: Fixed output dtype (bool for comparisons); None keeps A's dtype.
    out_dtype: ClassVar[np.dtype | None] = None
    #: Whether A and B must share a dtype (False for Pow, whose exponent may differ).
    same_dtype: ClassVar[bool] = True
    widen_low_precision: ClassVar[bool] = True

    @staticmethod
    def fn(xp: Any, a: Any, b: Any, layer: Any) -> Any:
        """The elementwise math; subclasses override."""
        raise NotImplementedError

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2)
        if cls.same_dtype:
            check_same_dtype(layer, inputs, (0, 1))
        a, b = inputs
        shape = broadcast_shapes(layer, a.shape, b.shape)
        return [TensorDesc(cls.out_dtype if cls.out_dtype is not None else a.dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        a, b = inputs
        xp = rt.xp
        if cls.widen_low_precision:
            a, b = widen(a), widen(b)
        with quiet(xp):
            y = cls.fn(xp, a, b, layer)
        dtype = cls.out_dtype if cls.out_dtype is not None else inputs[0].dtype
        return [xp.asarray(y).astype(dtype, copy=False)]


class Variadic(Op):
    """``Y = fn(X0, X1, ...)`` folded pairwise over 1..N broadcasting inputs (Min, Sum...)."""

    @staticmethod
    def pair(xp: Any, a: Any, b: Any) -> Any:
        """Combine two operands; subclasses override."""
        raise NotImplementedError

    @staticmethod
    def finish(xp: Any, acc: Any, count: int) -> Any:
        """Post-process the folded value (Mean divides by the count)."""
        return acc

    @classmethod
    def infer(cls, layer, inputs):
        present = [d for d in inputs if d is not None]
        if not present:
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): got 0 inputs, "
                             f"expected at least 1")
        check_same_dtype(layer, inputs, range(len(inputs)))
        shape = broadcast_shapes(layer, *(d.shape for d in present))
        return [TensorDesc(present[0].dtype, shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        arrays = [a for a in inputs if a is not None]
        acc = widen(arrays[0])
        with quiet(xp):
            for other in arrays[1:]:
                acc = cls.pair(xp, acc, widen(other))
            # One input still broadcasts to itself; copy so the output never aliases it.
            acc = cls.finish(xp, xp.array(acc, copy=True), len(arrays))
        return [xp.asarray(acc).astype(arrays[0].dtype, copy=False)]
