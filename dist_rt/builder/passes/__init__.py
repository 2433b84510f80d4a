"""Builder passes: one module each, every pass a function ``run(network, state) -> str``.

A pass edits the network in place and returns a one-line summary for the build log
("folded 4 layers"). :class:`BuildState` carries what passes share: the config, the shapes to
plan memory for, and the results that end up in the engine (memory plan, tactics, notes).

Fusion passes (attention, matmul+bias+activation...) plug in through :data:`FUSION_PASSES`:
append a ``run(network, state) -> str`` function there and the builder runs it at
optimization level 2 and above, between elimination and precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dist_rt.builder.config import BuilderConfig
    from dist_rt.network import Network


@dataclass
class BuildState:
    """What passes share during one build.

    Attributes:
        config: The builder config.
        input_shapes: Concrete input shapes to plan for (name -> shape), may be empty.
        memory_plan: Filled by the memory-plan pass (see ``memory_plan.plan``).
        tactics: Layer name -> chosen kernel, filled by backends that choose.
        notes: Pass name -> summary line, in run order.
    """

    config: BuilderConfig
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    memory_plan: dict[str, Any] | None = None
    tactics: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def on_cuda(state: BuildState) -> bool:
    """True for a CUDA build: ``config.device`` is ``"cuda"``, or ``"auto"`` finding a GPU."""
    device = state.config.device
    if device == "auto":
        from dist_rt.runtime.backends import resolve_device  # noqa: PLC0415 - CUDA probe

        device = resolve_device(device)
    return device == "cuda"


def shaped_copy(network: Network, state: BuildState, profile_shapes: str) -> Network:
    """A copy of ``network`` with the shapes to build for, every tensor's shape inferred.

    The inputs take ``state.input_shapes``, else the first profile's ``profile_shapes``
    (``"opt"`` to time tactics at, ``"max"`` to plan memory for); others keep their
    declared shapes.

    Raises:
        DistRtError: The shapes do not propagate through the network.
    """
    given = dict(state.input_shapes)
    if not given and state.config.profiles:
        given = dict(getattr(state.config.profiles[0], profile_shapes))
    probe = network.copy()
    for t in probe.inputs:
        if t.name in given:
            t.shape = tuple(given[t.name])
    probe.infer_shapes()
    return probe


#: ``run(network, state) -> summary``: edits ``network`` in place, returns one log line.
Pass = Callable[["Network", BuildState], str]

#: Fusion passes run at optimization level >= 2, in list order (another module appends).
FUSION_PASSES: list[Pass] = []
