"""Building blocks shared by the model generators (GPT-2, BERT, ViT, MoE, Llama, ResNet).

Each function appends the nodes one PyTorch module exports to, in the same op order, and
returns the name of its output value.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from dist_rt.models._graph import Dim, GraphBuilder


def linear(g: GraphBuilder, x: str, prefix: str, fan_in: int, fan_out: int, scope: str,
           *, bias: bool = True, std: float | None = None) -> str:
    """``x @ W + b`` with ``W`` stored (fan_in, fan_out): MatMul then Add, as dynamo exports.

    Args:
        g: Graph under construction.
        x: Input (..., fan_in).
        prefix: Parameter prefix; creates ``{prefix}.weight`` and ``{prefix}.bias``.
        fan_in: Input features.
        fan_out: Output features.
        scope: Node scope.
        bias: Add a bias (small random, so tests see it matter).
        std: Weight std; ``fan_in ** -0.5`` keeps the output variance near the input's.

    Returns:
        The output value name (..., fan_out).
    """
    w = g.weight(f"{prefix}.weight", (fan_in, fan_out), std if std is not None else fan_in**-0.5)
    y = g.node("MatMul", [x, w], scope)
    if bias:
        y = g.node("Add", [y, g.weight(f"{prefix}.bias", (fan_out,), 0.02)], scope)
    return y


def gemm(g: GraphBuilder, x: str, prefix: str, fan_in: int, fan_out: int, scope: str) -> str:
    """A Linear on a 2-D input: ``Gemm(x, W, b, transB=1)`` with W stored (out, in) as torch."""
    w = g.weight(f"{prefix}.weight", (fan_out, fan_in), fan_in**-0.5)
    b = g.weight(f"{prefix}.bias", (fan_out,), 0.02)
    return g.node("Gemm", [x, w, b], scope, transB=1)


def layer_norm(g: GraphBuilder, x: str, prefix: str, hidden: int, eps: float, scope: str) -> str:
    """``LayerNormalization`` over the last axis (opset 17+), as dynamo exports nn.LayerNorm."""
    w = g.weight(f"{prefix}.weight", (hidden,), 0.02, 1.0)
    b = g.weight(f"{prefix}.bias", (hidden,), 0.02)
    return g.node("LayerNormalization", [x, w, b], scope, axis=-1, epsilon=eps)


def gelu_erf(g: GraphBuilder, x: str, scope: str) -> str:
    """Exact GELU decomposed with Erf: ``0.5 * x * (1 + erf(x / sqrt(2)))``."""
    e = g.node("Erf", [g.node("Div", [x, g.const(math.sqrt(2.0))], scope)], scope)
    y = g.node("Mul", [x, g.node("Add", [e, g.const(1.0)], scope)], scope)
    return g.node("Mul", [y, g.const(0.5)], scope)


def gelu_tanh(g: GraphBuilder, x: str, scope: str) -> str:
    """GPT-2's ``gelu_new``: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""
    cube = g.node("Mul", [g.node("Pow", [x, g.const(3.0)], scope), g.const(0.044715)], scope)
    inner = g.node("Mul", [g.node("Add", [x, cube], scope), g.const(math.sqrt(2.0 / math.pi))],
                   scope)
    t = g.node("Add", [g.node("Tanh", [inner], scope), g.const(1.0)], scope)
    return g.node("Mul", [g.node("Mul", [x, g.const(0.5)], scope), t], scope)


def split_heads(g: GraphBuilder, x: str, heads: int, head_dim: int, scope: str) -> str:
    """(B, S, heads*D) -> Reshape [0, 0, heads, D] -> Transpose -> (B, heads, S, D)."""
    x = g.node("Reshape", [x, g.const([0, 0, heads, head_dim])], scope)
    return g.node("Transpose", [x], scope, perm=[0, 2, 1, 3])


def merge_heads(g: GraphBuilder, x: str, hidden: int, scope: str) -> str:
    """(B, heads, S, D) -> Transpose -> Reshape [0, 0, hidden] -> (B, S, hidden)."""
    x = g.node("Transpose", [x], scope, perm=[0, 2, 1, 3])
    return g.node("Reshape", [x, g.const([0, 0, hidden])], scope)


def sdpa(g: GraphBuilder, q: str, k: str, v: str, head_dim: int, scope: str,
         mask: str | None = None) -> str:
    """``softmax(q k^T / sqrt(D) + mask) v`` on (B, H, S, D) tensors; mask is additive."""
    kt = g.node("Transpose", [k], scope, perm=[0, 1, 3, 2])
    scores = g.node("MatMul", [q, kt], scope)
    scores = g.node("Mul", [scores, g.const(1.0 / math.sqrt(head_dim))], scope)
    if mask is not None:
        scores = g.node("Add", [scores, mask], scope)
    probs = g.node("Softmax", [scores], scope, axis=-1)
    return g.node("MatMul", [probs, v], scope)


def mask_value(g: GraphBuilder) -> float:
    """The large negative for masked scores: finfo(float32).min, or -1e4 in 16-bit types.

    In float16 adding a score to finfo.min can round to -inf; -1e4 stays finite.
    """
    return float(np.finfo(np.float32).min) if g.dtype == np.float32 else -1e4


def positions(g: GraphBuilder, ids: str, scope: str, axis: int = 1) -> str:
    """``Range(0, ids.shape[axis], 1)``: position ids computed in the graph from Shape."""
    n = g.node("Gather", [g.node("Shape", [ids], scope), g.const(axis)], scope, axis=0)
    return g.node("Range", [g.const(0), n, g.const(1)], scope)


def float32_output(g: GraphBuilder, x: str, dtype: str, shape: list[Dim], scope: str,
                   name: str = "logits") -> None:
    """Add graph output ``name`` in float32: a Cast from the model's 16-bit ``dtype`` first."""
    if dtype != "float32":
        x = g.node("Cast", [x], scope, to=TensorProto.FLOAT)
    g.add_output(x, TensorProto.FLOAT, shape, name=name)


def sample_images(name: str, channels: int, image: int, dtype: str, batch: int,
                  seed: int) -> dict[str, np.ndarray]:
    """Standard-normal images ``{name: (batch, channels, image, image)}`` in ``dtype``."""
    rng = np.random.default_rng(seed)
    shape = (batch, channels, image, image)
    return {name: rng.standard_normal(shape, dtype=np.float32).astype(dtype)}
