"""Explain a plan: a table per layer and an SVG of the sharded graph.

``sharding.explain(plan)`` (and ``python -m sharding.explain MODEL.onnx -n 4 [--svg
plan.svg]``, see ``sharding/explain.py``) prints the table:
layer, op, strategy, output placements, collectives inserted after it, bytes they move,
estimated time, and the per-rank weight memory. The SVG is written directly (one box per
layer in topological order, sharded layers blue, collectives red): no graphviz needed.
"""

from __future__ import annotations

import html

from sharding.cost import all_to_all_ok, reshard_ops, tensor_bytes
from sharding.placement import R
from sharding.plan import ShardingPlan, strategy_cost


def rows(plan: ShardingPlan) -> list[tuple[str, str, str, str, str, float, float]]:
    """(layer, op, strategy, outputs, collectives, bytes moved, est. seconds) per layer."""
    consumers = plan.network.consumers()
    out = []
    for layer in plan.network.layers:
        s = plan.strategies[layer.name]
        colls, moved = [], 0.0
        for t, p in zip(layer.outputs, s.outputs, strict=True):
            wanted = {q for c in consumers.get(t.name, []) for u, q in
                      zip(c.inputs, plan.strategies[c.name].inputs, strict=True) if u is t}
            if t in plan.network.outputs:
                wanted.add(R)
            for q in wanted:
                for op in reshard_ops(p, q, all_to_all_ok(t, p, q, plan.world_size)) or []:
                    colls.append(op)
                    moved += tensor_bytes(t, plan.sizes)
        t_est = strategy_cost(layer, s, plan.cost_model, plan.sizes, plan.world_size)
        outs = ",".join(str(p) for p in s.outputs)
        out.append((layer.name, layer.op_type, s.name, outs, "+".join(sorted(colls)) or "-",
                    moved, t_est))
    return out


def explain(plan: ShardingPlan, svg_path: str | None = None) -> str:
    """The plan as a text table; writes an SVG picture to ``svg_path`` when given."""
    table = rows(plan)
    width = max([len(r[0]) for r in table] + [5])
    lines = [plan.summary(), "",
             f"{'layer':<{width}}  {'op':<18} {'strategy':<12} {'out':<6} {'collective':<16} "
             f"{'bytes':>10} {'est us':>8}"]
    for name, op, strat, outs, coll, moved, t in table:
        lines.append(f"{name:<{width}}  {op:<18} {strat:<12} {outs:<6} {coll:<16} "
                     f"{moved:>10.0f} {t * 1e6:>8.2f}")
    lines.append(f"per-rank weight memory: {plan.weight_bytes_per_rank() / 2**20:.3f} MiB")
    if svg_path:
        _svg(table, svg_path)
    return "\n".join(lines)


def _svg(table, path: str) -> None:
    box_h, gap, w = 22, 6, 520
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w + 20}" '
             f'height="{len(table) * (box_h + gap) + 20}" font-family="monospace" '
             f'font-size="11">']
    for i, (name, op, strat, outs, coll, _, _) in enumerate(table):
        y = 10 + i * (box_h + gap)
        fill = "#cfe3ff" if strat not in ("replicate", "partial") else "#eeeeee"
        parts.append(f'<rect x="10" y="{y}" width="{w - 160}" height="{box_h}" fill="{fill}" '
                     f'stroke="#555"/>')
        parts.append(f'<text x="14" y="{y + 15}">{html.escape(f"{op} {name} [{strat}] {outs}")}'
                     f'</text>')
        if coll != "-":
            parts.append(f'<rect x="{w - 140}" y="{y}" width="150" height="{box_h}" '
                         f'fill="#ffb3b3" stroke="#c00"/>')
            parts.append(f'<text x="{w - 136}" y="{y + 15}">{html.escape(coll)}</text>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
