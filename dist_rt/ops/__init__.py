"""Operators: one module per op, each registered explicitly with ``@register_op``.

Importing this package imports every op module listed below, which registers it. Add a new
op by writing ``dist_rt/ops/<op>.py`` and listing the module here.
"""

from __future__ import annotations

import importlib

from dist_rt.ops._op import (
    Op,
    RunContext,
    TensorDesc,
    get_op,
    is_supported,
    register_op,
    supported_ops,
)

_MODULES = [
    # linear algebra
    "matmul",
    # activations
    "relu",
    # distributed
    "dist_collective",
    # nn (ops-nn helper)
    "conv",
    "conv_transpose",
    "max_pool",
]

for _name in _MODULES:
    importlib.import_module(f"dist_rt.ops.{_name}")

__all__ = ["Op", "RunContext", "TensorDesc", "get_op", "is_supported", "register_op",
           "supported_ops"]
