"""A tiny Mixtral-style decoder whose FFN is a top-k-of-E mixture of experts.

Each layer is Llama's (RMSNorm, RoPE, GQA attention) with the MLP replaced by::

    x (B, S, h) -> Reshape (T, h)                                   T = B * S tokens
    router: probs = Softmax(x @ Wr)  (T, E) ; vals, idx = TopK(probs, k)
            gates_k = vals / ReduceSum(vals)                        (T, k), Mixtral's renorm
            G = ScatterElements(zeros (T, E), idx, gates_k, axis=1) (T, E), 0 off the top-k
    experts (dense): y_e = (silu(x @ Wg[e]) * (x @ Wu[e])) @ Wd[e]  batched MatMul over E
            Wg, Wu: (E, h, ffn) ; Wd: (E, ffn, h) ; y: (E, T, h)
    combine: out = ReduceSum(y * Transpose(G)[:, :, None], axis=0)  (T, h) -> (B, S, h)

Why the dense formulation: standard ONNX has no ragged dispatch, and the sparse alternatives
(NonZero + Gather per expert, or Loop/If) give data-dependent shapes that a static sharding
planner cannot reason about. Computing every expert on every token costs E/k more FFN FLOPs,
but every tensor has a static layout with the expert dim leading, so expert parallelism is
plain sharding of ``E``: with Wg/Wu/Wd and the E rows of ``G^T`` split over ranks, each rank
computes its experts' ``y * G``, and the ``ReduceSum`` over ``E`` makes the output Partial,
i.e. one all-reduce (or a reduce-scatter over tokens). The router stays replicated.

``MoEConfig(dispatch="capacity")`` builds the sparse GShard/Switch formulation instead, as
those models export (tokens in ``G`` groups of ``S``, expert capacity
``C = ceil(capacity_factor * k * S / E)`` per group, assignments over capacity dropped)::

    mask = OneHot(idx, E)                      (G, S, k, E)   top-k choices
    pos  = CumSum over (k, S) per expert - 1   first choices fill the buffers first
    slot = (pos == arange(C))                  (G, k, S, C)   no slot when pos >= C: dropped
    D    = einsum("gkse,gksc->gsec")           dispatch 0/1; W: the same weighted by gates
    xd   = einsum("gsec,gsh->egch", D, x)      (E, G, C, h)   tokens gathered per expert
    y    = FFN_e(xd) as (E, G*C, h) @ (E, h, f) ...           batched MatMul over E
    out  = einsum("gsec,egch->gsh", W, y)      (G, S, h)

Its shapes are static, so the token count must be: ``tokens_shape`` (batch, seq) is used
when :func:`make_moe` gets symbolic dims. With ``G`` data-parallel and ``E`` expert-parallel,
``xd`` moves from ``S(1)`` to ``S(0)`` (and ``y`` back) by one all_to_all each, GShard's
plan; the planner weighs it against the all-reduce over E and replicated experts.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx

from dist_rt.models import llama
from dist_rt.models._blocks import float32_output
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """Hyper-parameters of :func:`make_moe`.

    Attributes:
        vocab: Vocabulary size.
        hidden: Model width.
        layers: Decoder layers, each with an MoE FFN.
        heads: Query heads.
        kv_heads: Key/value heads.
        experts: Number of experts ``E``.
        top_k: Experts per token ``k``.
        ffn: Each expert's intermediate width.
        max_seq: RoPE table length.
        eps: RMSNorm epsilon.
        dtype: ``float32`` or ``float16``; logits are cast to float32.
        seed: Seed of the random weights.
        dispatch: ``"dense"`` (every expert on every token) or ``"capacity"`` (GShard).
        capacity_factor: Capacity dispatch: buffer slots per expert relative to an even
            spread of the ``k * S`` assignments of a group.
        groups: Capacity dispatch: token groups ``G`` (the data-parallel dim).
        tokens_shape: Capacity dispatch: static (batch, seq) used for symbolic dims.
    """

    vocab: int = 128
    hidden: int = 64
    layers: int = 1
    heads: int = 4
    kv_heads: int = 2
    experts: int = 4
    top_k: int = 2
    ffn: int = 96
    max_seq: int = 32
    eps: float = 1e-5
    dtype: str = "float32"
    seed: int = 0
    dispatch: str = "dense"
    capacity_factor: float = 1.25
    groups: int = 4
    tokens_shape: tuple[int, int] = (2, 8)

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.experts:
            raise ValueError(f"top_k {self.top_k} must be in [1, experts={self.experts}]")
        if self.dispatch not in ("dense", "capacity"):
            raise ValueError(f"dispatch {self.dispatch!r} must be 'dense' or 'capacity'")
        if self.capacity_factor <= 0 or self.groups < 1:
            raise ValueError(f"capacity_factor {self.capacity_factor} must be > 0 and groups "
                             f"{self.groups} >= 1")

    def capacity(self, tokens: int) -> int:
        """Slots per expert and group, ``C = ceil(capacity_factor * k * (tokens / G) / E)``.

        Raises:
            ValueError: ``tokens`` is not a multiple of ``groups``.
        """
        if tokens % self.groups:
            raise ValueError(f"capacity dispatch: {tokens} tokens do not split into "
                             f"{self.groups} groups")
        per_group = tokens // self.groups
        return max(1, math.ceil(self.capacity_factor * self.top_k * per_group / self.experts))

    def attention_config(self) -> llama.LlamaConfig:
        """The Llama config whose attention this model's layers reuse."""
        return llama.LlamaConfig(
            vocab=self.vocab, hidden=self.hidden, layers=self.layers, heads=self.heads,
            kv_heads=self.kv_heads, mlp=self.ffn, max_seq=self.max_seq, eps=self.eps,
            dtype=self.dtype, seed=self.seed)


def moe_ffn(g: GraphBuilder, x: str, cfg: MoEConfig, i: int) -> str:
    """The sparse MoE block of layer ``i`` in the dense formulation (module docstring).

    Args:
        g: Graph under construction.
        x: Normalized hidden state (B, S, hidden).
        cfg: Config.
        i: Layer index (for names).

    Returns:
        The block output (B, S, hidden), before the residual Add.
    """
    p, s = f"model.layers.{i}.block_sparse_moe", f"/model/layers.{i}/block_sparse_moe"
    e, h, f = cfg.experts, cfg.hidden, cfg.ffn
    tokens = g.node("Reshape", [x, g.const([-1, h])], s)

    wr = g.weight(f"{p}.gate.weight", (h, e), h**-0.5)
    probs = g.node("Softmax", [g.node("MatMul", [tokens, wr], f"{s}/gate")], s, axis=-1)
    vals, idx = g.node("TopK", [probs, g.const([cfg.top_k])], s, outputs=2, axis=-1,
                       largest=1, sorted=1)
    vals = g.node("Div", [vals, g.node("ReduceSum", [vals, g.const([-1])], s, keepdims=1)], s)
    zeros = g.node("ConstantOfShape", [g.node("Shape", [probs], s)], s,
                   value=onnx.helper.make_tensor("value", g.elem_type, [1], [0.0]))
    gates = g.node("ScatterElements", [zeros, idx, vals], s, axis=1)  # (T, E)

    wg = g.weight(f"{p}.experts.w1", (e, h, f), h**-0.5)
    wu = g.weight(f"{p}.experts.w3", (e, h, f), h**-0.5)
    wd = g.weight(f"{p}.experts.w2", (e, f, h), f**-0.5 / math.sqrt(2 * cfg.layers))
    xe = g.unsqueeze(tokens, [0], f"{s}/experts")  # (1, T, h) broadcasts over E
    a = g.node("MatMul", [xe, wg], f"{s}/experts/w1")
    a = g.node("Mul", [a, g.node("Sigmoid", [a], f"{s}/experts/act_fn")], f"{s}/experts/act_fn")
    a = g.node("Mul", [a, g.node("MatMul", [xe, wu], f"{s}/experts/w3")], f"{s}/experts")
    y = g.node("MatMul", [a, wd], f"{s}/experts/w2")  # (E, T, h)

    weights = g.unsqueeze(g.node("Transpose", [gates], s, perm=[1, 0]), [2], s)  # (E, T, 1)
    out = g.node("ReduceSum", [g.node("Mul", [y, weights], s), g.const([0])], s, keepdims=0)
    return g.node("Reshape", [out, g.node("Shape", [x], s)], s)


def moe_capacity_ffn(g: GraphBuilder, x: str, cfg: MoEConfig, i: int, tokens: int) -> str:
    """The MoE block of layer ``i`` with capacity dispatch (module docstring).

    Args:
        g: Graph under construction.
        x: Normalized hidden state (B, S, hidden) with ``B * S == tokens``.
        cfg: Config (``dispatch="capacity"``).
        i: Layer index (for names).
        tokens: The static token count ``T``.

    Returns:
        The block output (B, S, hidden), before the residual Add.
    """
    p, s = f"model.layers.{i}.block_sparse_moe", f"/model/layers.{i}/block_sparse_moe"
    e, h, f, k, grp = cfg.experts, cfg.hidden, cfg.ffn, cfg.top_k, cfg.groups
    c = cfg.capacity(tokens)
    per = tokens // grp
    xg = g.node("Reshape", [x, g.const([grp, per, h])], s)  # (G, S, h)

    wr = g.weight(f"{p}.gate.weight", (h, e), h**-0.5)
    probs = g.node("Softmax", [g.node("MatMul", [xg, wr], f"{s}/gate")], s, axis=-1)
    vals, idx = g.node("TopK", [probs, g.const([k])], s, outputs=2, axis=-1, largest=1,
                       sorted=1)
    vals = g.node("Div", [vals, g.node("ReduceSum", [vals, g.const([-1])], s, keepdims=1)], s)
    mask = g.node("OneHot", [idx, g.const(e), g.const([0.0, 1.0])], s, axis=-1)  # (G,S,k,E)
    # Priority order (k, S): every token's first choice is placed before any second choice.
    mask = g.node("Reshape", [g.node("Transpose", [mask], s, perm=[0, 2, 1, 3]),
                              g.const([grp, k * per, e])], s)
    pos = g.node("Sub", [g.node("CumSum", [mask, g.const(1)], s), g.const(1.0)], s)
    pos = g.node("ReduceSum", [g.node("Mul", [pos, mask], s), g.const([-1])], s, keepdims=1)
    slot = g.node("Cast", [g.node("Equal", [pos, g.const(np.arange(c, dtype=np.float32)
                                                         .astype(g.dtype))], s)],
                  s, to=g.elem_type)  # (G, kS, C); positions >= C match nothing: dropped
    mask = g.node("Reshape", [mask, g.const([grp, k, per, e])], s)
    slot = g.node("Reshape", [slot, g.const([grp, k, per, c])], s)
    gates = g.node("Transpose", [vals], s, perm=[0, 2, 1])  # (G, k, S)
    dispatch = g.node("Einsum", [mask, slot], s, equation="gkse,gksc->gsec")
    combine = g.node("Einsum", [mask, slot, gates], s, equation="gkse,gksc,gks->gsec")

    xd = g.node("Einsum", [dispatch, xg], f"{s}/dispatch", equation="gsec,gsh->egch")
    xe = g.node("Reshape", [xd, g.const([e, grp * c, h])], f"{s}/experts")
    wg = g.weight(f"{p}.experts.w1", (e, h, f), h**-0.5)
    wu = g.weight(f"{p}.experts.w3", (e, h, f), h**-0.5)
    wd = g.weight(f"{p}.experts.w2", (e, f, h), f**-0.5 / math.sqrt(2 * cfg.layers))
    a = g.node("MatMul", [xe, wg], f"{s}/experts/w1")
    a = g.node("Mul", [a, g.node("Sigmoid", [a], f"{s}/experts/act_fn")], f"{s}/experts/act_fn")
    a = g.node("Mul", [a, g.node("MatMul", [xe, wu], f"{s}/experts/w3")], f"{s}/experts")
    y = g.node("MatMul", [a, wd], f"{s}/experts/w2")  # (E, G*C, h)
    y = g.node("Reshape", [y, g.const([e, grp, c, h])], f"{s}/experts")
    out = g.node("Einsum", [combine, y], f"{s}/combine", equation="gsec,egch->gsh")
    return g.node("Reshape", [out, g.node("Shape", [x], s)], s)


def make_moe(cfg: MoEConfig | None = None, *, batch: Dim = "batch",
             seq: Dim = "seq") -> onnx.ModelProto:
    """Builds a Mixtral-style MoE decoder with random weights.

    Args:
        cfg: Hyper-parameters; ``MoEConfig()`` (top-2 of 4 experts) when None.
        batch: Batch dim (symbol or size).
        seq: Sequence dim (symbol or size).

    Returns:
        The ModelProto: ``input_ids`` int64 (batch, seq) -> ``logits`` float32
        (batch, seq, vocab).
    """
    cfg = cfg or MoEConfig()
    if cfg.dispatch == "capacity":
        batch = batch if isinstance(batch, int) else cfg.tokens_shape[0]
        seq = seq if isinstance(seq, int) else cfg.tokens_shape[1]
    acfg = cfg.attention_config()
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    _, _, h, cos, sin, mask = llama.embed_with_rope(g, acfg, batch, seq)
    for i in range(cfg.layers):
        prefix, scope = f"model.layers.{i}", f"/model/layers.{i}"
        w = g.weight(f"{prefix}.input_layernorm.weight", (cfg.hidden,), 0.02, 1.0)
        x = llama.rms_norm(g, h, w, cfg.eps, f"{scope}/input_layernorm")
        h = g.node("Add", [h, llama.attention(g, x, acfg, i, cos, sin, mask)], scope)
        w = g.weight(f"{prefix}.post_attention_layernorm.weight", (cfg.hidden,), 0.02, 1.0)
        x = llama.rms_norm(g, h, w, cfg.eps, f"{scope}/post_attention_layernorm")
        ffn = moe_capacity_ffn(g, x, cfg, i, batch * seq) if cfg.dispatch == "capacity" \
            else moe_ffn(g, x, cfg, i)
        h = g.node("Add", [h, ffn], scope)
    w = g.weight("model.norm.weight", (cfg.hidden,), 0.02, 1.0)
    h = llama.rms_norm(g, h, w, cfg.eps, "/model/norm")
    logits = llama.linear(g, h, "lm_head.weight", cfg.hidden, cfg.vocab, "/lm_head")
    float32_output(g, logits, cfg.dtype, [batch, seq, cfg.vocab], "/lm_head")
    return g.build(doc=f"make_moe({cfg})")


def sample_inputs(cfg: MoEConfig | None = None, batch: int | None = None,
                  seq: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ``input_ids`` int64 (batch, seq) for :func:`make_moe`.

    Batch and seq default to 1 and 8, or to ``cfg.tokens_shape`` for capacity dispatch
    (whose model has static shapes: pass the sizes given to :func:`make_moe`).
    """
    cfg = cfg or MoEConfig()
    default = cfg.tokens_shape if cfg.dispatch == "capacity" else (1, 8)
    batch = default[0] if batch is None else batch
    seq = default[1] if seq is None else seq
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, cfg.vocab, size=(batch, seq), dtype=np.int64)}
