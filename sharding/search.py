"""The search: one strategy per layer plus resharding, minimizing estimated time.

Formulated as a 0-1 integer linear program solved by HiGHS (``scipy.optimize.milp``):

* ``y[l, s]`` (binary): layer ``l`` runs strategy ``s``; ``sum_s y[l, s] = 1``.
* A produced tensor's placement is its producer's choice: ``X[t, p] = sum y[l, s]`` over
  the strategies whose output is ``p``; a consumer slot's demand ``D[c, q]`` likewise.
* Per (tensor, consumer slot) a small transportation block ``f[c, p, q] >= 0`` with
  ``sum_q f[c, p, q] = X[t, p]`` and ``sum_p f[c, p, q] = D[c, q]``; impossible pairs
  (anything to Partial) have no variable, which forbids them. ``f`` is the exact
  "producer gives p and consumer wants q" indicator on integral points and, unlike the
  linearization ``w >= X + D - 1``, keeps the LP relaxation tight (it is the local marginal
  polytope, integral on trees), so HiGHS usually closes the gap at the root node.
* A conversion ``p -> q`` is paid once per tensor, shared by every consumer asking for
  ``q``: ``u[t, p, q] >= f[c, p, q]`` (with a single consumer the cost sits on ``f``).
* Weights and network inputs have no producer: each rank loads (slices) whatever placement
  a consumer asks for, ``m[t, q] >= D[c, q]``; the weight bytes of the placements used are
  bounded by the memory limit.

Rejected alternatives: dynamic programming over a chain or tree would have to approximate
the reconvergent paths that residual connections, shared RoPE tables and tied embeddings
create; a greedy / local search does not recover the column -> row pairing reliably because
each half alone looks worse than replication. Layers whose only option is replication are
constants of the program, and ties are broken towards the earlier (simpler) strategy by a
tiny deterministic epsilon, so every rank computes the same plan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from dist_rt.errors import ShardingError
from sharding.cost import CostModel, all_to_all_ok, reshard_ops, tensor_bytes
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
    _bytes: dict = field(default_factory=dict)

    def nbytes(self, tensor) -> float:
        """``tensor_bytes`` of ``tensor``, cached by name."""
        b = self._bytes.get(tensor.name)
        if b is None:
            b = self._bytes[tensor.name] = tensor_bytes(tensor, self.sizes)
        return b


def weight_bytes(tensor, placement: Placement, n: int) -> float:
    """Per-rank bytes of a weight stored with ``placement``."""
    full = float(tensor.weights.nbytes)
    return full / n if placement.is_shard() else full


def reshard_cost(problem: Problem, tensor, src: Placement, dst: Placement) -> float | None:
    """Time to convert ``tensor`` from ``src`` to ``dst`` (None when impossible).

    A Shard destination also pays one local pass over its shard (the slice, or the
    transpose around an all_to_all).
    """
    ops = reshard_ops(src, dst, all_to_all_ok(tensor, src, dst, problem.world_size))
    if ops is None:
        return None
    nbytes = problem.nbytes(tensor)
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


def _indicator(choice_vars, options, layer_name: str, pick
               ) -> dict[Placement, tuple[list[int], float]]:
    """placement -> (vars, const): the indicator of ``pick(strategy) == placement``."""
    out: dict[Placement, tuple[list[int], float]] = {}
    for v, s in zip(choice_vars[layer_name], options[layer_name], strict=True):
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


def _marginal(lp: _Lp, coefs: dict[int, float], vars_: list[int], const: float) -> None:
    """Row ``sum(coefs) - sum(vars_) == const``."""
    row = dict(coefs)
    for v in vars_:
        row[v] = row.get(v, 0.0) - 1.0
    lp.row(row, const, const)


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
        # Tie-break towards earlier strategies (replicate first) by a tiny epsilon.
        vs = [lp.var(c + 1e-12 * i, True) for i, c in enumerate(costs)]
        choice_vars[layer.name] = vs
        lp.row({v: 1.0 for v in vs}, 1.0, 1.0)

    demands: dict[str, list[dict]] = defaultdict(list)
    for layer in net.layers:
        for i, t in enumerate(layer.inputs):
            if t is not None:
                demands[t.name].append(_indicator(choice_vars, problem.options, layer.name,
                                                  lambda s, i=i: s.inputs[i]))
    for t in net.outputs:
        demands[t.name].append({R: ([], 1.0)})

    mem_row: dict[int, float] = {}
    mem_const = 0.0
    for t in net.tensors.values():
        dems = demands.get(t.name)
        if not dems:
            continue
        if t.producer is None:
            mem_const += _source(problem, lp, t, dems, mem_row)
            continue
        lay = t.producer
        k = next(j for j, o in enumerate(lay.outputs) if o is t)
        have = _indicator(choice_vars, problem.options, lay.name, lambda s, k=k: s.outputs[k])
        shared = len(dems) > 1
        paid: dict[tuple[Placement, Placement], int] = {}
        costs: dict[tuple[Placement, Placement], float | None] = {}
        for d in dems:
            if all(not v for v, _ in have.values()) and all(not v for v, _ in d.values()):
                p = next(iter(have))
                q = next(iter(d))
                if p != q and reshard_cost(problem, t, p, q) is None:
                    raise ShardingError(
                        f"tensor '{t.name}': its producer '{lay.name}' gives {p} but a "
                        f"consumer needs {q}, which no collective provides")
                continue
            f: dict[tuple[Placement, Placement], int] = {}
            for p in have:
                for q in d:
                    if (p, q) not in costs:
                        costs[p, q] = 0.0 if p == q else reshard_cost(problem, t, p, q)
                    c = costs[p, q]
                    if c is None:
                        continue
                    f[p, q] = lp.var(0.0 if shared else c, False)
                    if shared and c > 0.0:
                        if (p, q) not in paid:
                            paid[p, q] = lp.var(c, False)
                        lp.row({paid[p, q]: 1.0, f[p, q]: -1.0}, 0.0, np.inf)
            for p, (pv, pc) in have.items():
                _marginal(lp, {f[p, q]: 1.0 for q in d if (p, q) in f}, pv, pc)
            for q, (qv, qc) in d.items():
                _marginal(lp, {f[p, q]: 1.0 for p in have if (p, q) in f}, qv, qc)

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
    # Scale to microseconds so HiGHS tolerances see costs of order one. The LP relaxation
    # is usually integral on the choice variables (see the module docstring): try it first
    # and run branch and bound only when it is not.
    cost = np.asarray(lp.cost) * 1e6
    integer = np.asarray(lp.integer)
    res = _relaxation(cost, cons, integer, time_limit)
    if res is None:
        res = milp(cost, constraints=cons, integrality=integer, bounds=Bounds(0.0, 1.0),
                   options={"time_limit": time_limit, "disp": False, "mip_rel_gap": 1e-4})
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


def _relaxation(cost: np.ndarray, cons: list, integer: np.ndarray, time_limit: float):
    """The LP relaxation's solution when it is integral on ``integer`` variables, else None."""
    from scipy.optimize import linprog
    from scipy.sparse import vstack

    if not cons:
        return None
    a = cons[0]
    mat, eq = a.A, a.lb == a.ub
    up = ~eq & np.isfinite(a.ub)
    lo = ~eq & np.isfinite(a.lb)
    a_ub = vstack([mat[up], -mat[lo]]).tocsr()
    b_ub = np.concatenate([a.ub[up], -a.lb[lo]])
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=mat[eq], b_eq=a.lb[eq], bounds=(0.0, 1.0),
                  method="highs", options={"time_limit": time_limit})
    if res.x is None:
        return None
    x = res.x[integer.astype(bool)]
    return res if np.all(np.minimum(np.abs(x), np.abs(1.0 - x)) < 1e-6) else None


def _source(problem: Problem, lp: _Lp, t, dems: list[dict], mem_row: dict[int, float]
            ) -> float:
    """Variables of a weight or network input; returns the bytes it always needs."""
    n = problem.world_size
    forced_bytes = 0.0
    for q in set().union(*(d.keys() for d in dems)):
        if q.is_partial() and not t.is_constant:
            for d in dems:
                if q in d:
                    vars_, const = d[q]
                    if const:
                        raise ShardingError(f"network input '{t.name}' cannot be Partial")
                    lp.row({v: 1.0 for v in vars_}, -np.inf, 0.0)
            continue
        nbytes = weight_bytes(t, q, n) if t.is_constant else 0.0
        slice_cost = 0.0 if t.is_constant or not q.is_shard() else \
            tensor_bytes(t, problem.sizes) / n / problem.cost_model.memory_bandwidth
        if any(q in d and d[q][1] >= 1 for d in dems):
            forced_bytes += nbytes
            continue
        m = lp.var(slice_cost + nbytes * 1e-18, False)
        mem_row[m] = nbytes
        for d in dems:
            if q in d:
                vars_, _ = d[q]
                row = {v: 1.0 for v in vars_}
                row[m] = row.get(m, 0.0) - 1.0
                lp.row(row, -np.inf, 0.0)
    return forced_bytes
