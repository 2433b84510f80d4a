"""BERT-style encoder (post-LN, Erf GELU, pooler) as PyTorch exports it.

Graph::

    input_ids (B, S), attention_mask (B, S) int64
    embeddings: Gather(word) + Gather(position, Range(0, S)) + token_type row 0 -> LayerNorm
    additive mask: (1 - Cast(mask)) * min -> Unsqueeze (B, 1, 1, S)
    per layer: h = LN(h + dense(attn(h))) ; h = LN(h + output(gelu_erf(intermediate(h))))
    -> last_hidden_state (B, S, hidden)
    pooler: Gather(h, 0, axis=1) -> Gemm -> Tanh -> pooler_output (B, hidden)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
from onnx import TensorProto

from dist_rt.models import _blocks as blk
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Hyper-parameters of :func:`make_bert`.

    Attributes:
        vocab: Vocabulary size.
        hidden: Model width.
        layers: Encoder layers.
        heads: Attention heads; must divide ``hidden``.
        intermediate: FFN width.
        max_seq: Rows of the position table.
        type_vocab: Token-type rows (only row 0 is used: there is no token_type_ids input).
        eps: LayerNorm epsilon.
        dtype: ``float32`` or ``float16``; outputs are cast to float32.
        seed: Seed of the random weights.
    """

    vocab: int = 128
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 128
    max_seq: int = 32
    type_vocab: int = 2
    eps: float = 1e-12
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")


def _extended_mask(g: GraphBuilder, mask: str) -> str:
    """HF ``get_extended_attention_mask``: ``(1 - mask[:, None, None, :]) * finfo.min``."""
    scope = "/bert"
    m = g.unsqueeze(g.node("Cast", [mask], scope, to=g.elem_type), [1, 2], scope)
    inv = g.node("Sub", [g.const(1.0), m], scope)
    return g.node("Mul", [inv, g.const(blk.mask_value(g))], scope)


def _layer(g: GraphBuilder, h: str, mask: str, cfg: BertConfig, i: int) -> str:
    p, s = f"bert.encoder.layer.{i}", f"/bert/encoder/layer.{i}"
    d = cfg.hidden // cfg.heads
    att = f"{s}/attention/self"
    q, k, v = (
        blk.split_heads(
            g, blk.linear(g, h, f"{p}.attention.self.{n}", cfg.hidden, cfg.hidden, f"{att}/{n}"),
            cfg.heads, d, att)
        for n in ("query", "key", "value")
    )
    a = blk.merge_heads(g, blk.sdpa(g, q, k, v, d, att, mask), cfg.hidden, att)
    a = blk.linear(g, a, f"{p}.attention.output.dense", cfg.hidden, cfg.hidden,
                   f"{s}/attention/output/dense")
    h = g.node("Add", [a, h], f"{s}/attention/output")
    h = blk.layer_norm(g, h, f"{p}.attention.output.LayerNorm", cfg.hidden, cfg.eps,
                       f"{s}/attention/output/LayerNorm")
    m = blk.linear(g, h, f"{p}.intermediate.dense", cfg.hidden, cfg.intermediate,
                   f"{s}/intermediate/dense")
    m = blk.gelu_erf(g, m, f"{s}/intermediate/intermediate_act_fn")
    m = blk.linear(g, m, f"{p}.output.dense", cfg.intermediate, cfg.hidden, f"{s}/output/dense")
    h = g.node("Add", [m, h], f"{s}/output")
    return blk.layer_norm(g, h, f"{p}.output.LayerNorm", cfg.hidden, cfg.eps,
                          f"{s}/output/LayerNorm")


def make_bert(cfg: BertConfig | None = None, *, batch: Dim = "batch",
              seq: Dim = "seq") -> onnx.ModelProto:
    """Builds a BERT-style encoder with a pooler, random weights.

    Args:
        cfg: Hyper-parameters; ``BertConfig()`` when None.
        batch: Batch dim (symbol or size).
        seq: Sequence dim (symbol or size, at most ``cfg.max_seq``).

    Returns:
        The ModelProto: inputs ``input_ids`` and ``attention_mask`` int64 (batch, seq);
        outputs ``last_hidden_state`` float32 (batch, seq, hidden) and ``pooler_output``
        float32 (batch, hidden).
    """
    cfg = cfg or BertConfig()
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    ids = g.add_input("input_ids", TensorProto.INT64, [batch, seq])
    mask = g.add_input("attention_mask", TensorProto.INT64, [batch, seq])

    s, p = "/bert/embeddings", "bert.embeddings"
    words = g.weight(f"{p}.word_embeddings.weight", (cfg.vocab, cfg.hidden), 1.0)
    pos_table = g.weight(f"{p}.position_embeddings.weight", (cfg.max_seq, cfg.hidden), 0.5)
    types = g.weight(f"{p}.token_type_embeddings.weight", (cfg.type_vocab, cfg.hidden), 0.5)
    h = g.node("Gather", [words, ids], f"{s}/word_embeddings", axis=0)
    # token_type_ids default to zeros, which the exporter folds into a Gather of row 0.
    h = g.node("Add", [h, g.node("Gather", [types, g.const(0)], f"{s}/token_type_embeddings",
                                 axis=0)], s)
    pos = g.node("Gather", [pos_table, blk.positions(g, ids, s)], f"{s}/position_embeddings",
                 axis=0)
    h = g.node("Add", [h, pos], s)
    h = blk.layer_norm(g, h, f"{p}.LayerNorm", cfg.hidden, cfg.eps, f"{s}/LayerNorm")

    ext = _extended_mask(g, mask)
    for i in range(cfg.layers):
        h = _layer(g, h, ext, cfg, i)

    first = g.node("Gather", [h, g.const(0)], "/bert/pooler", axis=1)
    pooled = g.node("Tanh", [blk.gemm(g, first, "bert.pooler.dense", cfg.hidden, cfg.hidden,
                                      "/bert/pooler/dense")], "/bert/pooler/activation")
    for value, name, shape in ((h, "last_hidden_state", [batch, seq, cfg.hidden]),
                               (pooled, "pooler_output", [batch, cfg.hidden])):
        blk.float32_output(g, value, cfg.dtype, shape, "/bert", name)
    return g.build(doc=f"make_bert({cfg})")


def sample_inputs(cfg: BertConfig | None = None, batch: int = 1, seq: int = 8,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Random ``input_ids`` and a right-padded ``attention_mask`` (int64, (batch, seq)).

    Row ``b`` keeps ``seq - b`` tokens (at least 1), so batches exercise padding.
    """
    cfg = cfg or BertConfig()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab, size=(batch, seq), dtype=np.int64)
    lengths = np.maximum(seq - np.arange(batch), 1)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask}
