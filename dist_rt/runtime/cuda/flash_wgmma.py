"""Hopper flash attention forward on warpgroup MMA (``wgmma``), fp16 and bf16, sm_90a.

Computes what :func:`.flash.flash_attention` computes (same arguments, masks, GQA and
(B, S, Hq, D) output) with the instruction that reaches the H100's tensor-core peak:
``mma.sync`` (the sm_80 kernel of :mod:`.flash`) is held back by the shared-memory reads of
its B fragments (``ldmatrix``), while ``wgmma`` reads its operands from shared memory
itself, for a whole warpgroup (4 warps) and a 64 x N x 16 product at once.

Design: one CTA = 3 warpgroups (384 threads) for one (batch, query head) and 128 query rows,
warp-specialized as in FlashAttention-3:

* Warpgroup 2 is the producer: it copies Q once, then K[t] and V[t] into stage t % ST of a
  ring (``ST`` = 2 or 3 stages) with ``cp.async`` (16 bytes a thread, zero-filled past S or
  Skv), and signals each copy's "full" mbarrier through
  ``cp.async.mbarrier.arrive.noinc`` (it completes when the thread's copies have landed).
  Before refilling a stage it waits on that stage's "empty" mbarrier. It gives up
  registers (``setmaxnreg.dec`` to 40) for the consumers (``setmaxnreg.inc`` to 232): an
  SM sub-partition holds one warp of each warpgroup, 3 x 168 = 40 + 2 x 232 registers.
* Warpgroups 0 and 1 consume: warpgroup w owns query rows 64w .. 64w + 63 of the CTA, its
  warp w' rows 16w' .. 16w' + 15 of those (the wgmma accumulator layout: a warp holds the
  C fragments of one ``mma.m16n8`` tile per n8 column block). They never meet at a CTA
  barrier, only at the mbarriers, so one's softmax runs while the other's products do;
  with ``pingpong`` two named barriers make them issue their S products in turns.
* Shared layout: 128-byte-swizzled panels of 64 columns; the 16-byte chunk c of row r of a
  panel sits at ``r * 128 + ((c ^ (r % 8)) * 16)``, the layout the wgmma shared-memory
  descriptors call ``swizzle 128B`` (panel bases 1024-byte aligned, so the hardware's XOR,
  taken from address bits, matches the copy's).
* S (64 x 128 a warpgroup) = Q K^T: D/16 ``wgmma m64n128k16``, both operands in shared
  memory and K-major (Q and K are (rows, D), D contiguous); k16 step kk starts
  ``32 (kk % 4)`` bytes into panel ``kk / 4``, 8-row groups are 1024 bytes apart.
* Online softmax in fp32 registers: :mod:`.flash`'s ``softmax_tile`` as is (a warp's wgmma
  accumulator is 16 ``mma`` C fragments); P rounded to 16 bits: adjacent n8 pairs of S
  are exactly the register A fragment of the next product.
* O (64 x D a warpgroup) += P V: 8 ``wgmma m64nDk16``, A = P from registers, B = V from
  shared memory, MN-major (V is (keys, D), D contiguous: ``imm-trans-b``); a k16 step is 16
  key rows (2048 bytes) on, the two 64-column panels are ``128 * 128`` bytes apart (the
  descriptor's leading byte offset). It is issued and not waited for: the next tile's S
  wait covers it.
* ``cp.async`` writes through the generic proxy and wgmma reads through the async proxy: a
  consumer fences (``fence.proxy.async.shared::cta``) after a full barrier, before its
  products read the stage.
* Causal: key tiles past the CTA's last frontier are never copied; a warpgroup whose rows
  see no key of a tile skips its math (not its barrier waits and arrivals); only tiles that
  cross a warp's frontier or Skv are masked.
* CTA order: the G query heads x ceil(S / 128) query tiles reading one (batch, kv head)'s K
  and V run together (one 1-D grid), longest causal tiles first within the group.

Measured on H100 (fp16, causal, D = 128, B = 8, 16 heads / 4 kv heads, S = 2048; medians of
5 back-to-back calls): 0.344 ms (400 TFLOP/s) vs 0.486 for :mod:`.flash` (32 rows a
warp), 0.488 for PyTorch's FlashAttention-2 and 0.285 for cuDNN. On the way:

* One CTA of 2 warpgroups that copied cooperatively and met at ``__syncthreads`` twice a
  tile: 0.450 ms (softmax and products never overlapped; 40% tensor-pipe use in Nsight
  Compute). Warp-specializing with a single producer warp: 0.58 ms (one warp's
  ``cp.async`` stream could not keep up); the producer warpgroup: 0.405.
* The grouped CTA order: copies alone (products and softmax cut out) 0.190 -> 0.153 ms,
  the kernel 0.370 -> 0.344. Copies alone are still half the kernel: every CTA re-reads
  its (batch, kv head)'s K and V from L2, 128 query rows per read (cuDNN's kernel reads
  as many bytes: see the persistent grid below).
* 3 stages: no gain at D = 128 (0.352 ms), 15% at D = 64 (the default there:
  :func:`default_variant`). Ping-pong: 0.344 vs 0.361 ms without. Lazy rescaling
  (FlashAttention-4's): 2-4% slower here (the eager rescale runs under the other
  warpgroup's products).

Kept as a variant, not the default: TMA copies (``Variant(tma=True)``: one producer thread,
tensor maps from :mod:`.tma`): 0.327 vs 0.333 ms at 8 x 16 x 2048 (0.100 vs 0.104 at
1 x 32 x 2048), slower at small shapes (the maps' lookup on the host).

Measured and dropped:

* FlashAttention-3's intra-warpgroup overlap (issue S[t], then the previous tile's P V,
  wait for S only, run tile t's softmax under that P V, then rescale O; 193 registers of
  P, S and O, no spills): 0.353 ms vs 0.339 (2 stages), 0.332 with 3 stages. (ptxas
  serializes every wgmma if a branch or an mbarrier wait loop sits between two products of
  one batch: the loop had to be peeled.)
* TMA multicast over CTA pairs (a cluster of 2: two query heads of one kv head each copy
  one 64-column panel of every K and V tile into both CTAs, halving the L2 reads; remote
  mbarrier arrivals release a stage only when both CTAs are done): correct, but 0.453 ms
  vs 0.327 (3 stages 0.471; 1 x 32 x 2048 0.135 vs 0.100): the pair moves at the pace of
  its slower CTA. cuDNN's kernel (0.27-0.29 ms) runs without clusters too.
* A persistent grid (one CTA per SM taking work items c, c + 132, ...; the K/V ring and
  the ping-pong running across items, two Q buffers so the next item's Q loads under the
  current one; 64 / 216 producer / consumer registers): 0.332 ms vs 0.333 (with TMA
  0.313), but 1 x 32 x 2048 0.134 vs 0.103 and 1 x 16 x 2048 0.074 vs 0.063: striding
  over the items loses the longest-first balance when there are few items per SM. Nsight
  Compute shows cuDNN's kernel persistent (132 CTAs of 384 threads, 232 KiB of shared
  memory) with the same 1.21 GB of L2-to-SM reads as ours. With a dynamic scheduler
  instead (a global counter taken by the producer thread, items published beside their Q
  buffer, the last CTA zeroing the counter for the next launch or graph replay; correct
  under capture and replay): 0.350 ms persistent vs 0.325 with one CTA per item taking
  from the same counter (0.329 vs 0.312 with TMA; 1 x 32 x 2048 0.109 vs 0.109). So
  neither order nor launch overhead makes cuDNN's lead; dropped.

Not done: FP8.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import cupy
import numpy as np

from dist_rt.runtime.cuda import cubin, tma
from dist_rt.runtime.cuda._flash_wgmma_source import KERNEL
from dist_rt.runtime.cuda.device import capability
from dist_rt.runtime.cuda.flash import (
    HELPERS,
    LOG2E,
    _aligned,
    _elem_strides,
    _storage,
    check_out,
    problem,
)

#: Query rows a CTA (2 warpgroups of 64), keys a tile, threads a CTA.
BLOCK_M = 128
BLOCK_N = 128
THREADS = 384
#: Head dims the kernel is built for (64-column swizzled panels).
HEAD_DIMS = (64, 128)
#: The NVRTC target: wgmma exists only in the architecture-specific sm_90a.
ARCH = "sm_90a"


_ENTRY = r"""
extern "C" __global__ void __launch_bounds__(WG_NT, 1) {name}(
        const u16* q, const u16* k, const u16* v, u16* y, int S, int Skv, int G, int Hq,
        long long qsb, long long qsh, long long qss, long long ksb, long long ksh,
        long long kss, long long vsb, long long vsh, long long vss, float sl2, int causal,
        unsigned long long maps) {{
    flash_wg_body<{t}, {d}, {v.stages}, {lazy}, {pingpong}, {tma}>(
        q, k, v, y, S, Skv, G, Hq, qsb, qsh, qss, ksb, ksh, kss, vsb, vsh, vss, sl2, causal,
        maps);
}}
"""


class Variant(NamedTuple):
    """Compile-time choices of the kernel.

    Attributes:
        stages: K and V tiles in flight (each stage holds one of each; 2 or 3).
        lazy: Rescale O only when a row's running max grows by more than 2^8
            (``softmax_tile`` in :mod:`.flash`).
        pingpong: The two consumer warpgroups issue their S products in turns.
        tma: One producer thread copies tiles with the Tensor Memory Accelerator (tensor
            maps, :mod:`.tma`) instead of the warpgroup's ``cp.async``.
    """

    stages: int = 2
    lazy: bool = False
    pingpong: bool = True
    tma: bool = False


DEFAULT = Variant()
STAGES = (2, 3)


def default_variant(head_dim: int) -> Variant:
    """The variant :func:`flash_attention` runs when given none: 3 stages at D = 64 (H100,
    4 x 16 heads x 1024, causal: 0.055-0.069 vs 0.065-0.080 ms with 2), else 2 (D = 128:
    3 stages measured 0.352-0.355 vs 0.333-0.344 ms at 8 x 16 x 2048)."""
    return DEFAULT._replace(stages=3) if head_dim == 64 else DEFAULT


#: (device id, storage type, D, variant) -> compiled kernel, shared-memory limit raised.
_KERNELS: dict[tuple[int, str, int, Variant], Any] = {}
#: Why NVRTC could not build the kernel in this process (None: it could, or was not asked).
_UNBUILDABLE: str | None = None


def supports(dtype: Any, head_dim: int) -> bool:
    """Whether the kernel exists for this dtype and head dim (fp16/bf16, D 64 or 128)."""
    return _storage(dtype) is not None and head_dim in HEAD_DIMS


def available() -> bool:
    """Whether the kernel can run here: a GPU that runs sm_90a code (compute capability 9.0:
    H100, H200) and an NVRTC that built it (or has not been asked yet)."""
    return _UNBUILDABLE is None and capability() == 90


def smem_bytes(head_dim: int, stages: int = DEFAULT.stages) -> int:
    """Dynamic shared memory of one CTA: Q (128 rows), ``stages`` K and V tiles (128 rows
    each), and 1 KiB to align the base to the 1024-byte swizzle period (at D = 128: 161 KiB
    with 2 stages, 225 KiB with 3, of the 227 KiB a CTA may have)."""
    return (BLOCK_M + 2 * stages * BLOCK_N) * head_dim * 2 + 1024


def kernel_name(storage: str, head_dim: int, variant: Variant = DEFAULT) -> str:
    """``flash_wg_h16_d128_s2``, plus ``_lazy`` (lazy rescaling), ``_free`` (no ping-pong)."""
    return (f"flash_wg_{storage}_d{head_dim}_s{variant.stages}"
            + ("_lazy" if variant.lazy else "") + ("" if variant.pingpong else "_free")
            + ("_tma" if variant.tma else ""))


def kernel_source(storage: str, head_dim: int, variant: Variant = DEFAULT) -> str:
    """The NVRTC program of one variant: the shared helpers, the kernel and its entry."""
    return HELPERS + KERNEL + _ENTRY.format(
        name=kernel_name(storage, head_dim, variant), t=storage, d=head_dim, v=variant,
        lazy="true" if variant.lazy else "false",
        pingpong="true" if variant.pingpong else "false",
        tma="true" if variant.tma else "false")


def _kernel(storage: str, head_dim: int, variant: Variant) -> Any:
    """The compiled kernel, or None when this CUDA toolkit's NVRTC cannot build it (then
    :func:`available` turns False for the process, with one warning)."""
    global _UNBUILDABLE
    key = (cupy.cuda.Device().id, storage, head_dim, variant)
    kernel = _KERNELS.get(key)
    if kernel is None:
        name = kernel_name(storage, head_dim, variant)
        try:
            module = cubin.load(kernel_source(storage, head_dim, variant), f"{name}.cu",
                                ARCH, ("--std=c++14",))
        except cubin.CompileError as exc:
            # An NVRTC without sm_90a (CUDA < 12.0): the mma.sync kernel still runs.
            _UNBUILDABLE = str(exc).splitlines()[0]
            warnings.warn(f"flash_wgmma: {_UNBUILDABLE}; attention falls back to the "
                          f"mma.sync kernel", RuntimeWarning, stacklevel=2)
            return None
        kernel = module.get_function(name)
        kernel.max_dynamic_shared_size_bytes = smem_bytes(head_dim, variant.stages)
        _KERNELS[key] = kernel
    return kernel


def flash_attention(q, k, v, scale: float, causal: bool, out=None,
                    variant: Variant | None = None):
    """Attention with wgmma; None when this kernel does not cover the call.

    Args:
        q: (B, Hq, S, D) fp16 or bf16, D 64 or 128, any strides with a contiguous last dim.
        k: (B, Hkv, Skv, D), same dtype; Hq a multiple of Hkv.
        v: Same shape and dtype as ``k``.
        scale: Score scale (> 0).
        causal: End-aligned causal mask: query i sees keys j <= i + Skv - S.
        out: Optional contiguous (B, S, Hq, D) output buffer of q's dtype.
        variant: Compile-time choices (:class:`Variant`); None: :func:`default_variant`.

    Returns:
        Y as a contiguous (B, S, Hq, D) array, or None (unsupported dtype or head dim, not
        an sm_90 GPU, a grid too large), in which case nothing was launched.

    Raises:
        ValueError: ``out`` has the wrong shape, dtype or layout, or ``variant`` has a stage
            count other than 2 or 3.
    """
    if variant is None:
        variant = default_variant(q.shape[-1])
    if variant.stages not in STAGES:
        raise ValueError(f"flash_attention: variant.stages is {variant.stages!r}, expected "
                         f"one of {STAGES}")
    call = problem(q, k, v, scale)
    if call is None:
        return None
    storage, b, hq, s, d, hkv, skv = call
    n_q = -(-s // BLOCK_M)
    if not supports(q.dtype, d) or b * hq * n_q >= 2**31 or not available():
        return None
    check_out(out, (b, s, hq, d), q.dtype)
    if b * s * hq * d == 0:
        return cupy.empty((b, s, hq, d), dtype=q.dtype) if out is None else out
    q, k, v = (_aligned(x) for x in (q, k, v))
    maps = 0
    if variant.tma:
        # No tensor map describes an empty K/V (Skv = 0: the kernel copies no tile anyway),
        # and none is uploaded while capturing (tma.device_maps): cp.async copies then.
        boxes = [(64, BLOCK_M, 1, 1)] + [(64, BLOCK_N, 1, 1)] * 2
        buf = tma.device_maps([q, k, v], boxes) if skv else None
        if buf is None:
            variant = variant._replace(tma=False)
        else:
            maps = buf.data.ptr
    kernel = _kernel(storage, d, variant)
    if kernel is None:
        return None
    if out is None:
        out = cupy.empty((b, s, hq, d), dtype=q.dtype)
    strides = [np.int64(x) for t in (q, k, v) for x in _elem_strides(t)[:3]]
    kernel(
        (b * hq * n_q,), (THREADS,),
        (q, k, v, out, np.int32(s), np.int32(skv), np.int32(hq // hkv), np.int32(hq),
         *strides, np.float32(scale * LOG2E), np.int32(bool(causal)), np.uint64(maps)),
        shared_mem=smem_bytes(d, variant.stages))
    return out
