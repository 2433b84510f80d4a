"""The PyTorch reference for the benchmark: the same Llama as ``dist_rt.models.make_llama``.

It loads the very weights of the ONNX file (by initializer name), so dist_rt, PyTorch eager
and ``torch.compile`` compute the same function and their outputs can be compared. Written the
way a PyTorch user would: ``F.scaled_dot_product_attention`` with ``is_causal`` and GQA,
``F.silu``, RMSNorm in the model dtype as the ONNX graph does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class TorchLlama(torch.nn.Module):
    """Llama decoder over a dict of weights named like the ONNX initializers."""

    def __init__(self, cfg, weights: dict[str, np.ndarray], device: str = "cuda",
                 dtype: torch.dtype = torch.float16):
        super().__init__()
        self.cfg = cfg

        def t(name: str) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(weights[name]).astype(np.float32)).to(
                device=device, dtype=dtype)

        self.embed = t("model.embed_tokens.weight")
        self.cos = t("model.rotary_emb.cos_cached")
        self.sin = t("model.rotary_emb.sin_cached")
        self.layers = []
        for i in range(cfg.layers):
            p = f"model.layers.{i}"
            self.layers.append({
                "ln1": t(f"{p}.input_layernorm.weight"),
                "q": t(f"{p}.self_attn.q_proj.weight"), "k": t(f"{p}.self_attn.k_proj.weight"),
                "v": t(f"{p}.self_attn.v_proj.weight"), "o": t(f"{p}.self_attn.o_proj.weight"),
                "ln2": t(f"{p}.post_attention_layernorm.weight"),
                "gate": t(f"{p}.mlp.gate_proj.weight"), "up": t(f"{p}.mlp.up_proj.weight"),
                "down": t(f"{p}.mlp.down_proj.weight"),
            })
        self.norm = t("model.norm.weight")
        self.head = t("lm_head.weight")

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.eps))

    @staticmethod
    def _rotate_half(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, s = input_ids.shape
        d = cfg.hidden // cfg.heads
        h = self.embed[input_ids]
        cos, sin = self.cos[:s][None, None], self.sin[:s][None, None]
        for lw in self.layers:
            x = self._rms(h, lw["ln1"])
            q = (x @ lw["q"]).view(b, s, cfg.heads, d).transpose(1, 2)
            k = (x @ lw["k"]).view(b, s, cfg.kv_heads, d).transpose(1, 2)
            v = (x @ lw["v"]).view(b, s, cfg.kv_heads, d).transpose(1, 2)
            q = q * cos + self._rotate_half(q) * sin
            k = k * cos + self._rotate_half(k) * sin
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                               enable_gqa=cfg.heads != cfg.kv_heads)
            h = h + a.transpose(1, 2).reshape(b, s, cfg.hidden) @ lw["o"]
            x = self._rms(h, lw["ln2"])
            h = h + (F.silu(x @ lw["gate"]) * (x @ lw["up"])) @ lw["down"]
        return (self._rms(h, self.norm) @ self.head).float()
