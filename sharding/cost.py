"""The cost model: compute and memory time per layer, alpha-beta time per collective.

Estimates are for ranking plans, not for promising latencies::

    layer time      max(FLOPs / N_split / peak_flops, local bytes / memory_bandwidth)
    collective      alpha + f(op, N) * bytes / link_bandwidth   (bytes: the global tensor)
                    all_reduce f = 2(N-1)/N, all_gather/reduce_scatter f = (N-1)/N
                    (ring algorithms, the busbw factors nccl-tests reports);
                    all_to_all f = (N-1)/N^2: each rank sends (N-1)/N of its 1/N shard
    memory (rank)   weight bytes (sharded ones / N) + the largest activations

Defaults exist for NVLink GPUs and for CPU ranks over MPI; ``CostModel.from_bench`` fits
alpha and the link bandwidth to ``python -m collectives.bench --json`` results.

Which model is the default (``CostModel.for_device``, used by ``sharding.plan`` when no
model is given): the one of the device the ranks run on. Tensor-parallel inference is a
trade of per-rank weight traffic against collectives. Decode is memory bound: every step
streams every weight a rank holds, so a layer costs ``weight bytes / memory_bandwidth``
and column/row splitting divides that by N at the price of one all-reduce per pair. A
Gather is charged its whole table, which stands for the table's residency (memory is what
tensor parallelism buys) and makes a vocab-parallel embedding pay once the table is worth
more than one collective. Whether sharding wins is then a property of the machine, not of
the model alone::

    default Llama (2 layers, hidden 256, 2.6 MB of weights per layer), batch 1 x 16 tokens
    model     weight time/layer   saved at N=4   2 all-reduces of 16 KB   plan
    cpu-mpi   260 us              195 us          ~50 us                   Megatron TP
    nvlink    1.3 us              1.0 us          ~17 us                   replicated

Hence a CPU run of ``mpiexec -n 4 python -m dist_rt.run`` shards the default model, while
on NVLink GPUs the same 7 MB model stays replicated, because one all-reduce costs more than
streaming all its weights. Models with GB of weights shard on both. The rejected
alternative, always using one model (or a "slow memory" one), would shard tiny GPU models
into a slower plan. Pass ``memory_limit`` (or hints) to force sharding regardless.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from dist_rt.errors import PlanFileError
from sharding.placement import Placement


@dataclass(frozen=True)
class CostModel:
    """Machine parameters of the estimate.

    Attributes:
        peak_flops: Sustained FLOP/s of one rank.
        memory_bandwidth: Bytes/s one rank streams from its memory.
        alpha: Latency of one collective (s).
        link_bandwidth: Bytes/s of the rank-to-rank link.
        name: Label shown by explain.
    """

    peak_flops: float = 4e14
    memory_bandwidth: float = 2.0e12
    alpha: float = 8e-6
    link_bandwidth: float = 1.5e11
    name: str = "nvlink"

    @classmethod
    def nvlink(cls) -> CostModel:
        """Defaults for GPUs joined by NVLink (H100-class)."""
        return cls()

    @classmethod
    def cpu_mpi(cls) -> CostModel:
        """Defaults for CPU ranks talking over MPI shared memory."""
        return cls(peak_flops=5e10, memory_bandwidth=1e10, alpha=2e-5, link_bandwidth=5e9,
                   name="cpu-mpi")

    @classmethod
    def for_device(cls, device: str | None = None) -> CostModel:
        """The default model of ``device`` (``"cpu"``, ``"cuda"``; None or ``"auto"``: CUDA
        when this machine's CUDA backend works, else CPU). See the module docstring."""
        if device in (None, "auto"):
            try:
                from dist_rt.runtime.backends import resolve_device

                device = resolve_device("auto")
            except Exception:  # noqa: BLE001 - any failure to probe CUDA means CPU
                device = "cpu"
        return cls.nvlink() if device == "cuda" else cls.cpu_mpi()

    @classmethod
    def from_bench(cls, path: str, base: CostModel | None = None) -> CostModel:
        """Fit alpha and link bandwidth to ``collectives.bench --json`` rows.

        Rows are objects with a size in bytes (``bytes`` or ``size``) and a time (``time_us``
        or ``time_s``); all_reduce rows are preferred (their busbw factor is undone).

        Raises:
            PlanFileError: The file is unreadable or holds no usable rows.
        """
        base = base or cls()
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise PlanFileError(f"bench results {path!r} cannot be read: {exc}") from None
        rows = data.get("results", data) if isinstance(data, dict) else data
        xs, ys = [], []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or row.get("op", "all_reduce") != "all_reduce":
                continue
            size = row.get("bytes", row.get("size"))
            t = row.get("time_s", None)
            if t is None and "time_us" in row:
                t = row["time_us"] * 1e-6
            n = int(row.get("world_size", row.get("nranks", 2)))
            if size is None or t is None:
                continue
            xs.append(float(size) * 2 * (n - 1) / max(n, 1))
            ys.append(float(t))
        if len(xs) < 2:
            raise PlanFileError(f"bench results {path!r}: need at least 2 all_reduce rows with "
                                f"bytes and time_us, got {len(xs)}")
        slope, intercept = np.polyfit(np.asarray(xs), np.asarray(ys), 1)
        return CostModel(base.peak_flops, base.memory_bandwidth, max(float(intercept), 1e-7),
                         1.0 / max(float(slope), 1e-15), f"bench:{path}")

    def compute(self, flops: float, nbytes: float) -> float:
        """Roofline time of a layer doing ``flops`` over ``nbytes`` of memory traffic."""
        return max(flops / self.peak_flops, nbytes / self.memory_bandwidth)

    def collective(self, op: str, nbytes: float, n: int) -> float:
        """Alpha-beta time of ``op`` moving a tensor of ``nbytes`` (global size) over n ranks."""
        if n <= 1:
            return 0.0
        factor = {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n,
                  "reduce_scatter": (n - 1) / n, "all_to_all": (n - 1) / n / n}[op]
        return self.alpha + factor * nbytes / self.link_bandwidth


def reshard_ops(src: Placement, dst: Placement, even: bool = True) -> list[str] | None:
    """Collectives turning ``src`` into ``dst`` (``[]`` = local; None = impossible).

    ::

        from \\ to   R             S(b)                           P
        R           -             local slice                    impossible
        S(a)        all_gather    all_to_all (all_gather+slice)  impossible
        P           all_reduce    reduce_scatter                 -

    Args:
        src: The producer's placement.
        dst: The consumer's.
        even: For ``S(a) -> S(b)``: whether :func:`all_to_all_ok` holds; when not, the
            tensor is gathered and sliced (the slice is local).
    """
    if src == dst:
        return []
    if dst.is_partial():
        return None
    if src.is_replicate():
        return []
    if src.is_shard():
        return ["all_to_all"] if dst.is_shard() and even else ["all_gather"]
    return ["all_reduce"] if dst.is_replicate() else ["reduce_scatter"]


def all_to_all_ok(tensor, src: Placement, dst: Placement, n: int) -> bool:
    """Whether ``tensor`` can go from ``Shard(a)`` to ``Shard(b)`` (a != b) by one all_to_all.

    Needs dims a and b static and divisible by ``n`` (always true of placements the rules
    offer) and at most one symbolic dim elsewhere (the local Reshapes around the collective
    spell it ``-1``; see ``sharding.partition``).
    """
    if not (src.is_shard() and dst.is_shard()) or src.dim == dst.dim or tensor is None \
            or tensor.shape is None:
        return False
    shape = tensor.shape
    if not (0 <= src.dim < len(shape) and 0 <= dst.dim < len(shape)):
        return False
    if any(not isinstance(shape[d], int) or shape[d] % n for d in (src.dim, dst.dim)):
        return False
    return sum(not isinstance(d, int) for d in shape) <= 1


def resolve_dim(d, sizes: dict[str, int]) -> int:
    """An int for a dim: static, a known symbol, else 1 (the decode-shaped default)."""
    if isinstance(d, int):
        return d
    if isinstance(d, str) and d in sizes:
        return int(sizes[d])
    return 1


def tensor_bytes(tensor, sizes: dict[str, int]) -> float:
    """Bytes of ``tensor`` with symbolic dims resolved through ``sizes``."""
    if tensor is None or tensor.shape is None:
        return 0.0
    item = tensor.dtype.itemsize if tensor.dtype is not None else 4
    return float(math.prod(resolve_dim(d, sizes) for d in tensor.shape)) * item


def layer_flops(layer, sizes: dict[str, int]) -> float:
    """Rough FLOPs of a layer: 2*M*N*K for contractions, one per output element otherwise."""
    out = layer.outputs[0] if layer.outputs else None
    elems = tensor_bytes(out, sizes) / (out.dtype.itemsize if out is not None and out.dtype
                                        is not None else 4) if out is not None else 0.0
    if layer.op_type in ("MatMul", "Gemm") and layer.inputs[0] is not None \
            and layer.inputs[0].shape:
        k = layer.inputs[0].shape[-2 if layer.attr("transA", 0) else -1]
        return 2.0 * elems * resolve_dim(k, sizes)
    if layer.op_type in ("Conv", "ConvTranspose") and layer.inputs[1] is not None \
            and layer.inputs[1].shape:
        w = layer.inputs[1].shape
        return 2.0 * elems * math.prod(resolve_dim(d, sizes) for d in w[1:])
    return elems
