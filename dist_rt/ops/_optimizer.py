"""Shared parts of the ai.onnx.preview.training optimizers (Adagrad, Adam, Momentum).

Inputs are ``R`` (learning rate), ``T`` (update count), then groups of ``n`` tensors each
(X, G, and the optimizer's state); outputs are the updated groups after X.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import TensorDesc


def groups(layer, inputs, count: int) -> list[list]:
    """Split ``inputs[2:]`` into ``count`` equal groups.

    Raises:
        ShapeError: The number of tensors is not a multiple of ``count``.
    """
    rest = list(inputs[2:])
    if not rest or len(rest) % count:
        raise ShapeError(f"layer '{layer.name}' ({layer.op_type}): {len(rest)} tensors after "
                         f"R and T, expected a positive multiple of {count}")
    n = len(rest) // count
    return [rest[i * n:(i + 1) * n] for i in range(count)]


def infer_updates(layer, inputs, count: int) -> list[TensorDesc]:
    """Outputs: every tensor of groups 0, 2, 3... (X and the states), described as is."""
    parts = groups(layer, inputs, count)
    kept = parts[:1] + parts[2:]
    return [TensorDesc(d.dtype, d.shape) for part in kept for d in part]
