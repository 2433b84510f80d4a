"""Fuse a gated MLP's merged gate/up MatMul, its Split and the SiluMul into one layer.

Pattern (every Llama MLP, once ``fuse_parallel_mm`` has merged gate and up and
``fuse_silu`` has made the gate one layer)::

    H = MatMul(X, W)                  W constant (K, 2I); H read only by the Split
    G, U = Split(H, [I, I], axis=-1)  G, U read only by the SiluMul, neither an output
    Y = SiluMul(G, U)                 G, U of one shape

becomes ``Y = dist_rt::MatMulSiluMul(X, W)`` (``ops/matmul_silu_mul.py``), writing the
SiluMul's output tensor. On CUDA at decode (one or two rows) the GEMV computes each gate
column with its up column and writes ``silu(g) * u`` (``runtime/cuda/gemv.py``): one
launch a layer fewer and no (M, 2I) intermediate. Larger batches run the same GEMM and
SiLU-gate kernels as the unfused layers.

Only on CUDA builds: on the CPU the layers cost the same fused or not.
Runs after ``fuse_parallel_mm`` and ``fuse_silu`` (they make the pattern).
Refit: W is read under its own name, as before.
"""

from __future__ import annotations

from dist_rt.builder.passes import BuildState, on_cuda
from dist_rt.builder.passes.fuse_util import Matcher, add_fused, anchors, prune_fused
from dist_rt.network import Layer, Network


def _halves(split: Layer) -> bool:
    """True when ``split`` cuts the last axis of its input into two equal halves."""
    x = split.inputs[0]
    if x is None or x.shape is None or len(split.outputs) != 2:
        return False
    axis = int(split.attr("axis", 0))
    if axis not in (-1, len(x.shape) - 1):
        return False
    n = x.shape[-1]
    parts = [t.shape[-1] if t.shape else None for t in split.outputs]
    return isinstance(n, int) and n % 2 == 0 and parts == [n // 2, n // 2]


def _match(m: Matcher, gate: Layer) -> tuple[Layer, Layer] | None:
    """(the MatMul, the Split) that SiluMul ``gate`` can absorb, else None."""
    if gate.op_type != "SiluMul" or gate.domain != "dist_rt" or len(gate.inputs) != 2:
        return None
    g, u = gate.inputs
    if g is None or u is None or g.shape is None or g.shape != u.shape:
        return None
    split = m.producer(g, "Split")
    if split is None or list(split.outputs) != [g, u] or not _halves(split):
        return None
    if not (m.private(g) and m.private(u)):
        return None
    h = split.inputs[0]
    mm = m.producer(h, "MatMul")
    if mm is None or not m.private(h):
        return None
    w = mm.inputs[1]
    if w is None or not w.is_constant or w.shape is None or len(w.shape) != 2:
        return None
    return mm, split


def run(network: Network, state: BuildState) -> str:
    """Replace every MatMul -> Split(halves) -> SiluMul chain by MatMulSiluMul (CUDA only).

    Args:
        network: Edited in place.
        state: Build state; nothing is done unless the build is for CUDA.

    Returns:
        A summary line.
    """
    if not on_cuda(state):
        return "off: not a CUDA build, MatMul + Split + SiluMul kept"
    m = Matcher(network)
    fused = 0
    for gate in anchors(network, "SiluMul", ("dist_rt",)):
        found = _match(m, gate)
        if found is None:
            continue
        mm, split = found
        add_fused(network, "MatMulSiluMul", mm.inputs[:2], {}, name=f"{mm.name}.silu",
                  outputs=gate.outputs[:1], replaces=[mm, split, gate])
        fused += 1
    prune_fused(network, fused)
    return f"{fused} MatMul+Split+SiluMul chains fused"
