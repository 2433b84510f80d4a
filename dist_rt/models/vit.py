"""ViT-style image classifier (pre-LN encoder) as PyTorch exports it.

Graph::

    pixel_values (B, C, H, W) -> Conv(kernel=stride=patch) (B, hidden, H/p, W/p)
    -> Reshape (B, hidden, N) -> Transpose (B, N, hidden)
    -> Concat(Expand(cls_token, (B, 1, hidden)), ., axis=1) + position_embeddings
    per layer: h + attn(LN(h)) ; h + fc2(gelu_erf(fc1(LN(h))))
    -> LN -> Gather CLS (axis 1, index 0) -> Gemm head -> logits (B, classes)

The image size is fixed (position embeddings have N + 1 rows); the batch is symbolic. The
class-token Expand takes its target from a Shape->Gather->Unsqueeze->Concat chain, the way
``cls_token.expand(B, -1, -1)`` exports.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx

from dist_rt.models import _blocks as blk
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of :func:`make_vit`.

    Attributes:
        image: Image height and width.
        patch: Patch size; must divide ``image``.
        channels: Input channels.
        hidden: Model width.
        layers: Encoder layers.
        heads: Attention heads; must divide ``hidden``.
        mlp: FFN width.
        classes: Classifier outputs.
        eps: LayerNorm epsilon.
        dtype: ``float32`` or ``float16``; logits are cast to float32.
        seed: Seed of the random weights.
    """

    image: int = 16
    patch: int = 4
    channels: int = 3
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    mlp: int = 128
    classes: int = 10
    eps: float = 1e-12
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.image % self.patch:
            raise ValueError(f"image {self.image} is not divisible by patch {self.patch}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")

    @property
    def patches(self) -> int:
        """Number of patches ``(image / patch) ** 2``."""
        return (self.image // self.patch) ** 2


def _layer(g: GraphBuilder, h: str, cfg: ViTConfig, i: int) -> str:
    p, s = f"vit.encoder.layer.{i}", f"/vit/encoder/layer.{i}"
    d = cfg.hidden // cfg.heads
    res_std = cfg.hidden**-0.5 / math.sqrt(2 * cfg.layers)
    x = blk.layer_norm(g, h, f"{p}.layernorm_before", cfg.hidden, cfg.eps,
                       f"{s}/layernorm_before")
    att = f"{s}/attention/attention"
    q, k, v = (
        blk.split_heads(
            g, blk.linear(g, x, f"{p}.attention.attention.{n}", cfg.hidden, cfg.hidden,
                          f"{att}/{n}"),
            cfg.heads, d, att)
        for n in ("query", "key", "value")
    )
    a = blk.merge_heads(g, blk.sdpa(g, q, k, v, d, att), cfg.hidden, att)
    a = blk.linear(g, a, f"{p}.attention.output.dense", cfg.hidden, cfg.hidden,
                   f"{s}/attention/output/dense", std=res_std)
    h = g.node("Add", [a, h], s)
    x = blk.layer_norm(g, h, f"{p}.layernorm_after", cfg.hidden, cfg.eps, f"{s}/layernorm_after")
    m = blk.linear(g, x, f"{p}.intermediate.dense", cfg.hidden, cfg.mlp, f"{s}/intermediate/dense")
    m = blk.gelu_erf(g, m, f"{s}/intermediate/intermediate_act_fn")
    m = blk.linear(g, m, f"{p}.output.dense", cfg.mlp, cfg.hidden, f"{s}/output/dense",
                   std=cfg.mlp**-0.5 / math.sqrt(2 * cfg.layers))
    return g.node("Add", [m, h], f"{s}/output")


def make_vit(cfg: ViTConfig | None = None, *, batch: Dim = "batch") -> onnx.ModelProto:
    """Builds a ViT-style classifier with random weights.

    Args:
        cfg: Hyper-parameters; ``ViTConfig()`` when None.
        batch: Batch dim (symbol or size).

    Returns:
        The ModelProto: ``pixel_values`` (batch, channels, image, image) in the model dtype
        -> ``logits`` float32 (batch, classes).
    """
    cfg = cfg or ViTConfig()
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    px = g.add_input("pixel_values", g.elem_type, [batch, cfg.channels, cfg.image, cfg.image])

    s, p = "/vit/embeddings", "vit.embeddings"
    fan_in = cfg.channels * cfg.patch * cfg.patch
    w = g.weight(f"{p}.patch_embeddings.projection.weight",
                 (cfg.hidden, cfg.channels, cfg.patch, cfg.patch), fan_in**-0.5)
    b = g.weight(f"{p}.patch_embeddings.projection.bias", (cfg.hidden,), 0.02)
    x = g.node("Conv", [px, w, b], f"{s}/patch_embeddings/projection",
               kernel_shape=[cfg.patch, cfg.patch], strides=[cfg.patch, cfg.patch],
               pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    x = g.node("Reshape", [x, g.const([0, cfg.hidden, -1])], f"{s}/patch_embeddings")
    x = g.node("Transpose", [x], f"{s}/patch_embeddings", perm=[0, 2, 1])
    cls = g.weight(f"{p}.cls_token", (1, 1, cfg.hidden), 0.5)
    cls = g.node("Expand", [cls, g.shape_of([g.dim(px, 0, s), 1, cfg.hidden], s)], s)
    x = g.node("Concat", [cls, x], s, axis=1)
    pos = g.weight(f"{p}.position_embeddings", (1, cfg.patches + 1, cfg.hidden), 0.5)
    h = g.node("Add", [x, pos], s)

    for i in range(cfg.layers):
        h = _layer(g, h, cfg, i)
    h = blk.layer_norm(g, h, "vit.layernorm", cfg.hidden, cfg.eps, "/vit/layernorm")
    first = g.node("Gather", [h, g.const(0)], "/classifier", axis=1)
    logits = blk.gemm(g, first, "classifier", cfg.hidden, cfg.classes, "/classifier")
    blk.float32_output(g, logits, cfg.dtype, [batch, cfg.classes], "/classifier")
    return g.build(doc=f"make_vit({cfg})")


def sample_inputs(cfg: ViTConfig | None = None, batch: int = 1,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal ``pixel_values`` (batch, channels, image, image) in the model dtype."""
    cfg = cfg or ViTConfig()
    return blk.sample_images("pixel_values", cfg.channels, cfg.image, cfg.dtype, batch, seed)
