"""Per-op sharding rules, written as data the planner enumerates.

A rule maps a layer to its :class:`Strategy` s: one placement per input and per output, plus
how much of the layer's work each rank does. The search (``sharding.search``) picks one
strategy per layer and pays for the resharding between a producer's output placement and
what each consumer asks for. Every layer may also run replicated (always correct), so an op
without a rule, or a layer whose shapes a rule cannot split, is simply replicated.

Some strategies change the local layer, not just its inputs (a Reshape target that names
the global head count, a vocab-parallel Gather). Those rules also register a *localizer*
that ``sharding.partition`` calls to emit the rank's layers.

Rules live in one module per op family, imported explicitly below (STYLE.md rule 1).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sharding.placement import Placement, R

if TYPE_CHECKING:
    from dist_rt.network import Layer, Tensor


@dataclass(frozen=True)
class Strategy:
    """One way to run a layer over N ranks.

    Attributes:
        inputs: Placement each input must have (None for omitted optional inputs).
        outputs: Placement of each output.
        name: Short label shown by explain (``column``, ``row``, ``vocab``, ``heads``...).
        split: Ranks the work is divided over (1 = each rank does the whole layer).
    """

    inputs: tuple[Placement | None, ...]
    outputs: tuple[Placement, ...]
    name: str = "replicate"
    split: int = 1

    @property
    def is_replicated(self) -> bool:
        """True when every input and output is Replicate."""
        return all(p is None or p.is_replicate() for p in self.inputs + self.outputs)


@dataclass
class RuleContext:
    """What a rule may look at.

    Attributes:
        world_size: N, the number of ranks.
        known: Values known at build time by tensor name (from ``Network.infer_shapes``).
        supported: Predicate telling whether an op type is registered (localizers that emit
            helper ops only offer their strategy when those ops exist).
    """

    world_size: int
    known: dict[str, np.ndarray] = field(default_factory=dict)
    supported: Callable[[str], bool] = lambda op: True

    def can_shard(self, tensor: Tensor | None, dim: int) -> bool:
        """True when ``tensor``'s ``dim`` is static and splits evenly over N ranks.

        Symbolic dims are never sharded: the plan must stay valid for every batch/sequence.
        """
        if tensor is None or tensor.shape is None or not -len(tensor.shape) <= dim < len(
                tensor.shape):
            return False
        d = tensor.shape[dim]
        return isinstance(d, int) and d >= self.world_size and d % self.world_size == 0

    def value(self, tensor: Tensor | None) -> np.ndarray | None:
        """The build-time value of ``tensor`` (constant or folded), else None."""
        if tensor is None:
            return None
        if tensor.weights is not None and tensor.weights.size <= 1 << 16:
            return tensor.weights.numpy()
        return self.known.get(tensor.name)


RuleFn = Callable[["Layer", RuleContext], list[Strategy]]
#: op type -> rule.
RULES: dict[str, RuleFn] = {}
#: op type -> localizer(builder, layer, strategy, local_inputs) -> local outputs or None.
LOCALIZERS: dict[str, Callable[..., Any]] = {}


def register_rule(*op_types: str, localizer: Callable[..., Any] | None = None) -> Callable:
    """Decorator: ``fn(layer, ctx) -> list[Strategy]`` is the rule of ``op_types``."""

    def decorate(fn: RuleFn) -> RuleFn:
        for op in op_types:
            if op in RULES:
                raise RuntimeError(f"sharding rule for {op} registered twice")
            RULES[op] = fn
            if localizer is not None:
                LOCALIZERS[op] = localizer
        return fn

    return decorate


def replicate_strategy(layer: Layer) -> Strategy:
    """Every input and output replicated: each rank runs the whole layer."""
    return Strategy(tuple(None if t is None else R for t in layer.inputs),
                    tuple(R for _ in layer.outputs))


def strategies(layer: Layer, ctx: RuleContext) -> list[Strategy]:
    """All strategies of ``layer``: replicate first, then the rule's (deduplicated).

    Args:
        layer: The layer (shapes inferred).
        ctx: World size and known values.

    Returns:
        Strategies; the first is always the replicated one.
    """
    out = [replicate_strategy(layer)]
    rule = RULES.get(layer.op_type)
    if rule is None or ctx.world_size == 1:
        return out
    for s in rule(layer, ctx):
        if s not in out:
            out.append(s)
    return out


_MODULES = ["einsum", "elementwise", "layout", "normalization", "gather", "conv"]

for _name in _MODULES:
    importlib.import_module(f"sharding.rules.{_name}")
