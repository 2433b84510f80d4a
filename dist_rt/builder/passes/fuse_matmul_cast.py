"""Fuse a 16-bit MatMul and its Cast to float32 into dist_rt::MatMulCast (CUDA builds).

Pattern::

    Cast(MatMul(A, B), to=FLOAT)    A, B float16 (or both bfloat16)

where the MatMul output is read only by that Cast and is not a network output. It becomes
``MatMulCast(A, B, to=FLOAT)`` writing the Cast's output tensor (same name, so readers and
network outputs are unchanged). Where it comes from: the precision pass wraps every float32
network output in a Cast from the compute dtype ("outputs wrapped"), and 16-bit models
export their float32 logits the same way, so a Llama ends in ``Cast(lm_head MatMul)``. At
batch 8 x 2048 tokens and a 32000 vocab the fp16 logits are 1 GiB, written by the GEMM, read
back by the Cast and written again as 2 GiB of fp32 (~2.5 ms of a 58 ms step on an H100).
The fused layer has cuBLAS write the fp32 logits straight from its fp32 accumulator
(``runtime/cuda/matmul_cast.py``): the 1 GiB write, its read and one launch go away, and
the logits lose their fp16 rounding.

Why after ``precision`` and ``eliminate_casts``: the Cast only exists once precision has
wrapped the output, and elimination has then dropped the Casts that became no-ops.

Why only on CUDA (``BuilderConfig.device`` ``"cuda"``, or ``"auto"`` finding a GPU): the win
is the cuBLAS output type. On the CPU the NumPy reference would convert both operands to
float32 on every call (a copy of the whole weight), slower than the unfused pair.

Refit: B is read as it is, under its name, so refitting it still works.
"""

from __future__ import annotations

import numpy as np

from dist_rt import dtypes
from dist_rt.builder.passes import BuildState, on_cuda
from dist_rt.builder.passes.fuse_util import Matcher, add_fused, anchors, prune_fused
from dist_rt.errors import ModelError
from dist_rt.network import Layer, Network

F32 = np.dtype(np.float32)
#: Operand dtypes whose GEMM cuBLAS can write as float32 (Ctype CUDA_R_32F).
LOW_DTYPES = frozenset({np.dtype(np.float16), dtypes.bfloat16})


def _to_float32(cast: Layer) -> bool:
    try:
        return cast.attr("to") is not None and dtypes.from_onnx(int(cast.attr("to"))) == F32
    except ModelError:
        return False


def _match(m: Matcher, cast: Layer) -> Layer | None:
    """The MatMul that ``cast`` (a Cast) can absorb, else None."""
    x = cast.inputs[0] if cast.inputs else None
    mm = m.producer(x, "MatMul")
    if mm is None or not m.private(x) or not _to_float32(cast):
        return None
    a, b = mm.inputs[0], mm.inputs[1]
    if a is None or b is None or a.dtype not in LOW_DTYPES or b.dtype != a.dtype:
        return None
    return mm


def run(network: Network, state: BuildState) -> str:
    """Replace ``Cast(MatMul(A, B), to=FLOAT)`` on 16-bit A, B by MatMulCast (CUDA only).

    Args:
        network: Edited in place.
        state: Build state; nothing is done unless the build is for CUDA.

    Returns:
        A summary line.
    """
    if not on_cuda(state):
        return "off: not a CUDA build, MatMul + Cast kept"
    m = Matcher(network)
    fused = 0
    for cast in anchors(network, "Cast"):
        mm = _match(m, cast)
        if mm is None:
            continue
        add_fused(network, "MatMulCast", mm.inputs[:2], {"to": dtypes.to_onnx(F32)},
                  name=f"{mm.name}.cast", outputs=cast.outputs[:1], replaces=[mm, cast])
        fused += 1
    prune_fused(network, fused)
    return f"{fused} MatMul+Cast pairs fused"
