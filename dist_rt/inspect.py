"""``python -m dist_rt.inspect model.r0.plan [--json]``: what a plan file holds.

Prints the engine (rank/world, plan hash, device, precision), bindings, every layer (op,
inputs and outputs with dtypes and shapes, the tactic, the layers it was fused from), the
DistCollective layers, and the memory plan (arena peak vs. the lower bound). ``--json``
prints the same as one JSON object. A damaged or unreadable file prints one line
``dist_rt.inspect: error: ...`` to stderr and exits 1 (polygraphy inspect / trtexec style).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dist_rt import dtypes
from dist_rt.errors import DistRtError
from dist_rt.network import format_shape


def _tensor(t: Any) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"name": t.name, "dtype": None if t.dtype is None else dtypes.name_of(t.dtype),
            "shape": list(t.shape) if t.shape is not None else None,
            "constant": t.is_constant}


def describe(engine: Any) -> dict[str, Any]:
    """A JSON-able description of ``engine``.

    Args:
        engine: A loaded :class:`dist_rt.engine.Engine`.

    Returns:
        Keys ``engine``, ``bindings``, ``layers``, ``collectives``, ``memory_plan``.
    """
    net = engine.network
    layers = [{"name": lay.name, "op": lay.op_type, "domain": lay.domain,
               "inputs": [_tensor(t) for t in lay.inputs],
               "outputs": [_tensor(t) for t in lay.outputs],
               "tactic": engine.tactics.get(lay.name),
               "fused_from": lay.metadata.get("fused_from"),
               "nb_ranks": lay.nb_ranks}
              for lay in net.layers]
    collectives = [{"name": lay.name, **{k: lay.attributes.get(k) for k in
                                         ("collective_operation", "reduce_op", "axis")}}
                   for lay in net.layers
                   if lay.op_type in ("DistCollective", "AllReduceAddRMSNorm")]
    plan = engine.memory_plan or {}
    return {"engine": {"name": net.name, "rank": engine.rank, "world_size": engine.world_size,
                       "plan_hash": engine.plan_hash, "device": engine.device,
                       "device_arch": engine.device_arch, "precision": engine.precision,
                       "weight_bytes": engine.weight_bytes, "layers": len(layers),
                       "build_notes": engine.build_notes,
                       "profiles": [p.to_json() for p in engine.profiles]},
            "bindings": {kind: [{"name": n, "dtype": dtypes.name_of(d), "shape": list(s)}
                                for n, d, s in binds]
                         for kind, binds in (("inputs", engine.inputs),
                                             ("outputs", engine.outputs))},
            "layers": layers, "collectives": collectives,
            "memory_plan": {k: plan.get(k) for k in ("arena_bytes", "lower_bound_bytes",
                                                     "alignment", "input_shapes")}
            if plan else None}


def _fmt_tensor(t: dict | None) -> str:
    if t is None:
        return "-"
    kind = " const" if t["constant"] else ""
    return f"{t['name']}: {t['dtype']}{format_shape(t['shape'])}{kind}"


def render(info: dict[str, Any]) -> str:
    """The text form of :func:`describe`'s output."""
    e = info["engine"]
    lines = [f"Engine '{e['name']}': rank {e['rank']}/{e['world_size']}, plan "
             f"{e['plan_hash'][:16]}, {e['device']} ({e['device_arch']}), {e['precision']}",
             f"  {e['layers']} layers, weights {e['weight_bytes'] / 2**20:.2f} MiB"]
    for kind, binds in info["bindings"].items():
        lines += [f"  {kind[:-1]:<6} {b['name']}: {b['dtype']}{format_shape(b['shape'])}"
                  for b in binds]
    for p in e["profiles"]:
        lines.append(f"  profile {json.dumps(p)}")
    plan = info["memory_plan"]
    if plan:
        lines.append(f"Memory plan: arena {plan['arena_bytes']} bytes, lower bound "
                     f"{plan['lower_bound_bytes']} bytes, for inputs {plan['input_shapes']}")
    else:
        lines.append("Memory plan: none (symbolic shapes at build time)")
    lines.append(f"Collectives: {len(info['collectives'])}")
    lines += [f"  {c['name']}: {c['collective_operation']} ({c['reduce_op']})"
              for c in info["collectives"]]
    lines.append("Layers:")
    for lay in info["layers"]:
        extra = f" tactic={lay['tactic']}" if lay["tactic"] else ""
        extra += f" nb_ranks={lay['nb_ranks']}" if lay["nb_ranks"] != 1 else ""
        lines.append(f"  [{lay['op']}] {lay['name']}{extra}")
        lines += [f"      in  {_fmt_tensor(t)}" for t in lay["inputs"]]
        lines += [f"      out {_fmt_tensor(t)}" for t in lay["outputs"]]
        if lay["fused_from"]:
            lines.append(f"      fused from {lay['fused_from']}")
    if e["build_notes"]:
        lines.append("Build notes:")
        lines += [f"  {k}: {v}" for k, v in e["build_notes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dist_rt.inspect``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dist_rt.inspect",
                                     description="Show what a dist_rt plan file holds.")
    parser.add_argument("plan", help="plan file written by Engine.save")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    from dist_rt.engine import Engine  # noqa: PLC0415 - keep --help fast

    try:
        engine = Engine.load(args.plan)
        info = describe(engine)
    except (DistRtError, OSError) as exc:
        print(f"dist_rt.inspect: error: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps(info, indent=1, default=str) if args.json else render(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
