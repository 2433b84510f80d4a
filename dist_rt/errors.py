"""The dist_rt exception hierarchy.

Every failure a user can cause (a bad model, a bad input, a damaged plan file, a dead rank)
raises one of these, so callers can catch ``DistRtError`` and the CLIs can print one line and
exit non-zero. Messages say what is wrong, where (layer, tensor, rank) and what was expected:

    rank 2/4, layer 'mlp.down' (MatMul): input 1 has shape (512, 256), expected (1024, 256)

Internal invariants may still use ``assert``; user errors never do.
"""

from __future__ import annotations


class DistRtError(Exception):
    """Base class of every dist_rt error."""

    exit_code = 1


class ModelError(DistRtError):
    """A model (ONNX file or hand-built Network) is malformed or inconsistent."""


class ParseError(ModelError):
    """An ONNX file cannot be read or is not a valid ModelProto."""


class UnsupportedOpError(ModelError):
    """An operator (or an attribute value of one) has no implementation here."""


class GraphError(ModelError):
    """The graph is malformed: dangling names, cycles, duplicate outputs."""


class ShapeError(ModelError):
    """Shapes or dtypes do not fit an operator's rules."""


class InputError(DistRtError):
    """Inputs given to ``execute`` (or the CLI) do not match the engine's bindings."""


class BuildError(DistRtError):
    """The builder could not turn a Network into an Engine."""


class ExecutionError(DistRtError):
    """A layer failed while running."""


class PlanFileError(DistRtError):
    """A plan file is truncated, damaged or not a plan file at all."""


class VersionMismatchError(PlanFileError):
    """A plan file was written by an incompatible format or library version."""


class PlanMismatchError(DistRtError):
    """Engines, plans or communicators that must agree do not (world size, rank, plan hash)."""


class ShardingError(DistRtError):
    """The planner or partitioner cannot produce a valid sharding."""


class CommunicatorError(DistRtError):
    """A collective failed or was called with arguments that do not fit."""


class CommunicatorMismatchError(CommunicatorError, PlanMismatchError):
    """A communicator does not fit an engine (world size, rank, device)."""


class RankFailureError(CommunicatorError):
    """Another rank died or aborted; this rank cannot continue."""


class CollectiveTimeoutError(CommunicatorError):
    """A collective did not finish in time (a peer is probably dead or stuck)."""


class LaunchError(DistRtError):
    """Rank discovery or communicator bootstrap failed."""


class DeviceError(DistRtError):
    """The requested device (CUDA) is unavailable or failed."""


def where(rank: int | None = None, world_size: int | None = None, layer: str | None = None,
          op_type: str | None = None) -> str:
    """Format the location prefix of an error message.

    Args:
        rank: This process's rank, if known.
        world_size: Number of ranks, if known.
        layer: Layer name, if the error is about a layer.
        op_type: The layer's operator type.

    Returns:
        A prefix such as ``"rank 2/4, layer 'mlp.down' (MatMul): "`` or ``""``.
    """
    parts = []
    if rank is not None:
        parts.append(f"rank {rank}/{world_size}" if world_size is not None else f"rank {rank}")
    if layer is not None:
        parts.append(f"layer '{layer}'" + (f" ({op_type})" if op_type else ""))
    return ", ".join(parts) + ": " if parts else ""
