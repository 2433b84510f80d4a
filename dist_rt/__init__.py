"""dist_rt: distributed multi-GPU inference for ONNX models.

The public API (DESIGN.md)::

    import dist_rt, sharding
    network = dist_rt.parse_onnx("model.onnx")
    plan = sharding.plan(network, world_size=4)
    local = plan.partition(rank=r)
    engine = dist_rt.Builder(dist_rt.BuilderConfig(device="cuda", precision="fp16")).build(local)
    with engine.create_execution_context() as ctx:
        ctx.set_communicator(comm)
        outputs = ctx.execute({"input_ids": x})

Heavy parts (importer, builder, runtime) load on first use, so ``import dist_rt`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from dist_rt import errors, ops  # noqa: E402,F401
from dist_rt.network import Layer, Network, Tensor  # noqa: E402
from dist_rt.weights import Weights  # noqa: E402

#: Public names that live in submodules, loaded lazily: name -> module.
_LAZY = {
    "parse_onnx": "dist_rt.onnx.importer",
    "export_onnx": "dist_rt.onnx.exporter",
    "Builder": "dist_rt.builder",
    "BuilderConfig": "dist_rt.builder",
    "Engine": "dist_rt.engine",
    "ExecutionContext": "dist_rt.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dist_rt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Layer", "Network", "Tensor", "Weights", "errors", "ops", "__version__", *_LAZY]
