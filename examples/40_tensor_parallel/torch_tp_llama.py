"""The PyTorch tensor-parallel reference: ``TorchLlama`` of example 20 rebuilt from ``nn.Linear``.

``torch.distributed.tensor.parallel.parallelize_module`` shards ``nn.Linear`` modules, so the
projections here are modules (example 20 multiplies raw tensors). The math is the same
function as ``dist_rt.models.make_llama``: RMSNorm in the model dtype, RoPE with
``rotate_half``, ``F.scaled_dot_product_attention`` (causal, GQA), SiLU-gated MLP. Megatron
layout over a 1-D mesh of N ranks, ``Y = X A`` with ``A = [A_1 ... A_N]``::

    module             style                      local weight (nn.Linear: (out, in))
    q/k/v_proj         ColwiseParallel            rows r*out/N .. (r+1)*out/N   (heads/N)
    o_proj             RowwiseParallel            cols r*in/N  .. (r+1)*in/N    + all-reduce
    gate/up_proj       ColwiseParallel            rows of the MLP width / N
    down_proj          RowwiseParallel            cols of the MLP width / N     + all-reduce
    lm_head            ColwiseParallel(Replicate) rows of the vocab / N         + all-gather
    embed, norms       replicated (plain tensors)

Heads stay whole on a rank (needs ``kv_heads % N == 0``), and with contiguous head blocks the
GQA pairing holds locally: local query head j of rank r is global head ``r*H/N + j``, whose
kv head ``(r*H/N + j) // (H/KV)`` is local kv head ``j // (H/KV)`` of the same rank.

The ONNX file stores each projection as ``W`` (in, out) for ``x @ W``; ``nn.Linear`` holds
``W.T``. Modules are created on the ``meta`` device, parallelized, materialized with
``to_empty`` and then filled with this rank's slice only, read from the memory-mapped ONNX
weights (a rank never loads the whole model, as in torchtitan).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Module-name suffix -> (parallel style, ONNX initializer suffix).
_COLUMN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj",
           "mlp.up_proj")
_ROW = ("self_attn.o_proj", "mlp.down_proj")


class RMSNorm(nn.Module):
    """``w * (x * rsqrt(mean(x^2) + eps))`` in the model dtype, as the ONNX graph computes."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(width), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    """q/k/v/o projections, RoPE, causal GQA attention over this rank's heads."""

    def __init__(self, cfg: Any):
        super().__init__()
        kv = cfg.kv_heads * cfg.head_dim
        self.head_dim = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, kv, bias=False)
        self.v_proj = nn.Linear(cfg.hidden, kv, bias=False)
        self.o_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        d = self.head_dim
        # -1 heads: the local head count (H/N under tensor parallelism).
        q = self.q_proj(x).view(b, s, -1, d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, -1, d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, -1, d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           enable_gqa=q.shape[1] != k.shape[1])
        return self.o_proj(a.transpose(1, 2).reshape(b, s, -1))


class Mlp(nn.Module):
    """``down(silu(gate(x)) * up(x))``."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.mlp, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.mlp, bias=False)
        self.down_proj = nn.Linear(cfg.mlp, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """One decoder layer: pre-norm attention and MLP with residuals."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.eps)
        self.mlp = Mlp(cfg)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class TorchTPLlama(nn.Module):
    """The Llama of ``make_llama`` with module names matching its ONNX initializers.

    ``model.layers.{i}.self_attn.q_proj`` here holds ONNX ``model.layers.{i}.self_attn.
    q_proj.weight`` transposed. ``blocks`` is what ``forward`` calls per layer: the modules
    themselves, or their ``torch.compile`` wrappers after :meth:`use_compiled`.
    """

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Parameter(torch.empty(cfg.vocab, cfg.hidden), requires_grad=False)
        self.register_buffer("cos", torch.empty(cfg.max_seq, cfg.head_dim))
        self.register_buffer("sin", torch.empty(cfg.max_seq, cfg.head_dim))
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.eps)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        self.blocks: list[Callable[..., torch.Tensor]] = list(self.layers)
        self._compiled: list[Callable[..., torch.Tensor]] | None = None

    def use_compiled(self, on: bool) -> None:
        """Run the decoder layers through ``torch.compile`` (per block, as torchtitan does).

        Compiling each block instead of the whole model keeps compile time independent of the
        depth: the layers share one code object, so dynamo traces one graph per input shape
        and reuses it for every layer (parameters are graph inputs).
        """
        if on and self._compiled is None:
            self._compiled = [torch.compile(b, dynamic=False) for b in self.layers]
        self.blocks = list(self._compiled) if on else list(self.layers)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        s = input_ids.shape[1]
        h = self.embed_tokens[input_ids]
        cos, sin = self.cos[:s][None, None], self.sin[:s][None, None]
        for block in self.blocks:
            h = block(h, cos, sin)
        return self.lm_head(self.norm(h)).float()


def tp_plan(cfg: Any) -> dict[str, Any]:
    """The Megatron plan of the module docstring, one entry per sharded module."""
    from torch.distributed.tensor import Replicate  # noqa: PLC0415
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel  # noqa: PLC0415

    plan: dict[str, Any] = {"lm_head": ColwiseParallel(output_layouts=Replicate())}
    for i in range(cfg.layers):
        plan.update({f"layers.{i}.{m}": ColwiseParallel() for m in _COLUMN})
        plan.update({f"layers.{i}.{m}": RowwiseParallel() for m in _ROW})
    return plan


def _onnx_name(param: str) -> str:
    """Module parameter name -> ONNX initializer name (``layers.3.mlp.up_proj.weight`` ->
    ``model.layers.3.mlp.up_proj.weight``)."""
    if param in ("embed_tokens", "cos", "sin"):
        return {"embed_tokens": "model.embed_tokens.weight", "cos": "model.rotary_emb.cos_cached",
                "sin": "model.rotary_emb.sin_cached"}[param]
    if param == "lm_head.weight":
        return param
    return f"model.{param}"


def build(cfg: Any, weights: Callable[[str], np.ndarray], device: torch.device,
          mesh: Any | None, dtype: torch.dtype) -> TorchTPLlama:
    """Create the model on ``meta``, shard it over ``mesh`` (None: one rank), fill the weights.

    Args:
        cfg: The ``LlamaConfig`` of the ONNX model.
        weights: ONNX initializer name -> NumPy array (memory-mapped; only slices are read).
        device: Where the parameters live (this rank's GPU, or ``cpu`` for gloo runs).
        mesh: A 1-D ``DeviceMesh`` of the N ranks, or None for the unsharded N = 1 model.
        dtype: Parameter dtype (the ONNX model's).

    Returns:
        The model, in eval mode, parameters on ``device``.

    Raises:
        ValueError: The head counts do not divide by the mesh size.
    """
    n = 1 if mesh is None else mesh.size()
    if cfg.kv_heads % n or cfg.heads % n:
        raise ValueError(f"heads {cfg.heads} / kv_heads {cfg.kv_heads} do not divide by N={n}: "
                         f"tensor parallelism keeps whole heads on a rank")
    with torch.device("meta"):
        model = TorchTPLlama(cfg).to(dtype)
    if mesh is not None:
        from torch.distributed.tensor.parallel import parallelize_module  # noqa: PLC0415

        parallelize_module(model, mesh, tp_plan(cfg))
    model.to_empty(device=device)
    rank = 0 if mesh is None else mesh.get_local_rank()
    column = tuple(f"{m}.weight" for m in _COLUMN + ("lm_head",))
    row = tuple(f"{m}.weight" for m in _ROW)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            full = weights(_onnx_name(name))
            if name.endswith(column):
                step = full.shape[1] // n  # nn.Linear rows = ONNX columns
                part = full[:, rank * step:(rank + 1) * step]
            elif name.endswith(row):
                step = full.shape[0] // n  # nn.Linear columns = ONNX rows
                part = full[rank * step:(rank + 1) * step, :]
            else:
                part = full
            src = torch.from_numpy(np.array(part, copy=True)).to(device=device, dtype=dtype)
            if name.endswith(column + row):
                src = src.t()  # ONNX (in, out) -> nn.Linear (out, in)
            local = t.to_local() if hasattr(t, "to_local") else t
            if tuple(local.shape) != tuple(src.shape):
                raise ValueError(f"rank {rank}/{n}, parameter {name!r}: local shape "
                                 f"{tuple(local.shape)}, ONNX slice gives {tuple(src.shape)}")
            local.copy_(src)
    return model.eval()
