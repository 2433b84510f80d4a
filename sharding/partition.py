"""Build rank r's local Network from a plan: sliced weights, DistCollective layers inserted.

Each layer is copied with the inputs its strategy asks for. Where a tensor's placement
differs from what a consumer asks, the conversion is emitted once and shared::

    from \\ to   R                         S(b)
    R           -                         Slice [r*c, (r+1)*c) on b
    S(a)        all_gather(axis=a)        all_to_all(axis=b) + Reshape/Transpose/Reshape
                                          (all_gather(a) + Slice when not evenly divisible)
    P           all_reduce(sum)           reduce_scatter(axis=b)

``S(a) -> S(b)`` by all_to_all, for a tensor of global shape (D_a, D_b) (any other dims
ride along) on N ranks, ``ca = D_a/N``, ``cb = D_b/N``::

    x_r   = rows [r*ca, (r+1)*ca) of a, all of b                    (ca, D_b)
    y_r   = all_to_all(x_r, axis=b): block j = x_j[:, r*cb:(r+1)*cb] (ca, N*cb), j = source
    Reshape (ca, N, cb) -> Transpose (N, ca, cb) -> Reshape (D_a, cb) = columns r of b

    rank | holds before         | sends to rank j          | holds after
    r    | a-rows of chunk r    | its b-columns of chunk j | all a-rows, b-columns chunk r

Each rank sends (N-1)/N of its shard, against the whole tensor an all_gather brings in.

Weights never go through a collective: rank r reads only its slice with
``Weights.read(index)`` (memory-mapped external data stays on disk except for that slice).
A Partial weight (a bias added under a row split) is the full tensor on rank 0 and zeros on
the others, so the later all-reduce adds it once. Network outputs are converted to
Replicate under their original names; network inputs are fed whole to every rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dist_rt.network import Network, Tensor
from dist_rt.weights import Weights
from sharding.cost import all_to_all_ok
from sharding.placement import Placement, R, Shard
from sharding.rules import LOCALIZERS, Strategy

if TYPE_CHECKING:
    from sharding.plan import ShardingPlan


def _tag(p: Placement) -> str:
    return str(p).replace("(", "").replace(")", "")


class LocalBuilder:
    """Emits one rank's layers (used by :func:`partition` and the rules' localizers).

    Attributes:
        rank: This rank.
        n: World size.
        ctx: The rules' context (known values) for localizers.
        net: The local Network being built.
    """

    def __init__(self, plan: ShardingPlan, rank: int):
        self.plan = plan
        self.src = plan.network
        self.rank = rank
        self.n = plan.world_size
        self.ctx = plan.rule_context
        net = Network(self.src.name, self.src.opset)
        net.opsets = dict(self.src.opsets)
        net.metadata = dict(self.src.metadata)
        self.net = net
        self._local: dict[tuple[str, Placement], Tensor] = {}
        self._outputs = {t.name for t in self.src.outputs}

    # -- helpers for localizers -------------------------------------------------------------

    def chunk(self, size: int) -> tuple[int, int]:
        """This rank's ``[lo, hi)`` of a dim of ``size`` (even splits only)."""
        c = size // self.n
        return self.rank * c, (self.rank + 1) * c

    def const(self, name: str, array: np.ndarray | Weights) -> Tensor:
        """Add a local constant (the name is made unique)."""
        if name in self.net.tensors:
            name = self.net.unique_name(name)
        return self.net.add_constant(name, array)

    def const_slice(self, tensor: Tensor, axis: int, lo: int, hi: int,
                    pad_zero_row: bool = False) -> Tensor:
        """Rows ``[lo, hi)`` of a weight along ``axis``, read without loading the rest."""
        index = (slice(None),) * axis + (slice(lo, hi),)
        part = tensor.weights.read(index)
        if pad_zero_row:
            pad = [(0, 0)] * part.ndim
            pad[axis] = (0, 1)
            part = np.pad(part, pad)
        return self.const(f"{tensor.name}.{self.rank}of{self.n}", part)

    def out_names(self, layer) -> list[str]:
        """Local names of ``layer``'s outputs (network outputs not yet replicated get a
        suffix; the final conversion takes the original name)."""
        strat = self.plan.strategies[layer.name]
        return [t.name if (t.name not in self._outputs or p.is_replicate())
                else f"{t.name}.{_tag(p)}" for t, p in zip(layer.outputs, strat.outputs,
                                                          strict=True)]

    def emit(self, layer, inputs: list[Tensor | None], out_names: list[str] | None = None,
             attrs: dict | None = None) -> list[Tensor]:
        """Copy ``layer`` with local ``inputs`` (and optionally new attributes)."""
        strat = self.plan.strategies[layer.name]
        new = self.net.add_layer(layer.op_type, inputs, dict(attrs or layer.attributes),
                                 name=layer.name if out_names is None else None,
                                 outputs=out_names or self.out_names(layer),
                                 domain=layer.domain, infer=False)
        new.opset = layer.opset
        new.metadata = dict(layer.metadata)
        if strat.split > 1:
            new.nb_ranks = self.n
            new.metadata["sharding"] = f"{strat.name} over {self.n} ranks"
        return new.outputs

    def emit_new(self, op_type: str, inputs: list[Tensor | None], name: str,
                 out_names: list[str] | None = None, attrs: dict | None = None) -> list[Tensor]:
        """Add a helper layer the original graph did not have."""
        name = self.net.unique_name(name) if any(
            lay.name == name for lay in self.net.layers) else name
        new = self.net.add_layer(op_type, inputs, attrs or {}, name=name,
                                 outputs=out_names or [self.net.unique_name(name + ".out")],
                                 infer=False)
        return new.outputs

    # -- placements -------------------------------------------------------------------------

    def source(self, tensor: Tensor, placement: Placement) -> Tensor:
        """A network input or weight in ``placement`` (sliced locally, never communicated)."""
        key = (tensor.name, placement)
        if key in self._local:
            return self._local[key]
        if tensor.is_constant:
            if placement.is_replicate():
                local = self.const(tensor.name, tensor.weights)
            elif placement.is_shard():
                lo, hi = self.chunk(tensor.shape[placement.dim])
                local = self.const_slice(tensor, placement.dim, lo, hi)
            else:
                data = tensor.weights.numpy() if self.rank == 0 else \
                    np.zeros(tensor.shape, tensor.dtype)
                local = self.const(f"{tensor.name}.partial", np.array(data))
        else:
            whole = self._local[(tensor.name, R)]
            local = self._slice(whole, tensor, placement)
        self._local[key] = local
        return local

    def _slice(self, x: Tensor, tensor: Tensor, placement: Shard, name: str | None = None
               ) -> Tensor:
        lo, hi = self.chunk(tensor.shape[placement.dim])
        args = [x] + [self.const(f"{tensor.name}.slice", np.asarray([v], np.int64))
                      for v in (lo, hi, placement.dim)]
        return self.emit_new("Slice", args, name=f"{tensor.name}.slice_{_tag(placement)}",
                             out_names=[name] if name else None)[0]

    def get(self, tensor: Tensor, placement: Placement, name: str | None = None) -> Tensor:
        """``tensor`` in ``placement``, emitting the conversion once."""
        key = (tensor.name, placement)
        if key in self._local:
            return self._local[key]
        if tensor.producer is None:
            return self.source(tensor, placement)
        have = self.plan.placements[tensor.name][0]
        x = self._local[(tensor.name, have)]
        out = self.net.unique_name(f"{tensor.name}.{_tag(placement)}") if name is None else name
        if have.is_partial():
            op = "all_reduce" if placement.is_replicate() else "reduce_scatter"
            axis = placement.dim if placement.is_shard() else 0
            y = self._collective(x, op, axis, out, tensor.name)
        elif placement.is_replicate():
            y = self._collective(x, "all_gather", have.dim, out, tensor.name)
        elif have.is_shard() and all_to_all_ok(tensor, have, placement, self.n):
            y = self._all_to_all(x, tensor, have, placement, out)
        elif have.is_shard():
            full = self.get(tensor, R)
            y = self._slice(full, tensor, placement, name)
        else:
            y = self._slice(x, tensor, placement, name)
        self._local[key] = y
        return y

    def _all_to_all(self, x: Tensor, tensor: Tensor, have: Shard, want: Shard, out: str
                    ) -> Tensor:
        """``S(a) -> S(b)`` by one all_to_all on b, then regroup (module docstring)."""
        n, a, b = self.n, have.dim, want.dim
        shape = [d if isinstance(d, int) else -1 for d in tensor.shape]
        local = list(shape)
        local[a] //= n
        y = self._collective(x, "all_to_all", b, self.net.unique_name(f"{out}.a2a"),
                             tensor.name)
        split = local[:b] + [n, shape[b] // n] + local[b + 1:]
        y = self.emit_new("Reshape", [y, self.const(f"{tensor.name}.split", np.asarray(
            split, np.int64))], name=f"{tensor.name}.a2a_split")[0]
        # The source-rank axis (at b) goes right before a, whose position moved if a > b.
        perm = [i for i in range(len(split)) if i != b]
        perm.insert(perm.index(a + (a > b)), b)
        y = self.emit_new("Transpose", [y], name=f"{tensor.name}.a2a_order",
                          attrs={"perm": perm})[0]
        final = list(shape)
        final[b] //= n
        return self.emit_new("Reshape", [y, self.const(f"{tensor.name}.merge", np.asarray(
            final, np.int64))], name=f"{tensor.name}.a2a_merge", out_names=[out])[0]

    def _collective(self, x: Tensor, op: str, axis: int, out: str, what: str) -> Tensor:
        attrs = {"collective_operation": op, "reduce_op": "sum", "root": 0, "group": [],
                 "axis": axis}
        name = self.net.unique_name(f"{what}.{op}")
        layer = self.net.add_layer("DistCollective", [x], attrs, name=name, outputs=[out],
                                   infer=False)
        layer.nb_ranks = self.n
        return layer.outputs[0]

    # -- the whole network ------------------------------------------------------------------

    def build(self) -> Network:
        """Emit every layer, then replicate the outputs. Returns the local Network."""
        for t in self.src.inputs:
            local = self.net.add_input(t.name, t.dtype, t.shape)
            self._local[(t.name, R)] = local
        for layer in self.src.layers:
            strat: Strategy = self.plan.strategies[layer.name]
            ins = [None if t is None else self.get(t, p)
                   for t, p in zip(layer.inputs, strat.inputs, strict=True)]
            localizer = LOCALIZERS.get(layer.op_type)
            outs = localizer(self, layer, strat, ins) if localizer else None
            if outs is None:
                outs = self.emit(layer, ins)
            for t, p, local in zip(layer.outputs, strat.outputs, outs, strict=True):
                self._local[(t.name, p)] = local
        for t in self.src.outputs:
            local = self.get(t, R, name=t.name) if (t.name, R) not in self._local \
                else self._local[(t.name, R)]
            self.net.mark_output(local)
        self.net.metadata.update(rank=self.rank, world_size=self.n,
                                 plan_hash=self.plan.plan_hash)
        self.net.infer_shapes()
        return self.net


def partition(plan: ShardingPlan, rank: int) -> Network:
    """Rank ``rank``'s Network for ``plan`` (see the module docstring).

    Args:
        plan: The sharding plan.
        rank: This rank, in ``[0, plan.world_size)``.

    Returns:
        The local Network (metadata ``rank``, ``world_size``, ``plan_hash`` set).
    """
    return LocalBuilder(plan, rank).build()
