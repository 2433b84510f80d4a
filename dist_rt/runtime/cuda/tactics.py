"""CUDA tactics: the alternatives the tactic-selection pass times on the GPU.

Registered in :data:`TACTICS` (read by :func:`dist_rt.builder.tactics.registry`); the first of
each list is the backend's ordinary path (the fused-kernel dispatch of
:mod:`dist_rt.runtime.cuda.kernels`). The backend looks a recorded name up through
:func:`wrapper` when it first dispatches a layer.

* ``MatMul``: the direct cuBLAS GEMM (capturable) with an explicit ``cublasGemmAlgo_t``:
  ``CUBLAS_GEMM_DEFAULT_TENSOR_OP`` (99) and the explicit algorithms 0, 1 (SIMT) and
  ``CUBLAS_GEMM_ALGO0_TENSOR_OP`` (100). cuBLAS documents the explicit algorithms as hints a
  given GPU and cuBLAS version may treat like the default, or reject for a shape; a rejected
  algorithm falls back to the default (:func:`dist_rt.runtime.cuda.cublas._gemm`) and the
  timing then simply finds no gain. All keep float32 accumulation, so the result is the
  default's up to summation order.
* ``dist_rt::Attention``: the tensor-core flash kernel (``tc``, fp16/bf16, D % 16 == 0 and
  <= 128) vs. the CUDA-core flash-style kernel vs. cuBLAS + fused softmax vs. causal query
  chunks, whatever the query length (the default takes the CUDA-core kernel up to 16
  queries and ``tc`` above; the best switch point depends on the GPU, heads and head size).

Rejected: cuBLASLt's heuristic list of algorithms per shape gives more choices but needs
matmul descriptors per shape and far more ctypes binding code (see cublas.py's header).
"""

from __future__ import annotations

from typing import Any

from dist_rt.builder.tactics import DEFAULT, Spec, Tactic
from dist_rt.runtime.cuda import cublas, flash, kernels
from dist_rt.runtime.cuda.source import MAX_HEAD_DIM

#: tactic name -> cublasGemmAlgo_t.
GEMM_ALGOS = {"cublas_tensor_op": 99, "cublas_algo0": 0, "cublas_algo1": 1,
              "cublas_algo0_tensor_op": 100}


def _gemm(algo: int):
    def run(layer, inputs, rt):
        return kernels.matmul(layer, inputs, rt, algo=algo)
    return run


def _gemm_applies(layer: Any, specs: list[Spec]) -> bool:
    """The shapes :func:`kernels.matmul` sends to cuBLAS (2-D B, or equal batch dims)."""
    if len(specs) != 2 or specs[0] is None or specs[1] is None:
        return False
    (sa, da), (sb, db) = specs
    if da != db or cublas.cuda_type(da) is None or len(sa) < 2 or len(sb) < 2:
        return False
    return len(sb) == 2 or tuple(sa[:-2]) == tuple(sb[:-2])


def _attention(path: str):
    def run(layer, inputs, rt):
        return kernels.attention(layer, inputs, rt, path=path)
    return run


def _no_mask(specs: list[Spec]) -> bool:
    return (len(specs) >= 3 and all(s is not None and len(s[0]) == 4 for s in specs[:3])
            and (len(specs) < 4 or specs[3] is None)
            and kernels._type_of(specs[0][1]) is not None)


def _flash_applies(layer: Any, specs: list[Spec]) -> bool:
    return _no_mask(specs) and specs[0][0][3] <= MAX_HEAD_DIM


def _tc_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and flash.supports(specs[0][1], specs[0][0][3])
            and specs[1][0][3] == specs[2][0][3] == specs[0][0][3])


def _chunks_applies(layer: Any, specs: list[Spec]) -> bool:
    return (_no_mask(specs) and bool(int(layer.attr("causal", 0)))
            and specs[0][0][2] == specs[1][0][2] > kernels.CAUSAL_CHUNK_ROWS)


#: (domain, op type) -> CUDA tactics, the default first.
TACTICS: dict[tuple[str, str], tuple[Tactic, ...]] = {
    ("", "MatMul"): (Tactic(DEFAULT),
                     *(Tactic(name, _gemm(algo), _gemm_applies)
                       for name, algo in GEMM_ALGOS.items())),
    ("dist_rt", "Attention"): (Tactic(DEFAULT),
                               Tactic("tc", _attention("tc"), _tc_applies),
                               Tactic("flash", _attention("flash"), _flash_applies),
                               Tactic("cublas_softmax", _attention("cublas"),
                                      lambda layer, specs: _no_mask(specs)),
                               Tactic("causal_chunks", _attention("chunks"), _chunks_applies)),
}


def wrapper(layer: Any, name: str | None):
    """The run function of the tactic ``name`` recorded on ``layer``, or None (default path)."""
    if name is None or name == DEFAULT:
        return None
    domain = "" if layer.domain in ("", "ai.onnx") else layer.domain
    for tactic in TACTICS.get((domain, layer.op_type), ()):
        if tactic.name == name:
            return tactic.run
    return None
