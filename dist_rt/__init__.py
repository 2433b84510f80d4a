"""dist_rt: distributed multi-GPU inference for ONNX models.

The public API (DESIGN.md)::

    import dist_rt, sharding
    network = dist_rt.parse_onnx("model.onnx")
    engine = dist_rt.Builder(dist_rt.BuilderConfig(device="cpu")).build(network)
    with engine.create_execution_context() as ctx:
        outputs = ctx.execute({"input_ids": x})
"""

from __future__ import annotations

__version__ = "0.1.0"

from dist_rt import errors, ops  # noqa: E402,F401
from dist_rt.network import Layer, Network, Tensor  # noqa: E402
from dist_rt.weights import Weights  # noqa: E402

__all__ = ["Layer", "Network", "Tensor", "Weights", "errors", "ops", "__version__"]
