"""``sharding.plan``: rules -> cost model -> search -> :class:`ShardingPlan`.

Hints (``--plan FILE.json`` or a dict) pin what the search may choose; it fills in the rest::

    {"tensors": {"model.embed_tokens.weight": "S(0)", "logits": "R"},
     "layers":  {"*/mlp/*": "replicate", "*/q_proj/*": "column"}}

A tensor pin fixes the placement its producer gives it (for weights and inputs: what every
consumer loads); a layer pattern (``fnmatch`` on layer names) keeps only the strategies of
that name (``replicate``, ``column``, ``row``, ``vocab``, ``split-2``...). ``"replicate"``
instead of a dict replicates everything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections import Counter
from typing import Any

from dist_rt.errors import PlanFileError, ShardingError
from dist_rt.network import Network
from dist_rt.ops import is_supported
from sharding.cost import CostModel, layer_flops, tensor_bytes
from sharding.placement import Placement, R, normalize, parse_placement
from sharding.rules import RuleContext, Strategy, replicate_strategy, strategies
from sharding.search import Problem, solve, weight_bytes


def load_hints(hints: Any) -> dict | str | None:
    """Normalize ``hints``: None, ``"auto"``, ``"replicate"``, a JSON path or a dict.

    Raises:
        PlanFileError: The file cannot be read, is not JSON, or has unknown keys.
    """
    if hints is None or hints == "auto":
        return None
    if hints == "replicate":
        return "replicate"
    if isinstance(hints, (str, os.PathLike)):
        try:
            with open(hints, encoding="utf-8") as f:
                hints = json.load(f)
        except (OSError, ValueError) as exc:
            raise PlanFileError(f"plan hints {str(hints)!r} cannot be read: {exc}") from None
        if hints == "replicate":
            return "replicate"
    if not isinstance(hints, dict) or set(hints) - {"tensors", "layers"}:
        raise PlanFileError(f"plan hints must be an object with keys 'tensors' and/or 'layers', "
                            f"got {hints!r:.200}")
    return hints


def strategy_cost(layer, s: Strategy, cm: CostModel, sizes: dict[str, int], n: int,
                  cache: dict[str, float] | None = None) -> float:
    """Estimated time of ``layer`` under ``s`` on one rank (``cache``: tensor bytes by name)."""
    cache = {} if cache is None else cache
    nbytes = 0.0
    for t, p in zip(list(layer.inputs) + list(layer.outputs), s.inputs + s.outputs,
                    strict=True):
        if t is not None:
            b = cache.get(t.name)
            if b is None:
                b = cache[t.name] = tensor_bytes(t, sizes)
            nbytes += b / (n if p.is_shard() else 1)
    return cm.compute(layer_flops(layer, sizes) / s.split, nbytes)


class ShardingPlan:
    """A strategy for every layer of a network over ``world_size`` ranks.

    Attributes:
        network: The (unsharded) network the plan is for.
        world_size: N.
        strategies: Layer name -> chosen :class:`Strategy`.
        placements: Tensor name -> tuple of placements (1-D mesh: one entry).
        plan_hash: Hex digest identifying network structure + choices (every rank agrees).
        cost_model: The model used for the estimates.
        sizes: Symbolic dim sizes used for costing.
    """

    def __init__(self, network: Network, world_size: int, chosen: dict[str, Strategy],
                 ctx: RuleContext, cost_model: CostModel, sizes: dict[str, int]):
        self.network = network
        self.world_size = world_size
        self.strategies = chosen
        self.rule_context = ctx
        self.cost_model = cost_model
        self.sizes = sizes
        self.placements: dict[str, tuple[Placement, ...]] = {}
        for layer in network.layers:
            s = chosen[layer.name]
            for t, p in zip(layer.inputs, s.inputs, strict=True):
                if t is not None and t.producer is None and t.name not in self.placements:
                    self.placements[t.name] = (p,)
            for t, p in zip(layer.outputs, s.outputs, strict=True):
                self.placements[t.name] = (p,)
        for t in network.inputs:
            self.placements.setdefault(t.name, (R,))
        digest = hashlib.sha256()
        digest.update(f"{network.name}|{world_size}".encode())
        for layer in network.layers:
            s = chosen[layer.name]
            digest.update(f"|{layer.name}:{layer.op_type}:{s.inputs}{s.outputs}".encode())
        self.plan_hash = digest.hexdigest()[:16]
        self._counts: Counter | None = None

    def partition(self, rank: int) -> Network:
        """Rank ``rank``'s local Network (see ``sharding.partition``).

        Raises:
            ShardingError: ``rank`` is outside ``[0, world_size)``.
        """
        from sharding.partition import partition

        if not isinstance(rank, int) or not 0 <= rank < self.world_size:
            raise ShardingError(f"rank {rank} is outside [0, {self.world_size}) for this plan")
        return partition(self, rank)

    def collective_counts(self) -> dict[str, int]:
        """Collectives each rank runs, by operation (``{"all_reduce": 5, ...}``)."""
        if self._counts is None:
            local = self.partition(0)
            self._counts = Counter(str(lay.attr("collective_operation")) for lay in local.layers
                                   if lay.op_type == "DistCollective")
        return dict(self._counts)

    def weight_bytes_per_rank(self) -> float:
        """Weight bytes one rank holds."""
        seen: set[tuple[str, Placement]] = set()
        total = 0.0
        for layer in self.network.layers:
            for t, p in zip(layer.inputs, self.strategies[layer.name].inputs, strict=True):
                if t is not None and t.is_constant and (t.name, p) not in seen:
                    seen.add((t.name, p))
                    total += weight_bytes(t, p, self.world_size)
        return total

    def summary(self) -> str:
        """A few lines for people: sharded layers, collectives, memory per rank."""
        sharded = sum(1 for s in self.strategies.values() if s.split > 1)
        counts = self.collective_counts()
        coll = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) or "none"
        total = self.network.weight_bytes()
        names = Counter(s.name for s in self.strategies.values() if s.split > 1)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(names.items())) or "-"
        return (f"sharding plan {self.plan_hash}: {self.world_size} ranks, {sharded}/"
                f"{len(self.strategies)} layers sharded ({kinds})\n"
                f"  collectives per rank: {coll}\n"
                f"  weights per rank: {self.weight_bytes_per_rank() / 2**20:.2f} MiB of "
                f"{total / 2**20:.2f} MiB total (cost model: {self.cost_model.name})")

    def __repr__(self) -> str:
        return f"ShardingPlan(world_size={self.world_size}, plan_hash={self.plan_hash!r})"


def _apply_hints(network: Network, options: dict[str, list[Strategy]], hints: Any) -> None:
    if hints is None:
        return
    if hints == "replicate":
        for layer in network.layers:
            options[layer.name] = [replicate_strategy(layer)]
        return
    for pattern, want in (hints.get("layers") or {}).items():
        hit = False
        for layer in network.layers:
            if fnmatch.fnmatchcase(layer.name, pattern):
                hit = True
                kept = [s for s in options[layer.name] if s.name == want]
                if not kept:
                    have = sorted({s.name for s in options[layer.name]})
                    raise ShardingError(f"layer '{layer.name}' ({layer.op_type}): hint "
                                        f"{pattern!r} asks for strategy {want!r}, available: "
                                        f"{have}")
                options[layer.name] = kept
        if not hit:
            raise PlanFileError(f"plan hint layer pattern {pattern!r} matches no layer")
    consumers = network.consumers()
    for name, text in (hints.get("tensors") or {}).items():
        t = network.tensors.get(name)
        if t is None:
            raise PlanFileError(f"plan hint names tensor {name!r}, which the network does not "
                                f"have")
        text = text[0] if isinstance(text, list) and len(text) == 1 else text
        p = normalize(parse_placement(text, f"plan hint for tensor '{name}': "),
                      len(t.shape or ()))
        if t.producer is not None:
            k = t.producer.outputs.index(t)
            users = [(t.producer, lambda s, k=k: s.outputs[k])]
        else:
            users = [(lay, lambda s, lay=lay, t=t: [q for u, q in zip(lay.inputs, s.inputs,
                                                                   strict=True) if u is t][0])
                     for lay in consumers[name]]
        for lay, pick in users:
            kept = [s for s in options[lay.name] if pick(s) == p]
            if not kept:
                raise ShardingError(f"tensor '{name}': hint {p} is not a placement layer "
                                    f"'{lay.name}' ({lay.op_type}) supports (shape "
                                    f"{t.shape}, {len(options[lay.name])} strategies)")
            options[lay.name] = kept


def _sizes(network: Network, input_shapes: dict | None) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name, shape in (input_shapes or {}).items():
        t = next((t for t in network.inputs if t.name == name), None)
        if t is None or t.shape is None or len(t.shape) != len(shape):
            raise ShardingError(f"input_shapes: network '{network.name}' has no input {name!r} "
                                f"of rank {len(shape)} (inputs: "
                                f"{[(i.name, i.shape) for i in network.inputs]})")
        for d, v in zip(t.shape, shape, strict=True):
            if isinstance(d, str):
                sizes[d] = int(v)
    return sizes


def plan(network: Network, world_size: int, *, hints: Any = None,
         cost_model: CostModel | None = None, memory_limit: float | None = None,
         input_shapes: dict[str, tuple[int, ...]] | None = None,
         device: str | None = None) -> ShardingPlan:
    """Find a sharding of ``network`` over ``world_size`` ranks.

    Args:
        network: The network (its shapes are inferred in place).
        world_size: Number of ranks N >= 1.
        hints: None (search everything), ``"replicate"``, a JSON file path or a dict (see
            the module docstring).
        cost_model: Machine parameters; when None, ``CostModel.for_device(device)``
            (see ``sharding.cost`` for why the device decides).
        memory_limit: Max weight bytes per rank, or None.
        input_shapes: Sizes for symbolic dims, used only for costing.
        device: ``"cpu"``, ``"cuda"`` or None/``"auto"`` (what this machine has); picks the
            default cost model.

    Returns:
        The plan.

    Raises:
        ShardingError: Bad world size, contradicting hints, nothing fits the memory limit.
        PlanFileError: Unreadable or malformed hints.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ShardingError(f"world_size must be a positive int, got {world_size!r}")
    cm = cost_model or CostModel.for_device(device)
    known = network.infer_shapes()
    sizes = _sizes(network, input_shapes)
    ctx = RuleContext(world_size, known, is_supported)
    options = {layer.name: strategies(layer, ctx) for layer in network.layers}
    _apply_hints(network, options, load_hints(hints))
    cache: dict[str, float] = {}
    costs = {}
    for lay in network.layers:
        # A layer with one option is a constant of the search: no need to cost it.
        costs[lay.name] = [0.0] if len(options[lay.name]) == 1 else [
            strategy_cost(lay, s, cm, sizes, world_size, cache) for s in options[lay.name]]
    problem = Problem(network, options, costs, world_size, cm, sizes, memory_limit)
    problem._bytes = cache
    chosen = solve(problem)
    picked = {name: options[name][i] for name, i in chosen.items()}
    return ShardingPlan(network, world_size, picked, ctx, cm, sizes)
