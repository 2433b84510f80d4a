"""GPT-2-style decoder (pre-LN, learned positions, fused qkv) as PyTorch exports it.

Graph::

    input_ids (B, S) -> Gather(wte) + Gather(wpe, Range(0, S)) -> h
    per block: h + c_proj(attn(LN(h))) ; h + c_proj(gelu_tanh(c_fc(LN(h))))
      attn: c_attn MatMul + Add bias (B, S, 3*hidden) -> Split into q, k, v
            -> heads -> Where(causal, scores, min) -> Softmax -> @ v -> merge
    -> ln_f -> lm_head (tied to wte, as GPT-2 ties it) -> logits (B, S, vocab)

The causal mask takes the Trilu route (HF GPT-2's ``bias`` buffer is a lower-triangular
ones matrix sliced to the sequence length) rather than Llama's Range comparison, so the two
decoders cover both patterns exporters produce.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
from onnx import TensorProto

from dist_rt.models import _blocks as blk
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """Hyper-parameters of :func:`make_gpt2`.

    Attributes:
        vocab: Vocabulary size.
        hidden: Model width (``n_embd``).
        layers: Blocks.
        heads: Attention heads; must divide ``hidden``.
        max_seq: Rows of the learned position table (``n_positions``).
        eps: LayerNorm epsilon.
        dtype: ``float32`` or ``float16``; logits are cast to float32.
        seed: Seed of the random weights.
    """

    vocab: int = 128
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    max_seq: int = 32
    eps: float = 1e-5
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")


def _causal_where(g: GraphBuilder, scores: str, seq: str, scope: str) -> str:
    """``Where(tril(ones(S, S)), scores, min)`` with the triangle built by Trilu."""
    square = g.node("Concat", [seq, seq], scope, axis=0)
    ones = g.node("ConstantOfShape", [square], scope,
                  value=onnx.helper.make_tensor("value", TensorProto.BOOL, [1], [True]))
    keep = g.node("Trilu", [ones], scope, upper=0)
    return g.node("Where", [keep, scores, g.const(blk.mask_value(g))], scope)


def _block(g: GraphBuilder, h: str, cfg: GPT2Config, i: int, seq: str) -> str:
    p, s = f"transformer.h.{i}", f"/transformer/h.{i}"
    d = cfg.hidden // cfg.heads
    res_std = cfg.hidden**-0.5 / math.sqrt(2 * cfg.layers)

    x = blk.layer_norm(g, h, f"{p}.ln_1", cfg.hidden, cfg.eps, f"{s}/ln_1")
    qkv = blk.linear(g, x, f"{p}.attn.c_attn", cfg.hidden, 3 * cfg.hidden, f"{s}/attn/c_attn")
    q, k, v = g.node("Split", [qkv, g.const([cfg.hidden] * 3)], f"{s}/attn", outputs=3, axis=2)
    q, k, v = (blk.split_heads(g, t, cfg.heads, d, f"{s}/attn") for t in (q, k, v))
    scope = f"{s}/attn"
    scores = g.node("MatMul", [q, g.node("Transpose", [k], scope, perm=[0, 1, 3, 2])], scope)
    scores = g.node("Div", [scores, g.const(math.sqrt(d))], scope)
    probs = g.node("Softmax", [_causal_where(g, scores, seq, scope)], scope, axis=-1)
    a = blk.merge_heads(g, g.node("MatMul", [probs, v], scope), cfg.hidden, scope)
    a = blk.linear(g, a, f"{p}.attn.c_proj", cfg.hidden, cfg.hidden, f"{s}/attn/c_proj",
                   std=res_std)
    h = g.node("Add", [h, a], s)

    x = blk.layer_norm(g, h, f"{p}.ln_2", cfg.hidden, cfg.eps, f"{s}/ln_2")
    m = blk.linear(g, x, f"{p}.mlp.c_fc", cfg.hidden, 4 * cfg.hidden, f"{s}/mlp/c_fc")
    m = blk.gelu_tanh(g, m, f"{s}/mlp/act")
    m = blk.linear(g, m, f"{p}.mlp.c_proj", 4 * cfg.hidden, cfg.hidden, f"{s}/mlp/c_proj",
                   std=(4 * cfg.hidden) ** -0.5 / math.sqrt(2 * cfg.layers))
    return g.node("Add", [h, m], s)


def make_gpt2(cfg: GPT2Config | None = None, *, batch: Dim = "batch",
              seq: Dim = "seq") -> onnx.ModelProto:
    """Builds a GPT-2-style decoder with random weights.

    Args:
        cfg: Hyper-parameters; ``GPT2Config()`` when None.
        batch: Batch dim (symbol or size).
        seq: Sequence dim (symbol or size, at most ``cfg.max_seq``).

    Returns:
        The ModelProto: ``input_ids`` int64 (batch, seq) -> ``logits`` float32
        (batch, seq, vocab).
    """
    cfg = cfg or GPT2Config()
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    ids = g.add_input("input_ids", TensorProto.INT64, [batch, seq])
    # std hidden**-0.5 keeps the tied logits LN(h) @ wte^T at unit scale.
    wte = g.weight("transformer.wte.weight", (cfg.vocab, cfg.hidden), cfg.hidden**-0.5)
    wpe = g.weight("transformer.wpe.weight", (cfg.max_seq, cfg.hidden), 0.5 * cfg.hidden**-0.5)
    pos = blk.positions(g, ids, "/transformer")
    seq_1d = g.dim(ids, 1, "/transformer")  # (1,) int64: the Trilu mask's side
    h = g.node("Add", [g.node("Gather", [wte, ids], "/transformer/wte", axis=0),
                       g.node("Gather", [wpe, pos], "/transformer/wpe", axis=0)], "/transformer")
    for i in range(cfg.layers):
        h = _block(g, h, cfg, i, seq_1d)
    h = blk.layer_norm(g, h, "transformer.ln_f", cfg.hidden, cfg.eps, "/transformer/ln_f")
    # GPT-2 ties lm_head to wte: exporters emit a Transpose of the shared initializer.
    head = g.node("Transpose", [wte], "/lm_head", perm=[1, 0])
    logits = g.node("MatMul", [h, head], "/lm_head")
    blk.float32_output(g, logits, cfg.dtype, [batch, seq, cfg.vocab], "/lm_head")
    return g.build(doc=f"make_gpt2({cfg})")


def sample_inputs(cfg: GPT2Config | None = None, batch: int = 1, seq: int = 8,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Random ``input_ids`` int64 (batch, seq) for :func:`make_gpt2`."""
    cfg = cfg or GPT2Config()
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, cfg.vocab, size=(batch, seq), dtype=np.int64)}
