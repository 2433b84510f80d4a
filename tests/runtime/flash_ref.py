"""Helpers of the flash attention kernel tests: fresh inputs laid out as a model makes them
and a float64 reference (tests/runtime/test_cuda_flash.py, test_cuda_flash_wgmma.py), and a
stand-in Attention layer for calling the dispatch directly.

Inputs are fresh random N(0, 1) values rounded to the storage dtype; the reference computes
in float64 from those rounded values, so the tolerance covers the kernels' own roundings:
P to 16 bits before P V and the output once (fp16 atol 2e-3, bf16 1.6e-2, plus the same
relative tolerance for the few outputs above 1).
"""

from __future__ import annotations

import numpy as np

from dist_rt import dtypes

#: Absolute (and relative) tolerance by storage dtype.
TOL = {"float16": 2e-3, "bfloat16": 1.6e-2}


def dtype_of(name: str) -> np.dtype:
    """The numpy dtype of a storage dtype name (bfloat16 from dist_rt.dtypes)."""
    return dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def reference(q, k, v, scale: float, causal: bool) -> np.ndarray:
    """Attention in float64: q (B, Hq, S, D), k/v (B, Hkv, Skv, D) -> (B, Hq, S, D)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    b, hq, s, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    k, v = (np.repeat(x, hq // hkv, axis=1) for x in (k, v))
    keep = np.ones((s, skv), bool)
    if causal:
        keep = np.arange(skv)[None, :] <= np.arange(s)[:, None] + (skv - s)
    scores = np.where(keep, np.einsum("bhid,bhjd->bhij", q, k) * scale, -np.inf)
    top = scores.max(-1, keepdims=True) if skv else np.zeros((b, hq, s, 1))
    p = np.where(keep, np.exp(scores - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = p.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", p, v) / np.where(total > 0, total, 1.0)


def make_inputs(cp, rng, b, hq, hkv, s, skv, d, dtype):
    """Strided q, k, v as a fused projection makes them, plus their host copies.

    S == Skv: views of one (B, S, Hq + 2 Hkv, D) buffer (merged QKV), transposed to bhsd.
    Otherwise q from a (B, S, Hq, D) buffer and k, v from one (B, Skv, 2 Hkv, D) buffer.
    """
    if s == skv:
        buf = rng.standard_normal((b, s, hq + 2 * hkv, d)).astype(dtype)
        dev = cp.asarray(buf)
        parts = [(0, hq), (hq, hq + hkv), (hq + hkv, hq + 2 * hkv)]
        host = [buf[:, :, i:j].transpose(0, 2, 1, 3) for i, j in parts]
        return [dev[:, :, i:j].transpose(0, 2, 1, 3) for i, j in parts], host
    qb = rng.standard_normal((b, s, hq, d)).astype(dtype)
    kvb = rng.standard_normal((b, skv, 2 * hkv, d)).astype(dtype)
    qd, kvd = cp.asarray(qb), cp.asarray(kvb)
    host = [qb.transpose(0, 2, 1, 3), kvb[:, :, :hkv].transpose(0, 2, 1, 3),
            kvb[:, :, hkv:].transpose(0, 2, 1, 3)]
    dev = [qd.transpose(0, 2, 1, 3), kvd[:, :, :hkv].transpose(0, 2, 1, 3),
           kvd[:, :, hkv:].transpose(0, 2, 1, 3)]
    return dev, host


def assert_close(cp, y_bshd, want_bhsd, dtype_name, err_msg=""):
    got = cp.asnumpy(y_bshd).astype(np.float64).transpose(0, 2, 1, 3)
    assert got.shape == want_bhsd.shape
    tol = TOL[dtype_name]
    np.testing.assert_allclose(got, want_bhsd, atol=tol, rtol=tol, err_msg=err_msg)


class AttentionLayer:
    """A stand-in layer for calling kernels.attention directly."""

    def __init__(self, **attributes):
        self.op_type, self.domain, self.opset, self.name = "Attention", "dist_rt", 1, "attn"
        self.attributes = attributes

    def attr(self, name, default=None):
        return self.attributes.get(name, default)
