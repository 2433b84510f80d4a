"""The operator base class, the explicit registry and shape helpers shared by all ops.

Each op lives in its own module of ``dist_rt/ops/`` as a subclass of :class:`Op` registered
with :func:`register_op`. An op has two duties:

* ``infer(layer, inputs)`` -> output :class:`TensorDesc` s (dtype, shape; symbolic dims are
  strings, unknown dims ``None``). Inputs whose value is known at build time (constants,
  shape arithmetic) carry it in ``TensorDesc.value``; ops that compute shapes from data
  (Reshape, Expand, Slice...) use it.
* ``_run(layer, inputs, rt)`` -> output arrays: the reference implementation, written
  against ``rt.xp`` (NumPy on the CPU backend, CuPy on the CUDA backend) so that every op
  runs on every backend; backends may override hot ops with fused kernels.

The public ``run`` guards: it calls ``_run`` and re-raises failures with the layer's name,
op type and rank (STYLE.md rule 2).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dist_rt.errors import DistRtError, ExecutionError, ShapeError, UnsupportedOpError, where

if TYPE_CHECKING:
    from dist_rt.network import Layer

Dim = int | str | None
Shape = tuple[Dim, ...] | None


@dataclass(frozen=True)
class TensorDesc:
    """What is known about a tensor at build time.

    Attributes:
        dtype: NumPy dtype, or None when unknown.
        shape: Tuple of dims (int static, str symbolic, None unknown); None when the rank
            itself is unknown.
        value: The tensor's value when it is known at build time (constants, folded shape
            arithmetic); None otherwise.
        kind: ``"tensor"``, ``"sequence"`` or ``"optional"`` (see ``network.Tensor``); for
            the latter two ``dtype``/``shape`` describe the elements.
    """

    dtype: np.dtype | None
    shape: Shape
    value: np.ndarray | None = None
    kind: str = "tensor"

    @property
    def rank(self) -> int | None:
        """Number of dims, or None when unknown."""
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dim is a known int."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)


@dataclass
class RunContext:
    """What a layer sees while it runs.

    Attributes:
        xp: The array module (``numpy`` or ``cupy``).
        backend: ``"cpu"`` or ``"cuda"``.
        communicator: The attached ``collectives.Communicator`` (None on one rank).
        rank: This rank.
        world_size: Number of ranks.
        stream: Backend stream handle (CUDA), or None.
        state: Per-context mutable storage for stateful ops (KV caches...), keyed by layer.
        l2_prefetch: CUDA: layer name -> (device weight, bytes) its decode GEMV warms in L2
            for the next one (:mod:`dist_rt.runtime.cuda.l2_prefetch`); None elsewhere.
    """

    xp: types.ModuleType = np
    backend: str = "cpu"
    communicator: Any = None
    rank: int = 0
    world_size: int = 1
    stream: Any = None
    state: dict | None = None
    l2_prefetch: dict | None = None


class Op:
    """Base of every operator. Subclasses set ``op_type`` and implement ``infer``/``_run``."""

    op_type: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    since_opset: ClassVar[int] = 1
    #: Inputs that must be known at build time for shape inference (e.g. Reshape's shape).
    shape_inputs: ClassVar[tuple[int, ...]] = ()
    #: False for ops whose output must not be folded at build time (random, collectives).
    deterministic: ClassVar[bool] = True

    @classmethod
    def infer(cls, layer: Layer, inputs: Sequence[TensorDesc | None]) -> list[TensorDesc]:
        """Return output descriptions. The default: unknown shapes with the first input's dtype."""
        dtype = inputs[0].dtype if inputs and inputs[0] is not None else None
        return [TensorDesc(dtype, None) for _ in layer.outputs]

    @classmethod
    def run(cls, layer: Layer, inputs: Sequence[Any], rt: RunContext) -> list[Any]:
        """Compute the layer's outputs from its input arrays.

        Raises:
            DistRtError: Re-raised with the layer, op type and rank named.
        """
        try:
            outputs = cls._run(layer, inputs, rt)
        except DistRtError as exc:
            prefix = where(rt.rank if rt.world_size > 1 else None, rt.world_size, layer.name,
                           layer.op_type)
            if prefix and not str(exc).startswith(prefix):
                raise type(exc)(prefix + str(exc)) from exc
            raise
        except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError,
                OverflowError, AttributeError, MemoryError) as exc:
            prefix = where(rt.rank if rt.world_size > 1 else None, rt.world_size, layer.name,
                           layer.op_type)
            shapes = ", ".join(_describe(a) for a in inputs)
            raise ExecutionError(f"{prefix}failed on inputs [{shapes}]: {exc}") from exc
        return list(outputs)

    @classmethod
    def _run(cls, layer: Layer, inputs: Sequence[Any], rt: RunContext) -> list[Any]:
        raise UnsupportedOpError(f"{cls.op_type} has no reference implementation")


class SameShapeOp(Op):
    """Base of ops with one output of input 0's dtype and shape (Relu, LpNormalization...)."""

    #: Accepted input count ``(minimum, maximum)``, checked by ``infer``.
    arity: ClassVar[tuple[int, int]] = (1, 1)

    @classmethod
    def infer(cls, layer: Layer, inputs: Sequence[TensorDesc | None]) -> list[TensorDesc]:
        """Check the input count; the output is described like input 0."""
        check_inputs(layer, inputs, *cls.arity)
        return [TensorDesc(inputs[0].dtype, inputs[0].shape)]


def _describe(a: Any) -> str:
    if a is None:
        return "None"
    shape = getattr(a, "shape", None)
    dtype = getattr(a, "dtype", None)
    return f"{tuple(shape)} {dtype}" if shape is not None else type(a).__name__


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------

_REGISTRY: dict[tuple[str, str], list[type[Op]]] = {}


def register_op(op_type: str, since_opset: int = 1, domain: str = "") -> Callable:
    """Class decorator: register ``cls`` as the implementation of ``op_type``.

    Args:
        op_type: ONNX (or dist_rt) operator name, e.g. ``"MatMul"``.
        since_opset: First opset of ``domain`` this class implements; a later registration
            of the same op with a higher ``since_opset`` takes over from that opset on.
        domain: Operator domain; ``""`` is the default ONNX domain.
    """

    def decorate(cls: type[Op]) -> type[Op]:
        cls.op_type = op_type
        cls.since_opset = since_opset
        cls.domain = domain
        versions = _REGISTRY.setdefault((domain, op_type), [])
        if any(v.since_opset == since_opset for v in versions):
            raise RuntimeError(f"{domain or 'ai.onnx'}::{op_type} v{since_opset} registered twice")
        versions.append(cls)
        versions.sort(key=lambda v: v.since_opset)
        return cls

    return decorate


def _normalize_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def get_op(op_type: str, domain: str = "", opset: int | None = None) -> type[Op]:
    """Return the implementation of ``op_type`` for ``opset`` (the newest when None).

    Raises:
        UnsupportedOpError: The op, or that opset of it, is not implemented.
    """
    domain = _normalize_domain(domain)
    versions = _REGISTRY.get((domain, op_type))
    if not versions:
        names = ", ".join(supported_ops(domain))
        raise UnsupportedOpError(
            f"op {op_type!r} (domain {domain or 'ai.onnx'!r}) is not supported; supported ops: "
            f"{names}")
    if opset is None:
        return versions[-1]
    chosen = [v for v in versions if v.since_opset <= opset]
    if not chosen:
        raise UnsupportedOpError(
            f"op {op_type!r} is supported from opset {versions[0].since_opset}, the model "
            f"uses opset {opset}")
    return chosen[-1]


def is_supported(op_type: str, domain: str = "") -> bool:
    """True when some opset of ``op_type`` is registered."""
    return (_normalize_domain(domain), op_type) in _REGISTRY


def supported_ops(domain: str | None = None) -> list[str]:
    """Sorted names of registered ops (of one domain, or all as ``domain::op``)."""
    if domain is None:
        return sorted(f"{d}::{o}" if d else o for d, o in _REGISTRY)
    domain = _normalize_domain(domain)
    return sorted(o for d, o in _REGISTRY if d == domain)


# ------------------------------------------------------------------------------------------
# Shape helpers
# ------------------------------------------------------------------------------------------

def broadcast_shapes(layer: Layer, *shapes: Shape) -> Shape:
    """Multidirectional (NumPy-style) broadcast of possibly symbolic shapes.

    Raises:
        ShapeError: Two static dims differ and neither is 1.
    """
    if any(s is None for s in shapes):
        return None
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        static = {d for d in dims if isinstance(d, int) and d != 1}
        if len(static) > 1:
            raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): shapes "
                             f"{', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        if static:
            out.append(static.pop())
        elif all(d == 1 for d in dims):
            out.append(1)
        else:
            symbolic = [d for d in dims if d != 1]
            out.append(symbolic[0] if len({str(d) for d in symbolic}) == 1 else None)
    return tuple(out)


def normalize_axis(layer: Layer, axis: int, rank: int, what: str = "axis") -> int:
    """Map a possibly negative axis into ``[0, rank)``.

    Raises:
        ShapeError: The axis is out of range.
    """
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {what} {axis} is out of "
                         f"range for input rank {rank}")
    return axis % rank if rank else 0


def shape_of(desc: TensorDesc | None) -> Shape:
    """The shape of ``desc`` (None when absent)."""
    return None if desc is None else desc.shape


def const_value(desc: TensorDesc | None) -> np.ndarray | None:
    """The build-time value of an input, or None."""
    return None if desc is None else desc.value


def check_inputs(layer: Layer, inputs: Sequence[Any], minimum: int,
                 maximum: int | None = None) -> None:
    """Raise ShapeError when the number of given inputs is outside ``[minimum, maximum]``."""
    count = len(inputs)
    while count and inputs[count - 1] is None:
        count -= 1
    maximum = minimum if maximum is None else maximum
    if count < minimum or count > maximum:
        want = str(minimum) if minimum == maximum else f"{minimum} to {maximum}"
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): got {count} inputs, "
                         f"expected {want}")
