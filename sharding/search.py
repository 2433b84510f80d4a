"""The search: one strategy per layer plus resharding, minimizing estimated time.

Formulated as a 0-1 integer linear program solved by HiGHS (``scipy.optimize.milp``):

* ``y[l, s]`` (binary): layer ``l`` runs strategy ``s``; ``sum_s y[l, s] = 1``.
* A produced tensor's placement is its producer's choice: ``X[t, p] = sum y[l, s]`` over
  the strategies whose output is ``p``; a consumer's demand ``D[c, q]`` likewise.
* ``w[t, p, q]`` (continuous in [0, 1]) pays resharding ``t`` from ``p`` to ``q`` once,
  shared by every consumer asking for ``q``: ``w >= X[t, p] + D[c, q] - 1``. Impossible
  conversions (to Partial) get ``X[t, p] + D[c, q] <= 1``.
* Weights and network inputs have no producer: each rank loads (slices) whatever placement
  a consumer asks for, ``m[t, q] >= D[c, q]``; the weight bytes of the placements used are
  bounded by the memory limit.

Why an ILP and not dynamic programming: residual connections and shared weights (tied
embeddings) make the graph a DAG with reconvergent paths, where a DP over a chain or tree
would have to approximate. The LP relaxation is nearly integral on these graphs, so HiGHS
solves a 32-layer Llama (about 2000 layers) in a few seconds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from dist_rt.errors import ShardingError
from sharding.cost import CostModel, reshard_ops, tensor_bytes
from sharding.placement import Placement, R
from sharding.rules import Strategy


@dataclass
class Problem:
    """What the search gets.

    Attributes:
        network: The network (shapes inferred).
        options: Allowed strategies per layer name (non-empty lists).
        layer_cost: Cost of each option, same layout as ``options``.
        world_size: N.
        cost_model: For reshard costs.
        sizes: Symbolic dim sizes used for costing.
        memory_limit: Max weight bytes per rank, or None.
    """

    network: object
    options: dict[str, list[Strategy]]
    layer_cost: dict[str, list[float]]
    world_size: int
    cost_model: CostModel
    sizes: dict[str, int]
    memory_limit: float | None = None


def weight_bytes(tensor, placement: Placement, n: int) -> float:
    """Per-rank bytes of a weight stored with ``placement``."""
    full = float(tensor.weights.nbytes)
    return full / n if placement.is_shard() else full


def reshard_cost(problem: Problem, tensor, src: Placement, dst: Placement) -> float | None:
    """Time to convert ``tensor`` from ``src`` to ``dst`` (None when impossible)."""
    ops = reshard_ops(src, dst)
    if ops is None:
        return None
    nbytes = tensor_bytes(tensor, problem.sizes)
    cm = problem.cost_model
    t = sum(cm.collective(op, nbytes, problem.world_size) for op in ops)
    if dst.is_shard():
        t += nbytes / problem.world_size / cm.memory_bandwidth
    return t


class _Lp:
    """Sparse rows for milp."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.integer: list[int] = []
        self.rows: list[tuple[dict[int, float], float, float]] = []

    def var(self, cost: float, integer: bool) -> int:
        self.cost.append(cost)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, coefs: dict[int, float], lo: float, hi: float) -> None:
        self.rows.append((coefs, lo, hi))


def solve(problem: Problem, time_limit: float = 60.0) -> dict[str, int]:
    """Pick one option index per layer.

    Args:
        problem: The layers' options and costs.
        time_limit: Seconds HiGHS may spend (the best plan found so far is used after).

    Returns:
        Layer name -> index into ``problem.options[name]``.

    Raises:
        ShardingError: No plan fits the memory limit (or the hints contradict each other).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    net, n = problem.network, problem.world_size
    lp = _Lp()
    choice_vars: dict[str, list[int | None]] = {}
    for layer in net.layers:
        opts = problem.options[layer.name]
        costs = problem.layer_cost[layer.name]
        if len(opts) == 1:
            choice_vars[layer.name] = [None]
            continue
        vs = [lp.var(c, True) for c in costs]
        choice_vars[layer.name] = vs
        lp.row({v: 1.0 for v in vs}, 1.0, 1.0)

    def indicator(layer_name: str, pick) -> dict[Placement, tuple[list[int], float]]:
        """placement -> (vars, const) where the indicator is sum(vars) + const."""
        out: dict[Placement, tuple[list[int], float]] = {}
        for v, s in zip(choice_vars[layer_name], problem.options[layer_name], strict=True):
            p = pick(s)
            if p is None:
                continue
            vars_, const = out.get(p, ([], 0.0))
            if v is None:
                const += 1.0
            else:
                vars_ = vars_ + [v]
            out[p] = (vars_, const)
        return out

    # Demands of every consumer slot, grouped by tensor.
    demands: dict[str, list[dict]] = defaultdict(list)
    for layer in net.layers:
        for i, t in enumerate(layer.inputs):
            if t is not None:
                demands[t.name].append(indicator(layer.name, lambda s, i=i: s.inputs[i]))
    for t in net.outputs:
        demands[t.name].append({R: ([], 1.0)})

    mem_row: dict[int, float] = {}
    mem_const = 0.0
    for t in net.tensors.values():
        dems = demands.get(t.name)
        if not dems:
            continue
        wanted = set().union(*(d.keys() for d in dems))
        if t.producer is None:
            # A source: each rank loads or slices whatever placement is asked for.
            for q in wanted:
                if q.is_partial() and not t.is_constant:
                    for d in dems:
                        if q in d:
                            vars_, const = d[q]
                            if const:
                                raise ShardingError(f"network input '{t.name}' cannot be "
                                                    f"Partial")
                            lp.row({v: 1.0 for v in vars_}, -np.inf, 0.0)
                    continue
                nbytes = weight_bytes(t, q, n) if t.is_constant else 0.0
                slice_cost = 0.0 if t.is_constant or not q.is_shard() else \
                    tensor_bytes(t, problem.sizes) / n / problem.cost_model.memory_bandwidth
                forced = any(q in d and d[q][1] >= 1 for d in dems)
                if forced:
                    mem_const += nbytes
                    continue
                m = lp.var(slice_cost + nbytes * 1e-18, False)
                mem_row[m] = nbytes
                for d in dems:
                    if q in d:
                        vars_, _ = d[q]
                        row = {v: 1.0 for v in vars_}
                        row[m] = row.get(m, 0.0) - 1.0
                        lp.row(row, -np.inf, 0.0)
            continue
        # A produced tensor: pay once per (source placement, wanted placement).
        lay = t.producer
        k = next(j for j, o in enumerate(lay.outputs) if o is t)
        have = indicator(lay.name, lambda s, k=k: s.outputs[k])
        for p, (pv, pc) in have.items():
            for q in wanted:
                if q == p:
                    continue
                c = reshard_cost(problem, t, p, q)
                w = None if c is None else lp.var(c, False)
                for d in dems:
                    if q not in d:
                        continue
                    qv, qc = d[q]
                    row: dict[int, float] = {}
                    for v in pv + qv:
                        row[v] = row.get(v, 0.0) + 1.0
                    const = pc + qc
                    if w is not None:
                        row[w] = row.get(w, 0.0) - 1.0
                    if not row:
                        if const > 1.0:
                            raise ShardingError(
                                f"tensor '{t.name}': its producer '{lay.name}' gives {p} but a "
                                f"consumer needs {q}, which no collective provides")
                        continue
                    lp.row(row, -np.inf, 1.0 - const)

    if problem.memory_limit is not None:
        if mem_const > problem.memory_limit:
            raise ShardingError(f"weights that must be loaded whole need {mem_const:.0f} bytes "
                                f"per rank, over the memory limit {problem.memory_limit:.0f}")
        if mem_row:
            lp.row(mem_row, -np.inf, problem.memory_limit - mem_const)

    nvar = len(lp.cost)
    if nvar == 0:
        return {layer.name: 0 for layer in net.layers}
    ri, ci, vals, lo, hi = [], [], [], [], []
    for r, (coefs, a, b) in enumerate(lp.rows):
        for v, x in coefs.items():
            ri.append(r)
            ci.append(v)
            vals.append(x)
        lo.append(a)
        hi.append(b)
    cons = []
    if lp.rows:
        mat = coo_matrix((vals, (ri, ci)), shape=(len(lp.rows), nvar)).tocsr()
        cons = [LinearConstraint(mat, np.asarray(lo), np.asarray(hi))]
    # Scale to microseconds so HiGHS tolerances see costs of order one.
    res = milp(np.asarray(lp.cost) * 1e6, constraints=cons, integrality=np.asarray(lp.integer),
               bounds=Bounds(0.0, 1.0),
               options={"time_limit": time_limit, "disp": False, "mip_rel_gap": 1e-6})
    if res.x is None:
        limit = "" if problem.memory_limit is None else \
            f" within the memory limit of {problem.memory_limit:.0f} bytes per rank"
        raise ShardingError(f"no sharding of network '{net.name}' over {n} ranks fits{limit} "
                            f"({res.message})")
    chosen = {}
    for layer in net.layers:
        vs = choice_vars[layer.name]
        chosen[layer.name] = 0 if vs == [None] else int(np.argmax([res.x[v] for v in vs]))
    return chosen
