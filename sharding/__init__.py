"""Automatic sharding: split a Network over N ranks and insert DistCollective layers.

    plan = sharding.plan(network, world_size=4)   # rules + cost model + ILP search
    local = plan.partition(rank)                  # this rank's Network, weights sliced
    print(plan.summary()); print(sharding.explain(plan))
"""

from __future__ import annotations

from sharding.cost import CostModel
from sharding.placement import Partial, Placement, Replicate, Shard, parse_placement
from sharding.plan import ShardingPlan, plan


def explain(plan: ShardingPlan, svg_path: str | None = None) -> str:
    """The plan as a table (and an SVG picture when ``svg_path`` is given).

    The code is in ``sharding._explain``; ``sharding/explain.py`` is the CLI
    (``python -m sharding.explain``), kept out of this import so it does not shadow us.
    """
    from sharding._explain import explain as _explain

    return _explain(plan, svg_path)


__all__ = ["CostModel", "Partial", "Placement", "Replicate", "Shard", "ShardingPlan", "explain",
           "parse_placement", "plan"]
