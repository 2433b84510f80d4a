"""Small helpers shared by the ops of the "extra" family (losses, RNNs, signal, vision)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dist_rt.errors import ShapeError


def fail(layer: Any, message: str) -> ShapeError:
    """A ShapeError naming the layer and its op type."""
    return ShapeError(f"layer '{layer.name}' ({layer.op_type}): {message}")


def host(a: Any) -> np.ndarray:
    """``a`` as a host NumPy array (CuPy arrays are copied back)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def scalar(a: Any, default: Any = None) -> Any:
    """The single value of a (0-d or 1-element) input, or ``default`` when absent."""
    if a is None:
        return default
    return host(a).reshape(-1)[0].item()


def same_shape(inputs: Any, index: int = 0) -> Any:
    """The shape of input ``index`` (None when the input or its shape is unknown)."""
    desc = inputs[index] if index < len(inputs) else None
    return None if desc is None else desc.shape
