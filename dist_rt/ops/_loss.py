"""The negative log-likelihood shared by NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

``loss[n, d...] = -weight[t] * X[n, t, d...]`` with ``t = target[n, d...]``; elements whose
target equals ``ignore_index`` get weight 0. ``reduction`` is ``none`` (per element),
``sum`` or ``mean`` (the weighted mean: ``sum(loss) / sum(weight[t])``).
"""

from __future__ import annotations

from typing import Any

from dist_rt.errors import UnsupportedOpError
from dist_rt.ops._extra_util import fail
from dist_rt.ops._op import TensorDesc


def loss_shape(layer: Any, x: TensorDesc, target: TensorDesc) -> Any:
    """The output shape: the target's for ``none``, a scalar otherwise."""
    reduction = layer.attr("reduction", "mean")
    if reduction not in ("none", "sum", "mean"):
        raise UnsupportedOpError(f"layer '{layer.name}' ({layer.op_type}): reduction "
                                 f"{reduction!r} is not one of none, sum, mean")
    if x.shape is not None and len(x.shape) < 2:
        raise fail(layer, f"input has shape {x.shape}, expected (N, C, d1, ...)")
    return target.shape if reduction == "none" else ()


def nll(xp: Any, layer: Any, x: Any, target: Any, weight: Any) -> Any:
    """The (reduced) loss of log-probabilities ``x`` (N, C, ...) against ``target`` (N, ...).

    Raises:
        ShapeError: Shapes do not fit, or a target is outside ``[0, C)`` and not ignored.
    """
    if x.ndim < 2 or target.shape != (x.shape[0], *x.shape[2:]):
        raise fail(layer, f"input has shape {x.shape} and target {target.shape}; expected "
                          f"(N, C, d1, ...) and (N, d1, ...)")
    ignore = layer.attr("ignore_index", None)
    keep = xp.ones(target.shape, dtype=bool) if ignore is None else target != ignore
    classes = x.shape[1]
    if bool(xp.any(keep & ((target < 0) | (target >= classes)))):
        raise fail(layer, f"a target is outside [0, {classes})")
    t = xp.where(keep, target, 0).astype("int64")
    picked = xp.take_along_axis(x, xp.expand_dims(t, 1), axis=1)[:, 0]
    w = keep.astype(x.dtype) if weight is None else xp.where(keep, weight[t], 0).astype(x.dtype)
    loss = -picked * w
    reduction = layer.attr("reduction", "mean")
    if reduction == "sum":
        return loss.sum().astype(x.dtype)
    if reduction == "mean":
        return (loss.sum() / w.sum()).astype(x.dtype)
    return loss.astype(x.dtype)
