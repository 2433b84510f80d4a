"""L2 prefetch of the next decode GEMV's weight, asked by the GEMV before it.

Why: a decode step alternates GEMVs, which keep HBM busy, with short kernels that barely
touch it (RoPE, attention, the residual add + RMSNorm, the SiLU gate, or the all-reduce
fused with the norm). Those run for ~1.5-5 us each at the latency floor while HBM idles:
the 1B Llama's 80 of them are ~0.18 ms of a 0.87 ms step (H100, CUPTI, session 5). PDL
(:mod:`.launch`) lets only the *next* kernel start early, so a GEMV behind two short
kernels begins loading when the first of them ends.

So every decode GEMV, after its own loads, asks the first :func:`budget_bytes` of the next
GEMV's weight (:func:`dist_rt.runtime.weight_layout.prefetch_schedule`) into L2 with
``cp.async.bulk.prefetch.L2`` (sm_90): a hint with no completion to wait for, spread over
the GEMV's last wave of blocks (:mod:`.gemv`, ``l2_prefetch_slice``; earlier waves' lines
would be evicted by the GEMV's own later loads). The bytes stream in while the short
kernels run, and the next GEMV reads its first rows (those its first wave of blocks takes)
from L2. No result changes; a prefetch that is evicted again costs only bandwidth.

Rank table: none; each rank prefetches its own shard's weights.

Budget: ``DIST_RT_L2_PREFETCH_MIB`` (0 turns it off; default :data:`DEFAULT_MIB`), capped at
half the device's L2 so the prefetched lines survive the short kernels' traffic. Only on
sm_90+ and only for weights the GEMV reads (16-bit, stored transposed).
"""

from __future__ import annotations

import os
from typing import Any

import cupy

from dist_rt.runtime.cuda import gemv
from dist_rt.runtime.cuda.device import capability
from dist_rt.runtime.weight_layout import prefetch_schedule

#: Default MiB of the next weight a GEMV prefetches. Decode step medians, level 2, fp16 (session
#: 7): 1B Llama on an H100 at 1x1, 0 / 2 / 4 / 6 / 8 MiB: 0.822 / 0.819 / 0.792 / 0.800 /
#: 0.814 ms (2x1: 0.909 / 0.904 / 0.874 / 0.878 / 0.892); 7B at N = 1 on an H200, 0 / 4 / 8 /
#: 16 / 24 MiB: 4.02 / 3.98 / 4.02 / 4.16 / 4.28 ms (larger budgets evict the GEMV's own lines).
DEFAULT_MIB = 4.0


def budget_bytes() -> int:
    """Bytes of the next weight to prefetch: the env knob, capped at half the L2; 0 = off."""
    try:
        mib = float(os.environ.get("DIST_RT_L2_PREFETCH_MIB", DEFAULT_MIB))
    except ValueError:
        mib = DEFAULT_MIB
    if mib <= 0 or capability() < 90:
        return 0
    l2 = int(cupy.cuda.Device().attributes.get("L2CacheSize", 0))
    return int(min(mib * 2**20, l2 // 2)) // 16 * 16


def targets(network: Any, constants: dict[str, Any]) -> dict[str, tuple[Any, int]]:
    """Layer name -> (device weight, bytes) the GEMV of that layer prefetches.

    Args:
        network: The engine's network (execution order).
        constants: Its device constants (:meth:`dist_rt.runtime.backends.
            Backend.constants_to_device`), weights already stored transposed.

    Returns:
        An entry per decode-GEMV layer whose next weight is on the device in the GEMV's
        layout; empty when the budget is 0 or the GPU is older than sm_90.
    """
    budget = budget_bytes()
    if budget <= 0:
        return {}
    out = {}
    for layer, weight in prefetch_schedule(network).items():
        array = constants.get(weight)
        if isinstance(array, cupy.ndarray) and gemv.transposed_view(array):
            out[layer] = (array, min(budget, array.nbytes) // 16 * 16)
    return out


def lookup(layer: Any, rt: Any) -> tuple[Any, int] | None:
    """``layer``'s entry of the run context's table (None: no prefetch)."""
    table = getattr(rt, "l2_prefetch", None)
    return table.get(layer.name) if table else None
