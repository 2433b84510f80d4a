"""Llama-style decoder written as PyTorch's dynamo exporter lays it out.

Graph, per layer (names follow the HF module paths)::

    input_ids (B, S) int64 -> Gather(embed_tokens) -> h (B, S, hidden)
    h -> RMSNorm -> q/k/v MatMul (x @ W, W stored (in, out)) -> Reshape (B, S, H, D)
      -> Transpose (B, H, S, D) -> RoPE(q, k) -> repeat k/v heads (GQA)
      -> softmax(q k^T * scale + causal_mask) v -> Transpose/Reshape (B, S, hidden)
      -> o_proj -> + h -> RMSNorm -> down(silu(gate(x)) * up(x)) -> + h
    -> final RMSNorm -> lm_head -> logits (B, S, vocab) float32

Only opset-18 default-domain ops are used (no com.microsoft fusions), so any ONNX consumer,
ours included, sees the unfused pattern a real export hands it. Positions are
``Range(0, seq)`` computed in the graph from ``Shape(input_ids)``: there is no past-KV cache,
which keeps the model a pure function of ``input_ids``.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import onnx
from onnx import TensorProto

from dist_rt.models._blocks import float32_output
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of :func:`make_llama` (defaults: the small ``default_model``).

    Attributes:
        vocab: Vocabulary size.
        hidden: Model width; must be ``heads * head_dim``.
        layers: Number of decoder layers.
        heads: Query heads.
        kv_heads: Key/value heads (GQA); must divide ``heads``.
        mlp: Intermediate size of the SiLU-gated MLP.
        max_seq: Rows of the RoPE cos/sin tables (longest supported sequence).
        rope_theta: RoPE base frequency.
        eps: RMSNorm epsilon.
        dtype: Weight and activation dtype (``float32``, ``float16``, ``bfloat16``);
            logits are always cast to float32.
        seed: Seed of the random weights.
        tie_embeddings: Reuse the embedding matrix (transposed) as lm_head.
    """

    vocab: int = 1000
    hidden: int = 256
    layers: int = 2
    heads: int = 8
    kv_heads: int = 4
    mlp: int = 512
    max_seq: int = 256
    rope_theta: float = 10000.0
    eps: float = 1e-5
    dtype: str = "float32"
    seed: int = 0
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not divisible by kv_heads {self.kv_heads}")
        if (self.hidden // self.heads) % 2:
            raise ValueError(f"head_dim {self.hidden // self.heads} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        """Per-head width ``hidden // heads``."""
        return self.hidden // self.heads


def rms_norm(g: GraphBuilder, x: str, weight: str, eps: float, scope: str) -> str:
    """RMSNorm as exporters decompose it: ``x * rsqrt(mean(x^2) + eps) * w``.

    ``torch.rsqrt`` exports as Sqrt followed by Reciprocal; ReduceMean takes its axes as an
    input at opset 18.
    """
    sq = g.node("Pow", [x, g.const(2.0)], scope)
    var = g.node("ReduceMean", [sq, g.const([-1])], scope, keepdims=1)
    var = g.node("Add", [var, g.const(eps)], scope)
    inv = g.node("Reciprocal", [g.node("Sqrt", [var], scope)], scope)
    return g.node("Mul", [weight, g.node("Mul", [x, inv], scope)], scope)


def linear(g: GraphBuilder, x: str, w_name: str, fan_in: int, fan_out: int, scope: str,
           std: float | None = None) -> str:
    """``x @ W`` with ``W`` stored (fan_in, fan_out), as dynamo exports a bias-free Linear."""
    w = g.weight(w_name, (fan_in, fan_out), std if std is not None else fan_in ** -0.5)
    return g.node("MatMul", [x, w], scope)


def _split_heads(g: GraphBuilder, x: str, heads: int, head_dim: int, scope: str,
                 dynamic: bool) -> str:
    """(B, S, heads*D) -> Reshape (B, S, heads, D) -> Transpose (B, heads, S, D)."""
    if dynamic:
        target = g.shape_of([g.dim(x, 0, scope), g.dim(x, 1, scope), heads, head_dim], scope)
    else:
        target = g.const([0, 0, heads, head_dim])
    x = g.node("Reshape", [x, target], scope)
    return g.node("Transpose", [x], scope, perm=[0, 2, 1, 3])


def _rotate_half(g: GraphBuilder, x: str, half: int, scope: str) -> str:
    """``cat(-x[..., half:], x[..., :half])`` with Slice/Neg/Concat."""
    x1 = g.node("Slice", [x, g.const([0]), g.const([half]), g.const([-1]), g.const([1])], scope)
    x2 = g.node("Slice", [x, g.const([half]), g.const([2**62]), g.const([-1]), g.const([1])],
                scope)
    return g.node("Concat", [g.node("Neg", [x2], scope), x1], scope, axis=-1)


def _apply_rope(g: GraphBuilder, x: str, cos: str, sin: str, half: int, scope: str) -> str:
    """``x * cos + rotate_half(x) * sin`` with cos/sin broadcast as (1, 1, S, D)."""
    rotated = g.node("Mul", [_rotate_half(g, x, half, scope), sin], scope)
    return g.node("Add", [g.node("Mul", [x, cos], scope), rotated], scope)


def _repeat_kv(g: GraphBuilder, x: str, cfg: LlamaConfig, scope: str, dynamic: bool) -> str:
    """HF ``repeat_kv``: (B, KV, S, D) -> (B, KV, rep, S, D) via Expand -> (B, H, S, D)."""
    rep = cfg.heads // cfg.kv_heads
    if rep == 1:
        return x
    x5 = g.unsqueeze(x, [2], scope)
    if dynamic:
        b, s = g.dim(x, 0, scope), g.dim(x, 2, scope)
        expand_to = g.shape_of([b, cfg.kv_heads, rep, s, cfg.head_dim], scope)
        target = g.shape_of([b, cfg.heads, s, cfg.head_dim], scope)
    else:
        # Expand broadcasts bidirectionally, so ones keep the symbolic batch/seq dims.
        expand_to = g.const([1, 1, rep, 1, 1])
        target = g.const([0, cfg.heads, -1, cfg.head_dim])
    x5 = g.node("Expand", [x5, expand_to], scope)
    return g.node("Reshape", [x5, target], scope)


def _rope_tables(cfg: LlamaConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables (max_seq, head_dim) exactly as HF's LlamaRotaryEmbedding builds them."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    freqs = np.outer(np.arange(cfg.max_seq, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def _causal_mask(g: GraphBuilder, positions: str, scope: str) -> str:
    """Additive (1, 1, S, S) mask: 0 where key <= query, a large negative elsewhere.

    Built from a Range comparison and Where, as exporters trace ``torch.where(j <= i, ...)``.
    The negative is finfo(float32).min for float32 (HF's choice) but -1e4 for 16-bit types,
    where adding a score to finfo.min would round to -inf.
    """
    rows = g.unsqueeze(positions, [1], scope)
    cols = g.unsqueeze(positions, [0], scope)
    allowed = g.node("LessOrEqual", [cols, rows], scope)
    neg = float(np.finfo(np.float32).min) if g.dtype == np.float32 else -1e4
    mask = g.node("Where", [allowed, g.const(0.0), g.const(neg)], scope)
    return g.unsqueeze(mask, [0, 1], scope)


def attention(g: GraphBuilder, x: str, cfg: LlamaConfig, i: int, cos: str, sin: str,
              mask: str, dynamic: bool = False) -> str:
    """Layer ``i``'s self-attention (q/k/v/o projections, RoPE, GQA, causal softmax).

    Args:
        g: Graph under construction.
        x: Normalized hidden state (B, S, hidden).
        cfg: Config.
        i: Layer index (for names).
        cos: RoPE cos (1, 1, S, D) from :func:`embed_with_rope`.
        sin: RoPE sin (1, 1, S, D).
        mask: Additive causal mask (1, 1, S, S).
        dynamic: Shape-chain Reshape targets instead of 0/-1 constants.

    Returns:
        The o_proj output (B, S, hidden), before the residual Add.
    """
    scope = f"/model/layers.{i}/self_attn"
    prefix = f"model.layers.{i}.self_attn"
    d, kv = cfg.head_dim, cfg.kv_heads * cfg.head_dim
    q = linear(g, x, f"{prefix}.q_proj.weight", cfg.hidden, cfg.hidden, f"{scope}/q_proj")
    k = linear(g, x, f"{prefix}.k_proj.weight", cfg.hidden, kv, f"{scope}/k_proj")
    v = linear(g, x, f"{prefix}.v_proj.weight", cfg.hidden, kv, f"{scope}/v_proj")
    q = _split_heads(g, q, cfg.heads, d, scope, dynamic)
    k = _split_heads(g, k, cfg.kv_heads, d, scope, dynamic)
    v = _split_heads(g, v, cfg.kv_heads, d, scope, dynamic)
    q = _apply_rope(g, q, cos, sin, d // 2, scope)
    k = _apply_rope(g, k, cos, sin, d // 2, scope)
    k = _repeat_kv(g, k, cfg, scope, dynamic)
    v = _repeat_kv(g, v, cfg, scope, dynamic)
    kt = g.node("Transpose", [k], scope, perm=[0, 1, 3, 2])
    scores = g.node("Mul", [g.node("MatMul", [q, kt], scope), g.const(1.0 / math.sqrt(d))],
                    scope)
    probs = g.node("Softmax", [g.node("Add", [scores, mask], scope)], scope, axis=-1)
    out = g.node("Transpose", [g.node("MatMul", [probs, v], scope)], scope, perm=[0, 2, 1, 3])
    if dynamic:
        target = g.shape_of([g.dim(x, 0, scope), g.dim(x, 1, scope), cfg.hidden], scope)
    else:
        target = g.const([0, 0, cfg.hidden])
    out = g.node("Reshape", [out, target], scope)
    # Residual branches get a smaller init so the stream's variance grows slowly with depth.
    std = cfg.hidden ** -0.5 / math.sqrt(2 * cfg.layers)
    return linear(g, out, f"{prefix}.o_proj.weight", cfg.hidden, cfg.hidden, f"{scope}/o_proj",
                  std)


def _mlp(g: GraphBuilder, x: str, cfg: LlamaConfig, i: int) -> str:
    scope, prefix = f"/model/layers.{i}/mlp", f"model.layers.{i}.mlp"
    gate = linear(g, x, f"{prefix}.gate_proj.weight", cfg.hidden, cfg.mlp, f"{scope}/gate_proj")
    up = linear(g, x, f"{prefix}.up_proj.weight", cfg.hidden, cfg.mlp, f"{scope}/up_proj")
    # F.silu exports as x * Sigmoid(x): opset 18 has no SiLU op.
    act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{scope}/act_fn")], f"{scope}/act_fn")
    h = g.node("Mul", [act, up], scope)
    std = cfg.mlp ** -0.5 / math.sqrt(2 * cfg.layers)
    return linear(g, h, f"{prefix}.down_proj.weight", cfg.mlp, cfg.hidden, f"{scope}/down_proj",
                  std)


def embed_with_rope(g: GraphBuilder, cfg: LlamaConfig, batch: Dim,
                    seq: Dim) -> tuple[str, str, str, str, str, str]:
    """The decoder prelude: input, token embedding, RoPE cos/sin and the causal mask.

    Shared with :mod:`dist_rt.models.moe`, whose layers reuse Llama's attention.

    Args:
        g: Graph under construction.
        cfg: Config (vocab, hidden, head_dim, max_seq, rope_theta are read).
        batch: Batch dim of ``input_ids``.
        seq: Sequence dim of ``input_ids``.

    Returns:
        Names of ``input_ids``, the embedding table, the embedded hidden state (B, S, hidden),
        cos and sin (1, 1, S, head_dim), and the additive causal mask (1, 1, S, S).
    """
    ids = g.add_input("input_ids", TensorProto.INT64, [batch, seq])
    embed = g.weight("model.embed_tokens.weight", (cfg.vocab, cfg.hidden), 1.0)
    h = g.node("Gather", [embed, ids], "/model/embed_tokens", axis=0)

    # position_ids = arange(seq); cos/sin = table[position_ids] broadcast as (1, 1, S, D).
    scope = "/model/rotary_emb"
    seq_len = g.node("Gather", [g.node("Shape", [ids], scope), g.const(1)], scope, axis=0)
    positions = g.node("Range", [g.const(0), seq_len, g.const(1)], scope)
    cos_np, sin_np = _rope_tables(cfg)
    cos_t = g.initializer("model.rotary_emb.cos_cached", cos_np.astype(g.dtype))
    sin_t = g.initializer("model.rotary_emb.sin_cached", sin_np.astype(g.dtype))
    cos = g.unsqueeze(g.node("Gather", [cos_t, positions], scope, axis=0), [0, 1], scope)
    sin = g.unsqueeze(g.node("Gather", [sin_t, positions], scope, axis=0), [0, 1], scope)
    mask = _causal_mask(g, positions, "/model/causal_mask")
    return ids, embed, h, cos, sin, mask


def make_llama(
    cfg: LlamaConfig | None = None,
    *,
    batch: Dim = "batch",
    seq: Dim = "seq",
    external_data_dir: str | os.PathLike | None = None,
    dynamic_shapes: bool = False,
) -> onnx.ModelProto:
    """Builds a Llama-style decoder with random weights.

    Args:
        cfg: Hyper-parameters; ``LlamaConfig()`` when None.
        batch: Batch dim of ``input_ids``/``logits``: a symbol name or a fixed size.
        seq: Sequence dim: a symbol name or a fixed size (at most ``cfg.max_seq``).
        external_data_dir: When set, the weights are written to
            ``<dir>/llama.onnx.data`` and the returned proto references them by that relative
            location; save the model into the same directory (see :func:`dist_rt.models.write`).
        dynamic_shapes: Compute Reshape/Expand targets with Shape->Gather->Unsqueeze->Concat
            chains (as dynamo emits for dynamic dims) instead of 0/-1 constants.

    Returns:
        The ModelProto: input ``input_ids`` int64 (batch, seq), output ``logits`` float32
        (batch, seq, vocab).
    """
    cfg = cfg or LlamaConfig()
    if isinstance(seq, int) and seq > cfg.max_seq:
        raise ValueError(f"seq {seq} exceeds max_seq {cfg.max_seq}")
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    ids, embed, h, cos, sin, mask = embed_with_rope(g, cfg, batch, seq)

    for i in range(cfg.layers):
        prefix, scope = f"model.layers.{i}", f"/model/layers.{i}"
        w = g.weight(f"{prefix}.input_layernorm.weight", (cfg.hidden,), 0.02, 1.0)
        x = rms_norm(g, h, w, cfg.eps, f"{scope}/input_layernorm")
        h = g.node("Add", [h, attention(g, x, cfg, i, cos, sin, mask, dynamic_shapes)], scope)
        w = g.weight(f"{prefix}.post_attention_layernorm.weight", (cfg.hidden,), 0.02, 1.0)
        x = rms_norm(g, h, w, cfg.eps, f"{scope}/post_attention_layernorm")
        h = g.node("Add", [h, _mlp(g, x, cfg, i)], scope)

    w = g.weight("model.norm.weight", (cfg.hidden,), 0.02, 1.0)
    h = rms_norm(g, h, w, cfg.eps, "/model/norm")
    if cfg.tie_embeddings:
        head = g.node("Transpose", [embed], "/lm_head", perm=[1, 0])
        logits = g.node("MatMul", [h, head], "/lm_head")
    else:
        logits = linear(g, h, "lm_head.weight", cfg.hidden, cfg.vocab, "/lm_head")
    float32_output(g, logits, cfg.dtype, [batch, seq, cfg.vocab], "/lm_head")
    model = g.build(doc=f"make_llama({cfg})")
    if external_data_dir is not None:
        from dist_rt.models._io import externalize

        externalize(model, external_data_dir, "llama.onnx.data")
    return model


def sample_inputs(cfg: LlamaConfig | None = None, batch: int = 1, seq: int = 8,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids for :func:`make_llama`.

    Args:
        cfg: The model's config (for ``vocab``).
        batch: Batch size.
        seq: Sequence length.
        seed: Generator seed.

    Returns:
        ``{"input_ids": int64 (batch, seq)}``.
    """
    cfg = cfg or LlamaConfig()
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, cfg.vocab, size=(batch, seq), dtype=np.int64)}
