"""CUDA tactics: the alternatives the tactic-selection pass times on the GPU.

Registered in :data:`TACTICS` (read by :func:`dist_rt.builder.tactics.registry`); the first of
each list is the backend's ordinary path (the fused-kernel dispatch of
:mod:`dist_rt.runtime.cuda.kernels`). The backend looks a recorded name up through
:func:`wrapper` when it first dispatches a layer.

* ``MatMul``: ``lt0`` .. ``lt7``, the i-th algorithm cuBLASLt's heuristic returns for the
  call's problem (:mod:`dist_rt.runtime.cuda.cublaslt`), for a 2-D right operand ((..., M,
  K) @ (K, N) with the rows flattened, as the default does). Tile shapes, split-K and
  stream-K kernels differ by shape and GPU, so the first entries of the heuristic's list are
  real alternatives to its pick (``lt0``) and to ``cublasGemmEx``'s (the default). The list
  is deterministic for a given GPU, cuBLAS version and problem, so a recorded name means the
  same kernel in a later process (after a cuBLAS upgrade it may name another, equally
  correct, kernel). ``lt<i>`` applies when the heuristic returns more than i algorithms for
  the layer's static shapes; a call whose problem has fewer (another shape of a dynamic
  profile, a less aligned view) runs the default GEMM. All keep float32 accumulation, so
  results equal the default's up to summation order.
* ``dist_rt::MatMulSiluMul``: the same ``lt<i>`` GEMMs, then the SiLU gate on the two
  halves (what the default runs above ``gemv.MAX_ROWS`` rows), so fusing the gate keeps
  the gate/up projection's timed GEMM.
* ``dist_rt::Attention``: the Hopper wgmma flash kernel (``wg``: sm_90, fp16/bf16, D 64 or
  128) vs. the mma.sync flash kernel (``tc``: 16 query rows a warp;
  ``tc2``: 32, re-reading Q from shared memory; fp16/bf16, D % 16 == 0 and <= 128) vs. the
  CUDA-core flash-style kernel (up to :data:`FLASH_TACTIC_MAX_QUERIES` queries) vs. cuBLAS +
  fused softmax vs. causal query chunks, whatever the query length (the default takes the
  CUDA-core kernel up to 16 queries and above that ``wg`` on sm_90, else ``tc`` or ``tc2`` by
  :func:`flash.default_rows_per_warp`; the best switch points depend on the GPU, heads and
  head size). A recorded tactic runs only at the shapes it was timed at
  (:func:`wrapper`).

Removed: the ``cublasGemmAlgo_t`` hints ``cublas_tensor_op``, ``cublas_algo0``,
``cublas_algo1`` and ``cublas_algo0_tensor_op``. cuBLAS documents ``cublasGemmAlgo_t`` as
having no effect from sm_80 on, so on Hopper they timed the default four more times and won
only by noise. Plans and timing caches naming them still load: an unknown name runs the
default path, and a cache entry naming one is timed again. cuBLASLt (above) replaced them:
more binding code (descriptors per problem) but a real choice of kernels.
"""

from __future__ import annotations

import math
from typing import Any

from dist_rt.builder.tactics import DEFAULT, Spec, Tactic
from dist_rt.errors import ExecutionError
from dist_rt.runtime.cuda import cublas, cublaslt, flash, flash_wgmma, kernels, matmul_silu
from dist_rt.runtime.cuda.source import MAX_HEAD_DIM

#: ``lt<i>`` tactics: the first this-many algorithms of cuBLASLt's heuristic list.
LT_TACTICS = cublaslt.MAX_ALGOS


def _gemm_applies(layer: Any, specs: list[Spec]) -> bool:
    """The shapes :func:`kernels.matmul` sends to cuBLAS (2-D B, or equal batch dims)."""
    if len(specs) != 2 or specs[0] is None or specs[1] is None:
        return False
    (sa, da), (sb, db) = specs
    if da != db or cublas.cuda_type(da) is None or len(sa) < 2 or len(sb) < 2:
        return False
    return len(sb) == 2 or tuple(sa[:-2]) == tuple(sb[:-2])


def _lt(index: int):
    """Run function of ``lt<index>``: flattened rows @ 2-D B with that cuBLASLt algorithm."""
    def run(layer, inputs, rt):
        a, b = inputs
        if (a.ndim >= 2 and b.ndim == 2 and a.dtype == b.dtype and a.shape[-1] == b.shape[0]
                and a.size and b.size and cublaslt.cuda_type(a.dtype) is not None
                and cublaslt.is_available()):
            # CuPy's reshape is a view when the rows are evenly strided, else a contiguous copy.
            y = cublaslt.matmul2d(a.reshape(-1, a.shape[-1]), b, index)
            if y is not None:
                return [y.reshape(*a.shape[:-1], b.shape[1])]
        # Not "decline" (None): the backend would then run the generic op (cupy.matmul),
        # which cannot be captured; the default path of this layer is kernels.matmul.
        return kernels.matmul(layer, inputs, rt)
    return run


def _lt_silu(index: int):
    """Run function of MatMulSiluMul's ``lt<index>``: that GEMM, then ``silu(g) * u``."""
    gemm = _lt(index)

    def run(layer, inputs, rt):
        h = gemm(layer, inputs, rt)
        # None: nothing launched, the generic op runs
        return None if h is None else matmul_silu.gate_halves(layer, h[0], rt)
    return run


def _lt_applies(index: int):
    """``applies`` of ``lt<index>``: 2-D B and more than ``index`` heuristic algorithms."""
    def applies(layer: Any, specs: list[Spec]) -> bool:
        if not _gemm_applies(layer, specs) or len(specs[1][0]) != 2:
            return False
        (sa, dtype), (sb, _) = specs
        if sa[-1] != sb[0]:
            return False
        try:
            return cublaslt.algo_count(dtype, math.prod(sa[:-1]), sb[1], sb[0]) > index
        except ExecutionError:
            return False  # no cuBLASLt here: only the default
    return applies


def _attention(path: str):
    def run(layer, inputs, rt):
        return kernels.attention(layer, inputs, rt, path=path)
    return run


def _no_mask(specs: list[Spec]) -> bool:
    return (len(specs) >= 3 and all(s is not None and len(s[0]) == 4 for s in specs[:3])
            and (len(specs) < 4 or specs[3] is None)
            and kernels._type_of(specs[0][1]) is not None)


#: Most queries the CUDA-core attention kernel is a tactic for. It is timed on contiguous
#: q/k/v, but in a model V is a strided view of the merged QKV projection, which this
#: kernel reads far slower than the tensor-core one: at 128 queries it won the timing and
#: made the 1B Llama 1.755 instead of 1.223 ms (H100). Near the default's switch point (16)
#: the choice is a real one.
FLASH_TACTIC_MAX_QUERIES = 64


def _flash_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and specs[0][0][3] <= MAX_HEAD_DIM
            and specs[0][0][2] <= FLASH_TACTIC_MAX_QUERIES)


def _tc_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and flash.supports(specs[0][1], specs[0][0][3])
            and specs[1][0][3] == specs[2][0][3] == specs[0][0][3])


def _wg_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and flash_wgmma.supports(specs[0][1], specs[0][0][3])
            and specs[1][0][3] == specs[2][0][3] == specs[0][0][3]
            and flash_wgmma.available())


def _chunks_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and bool(int(layer.attr("causal", 0)))
            and specs[0][0][2] == specs[1][0][2] > kernels.CAUSAL_CHUNK_ROWS)


#: (domain, op type) -> CUDA tactics, the default first.
TACTICS: dict[tuple[str, str], tuple[Tactic, ...]] = {
    ("", "MatMul"): (Tactic(DEFAULT),
                     *(Tactic(f"lt{i}", _lt(i), _lt_applies(i)) for i in range(LT_TACTICS))),
    ("dist_rt", "MatMulSiluMul"): (Tactic(DEFAULT),
                                   *(Tactic(f"lt{i}", _lt_silu(i), _lt_applies(i))
                                     for i in range(LT_TACTICS))),
    ("dist_rt", "Attention"): (Tactic(DEFAULT),
                               Tactic("wg", _attention("wg"), _wg_applies),
                               Tactic("tc", _attention("tc"), _tc_applies),
                               Tactic("tc2", _attention("tc2"), _tc_applies),
                               Tactic("flash", _attention("flash"), _flash_applies),
                               Tactic("cublas_softmax", _attention("cublas"),
                                      lambda layer, specs: _no_mask(specs)),
                               Tactic("causal_chunks", _attention("chunks"), _chunks_applies)),
}


def wrapper(layer: Any, name: str | None):
    """The run function of the tactic ``name`` recorded on ``layer``, or None (default path).

    A tactic runs only at the input shapes it was timed at (``layer.metadata
    ["tactic_shapes"]``, recorded by the tactic pass); other shapes of a dynamic profile take
    the default path. Measured on the 1B Llama (H100), tactics timed at 1x128 and applied
    everywhere cost 1x1 1.168 vs 1.071 ms (cuBLASLt's ``lt<i>`` names another, untimed
    kernel at another problem) and 8x2048 346 vs 56 ms (the CUDA-core attention kernel that
    won at 128 queries, at 2048).
    """
    if name is None or name == DEFAULT:
        return None
    domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
    run = next((t.run for t in TACTICS.get((domain, layer.op_type), ()) if t.name == name),
               None)
    timed = layer.metadata.get("tactic_shapes")
    if run is None or not timed:
        return run
    default = kernels.lookup(layer)

    def at_timed_shapes(layer, inputs, rt):
        if [None if a is None else list(a.shape) for a in inputs] != timed:
            return default(layer, inputs, rt) if default is not None else None
        return run(layer, inputs, rt)

    return at_timed_shapes
