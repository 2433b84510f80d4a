"""A small ResNet (torchvision BasicBlock layout) as PyTorch exports it in eval mode.

Graph::

    input (B, C, H, W) -> conv1 7x7/2 -> bn1 -> Relu -> MaxPool 3x3/2
    per stage, per BasicBlock:
        y = bn2(conv2(relu(bn1(conv1(x))))) ; x = relu(y + downsample(x))
        (downsample = 1x1/2 conv + bn when the stride or width changes)
    -> GlobalAveragePool -> Flatten -> Gemm fc -> logits (B, classes)

BatchNormalization is kept as a node (dynamo does not fold it into the Conv), with
random running statistics so it is not an identity.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from dist_rt.models import _blocks as blk
from dist_rt.models._graph import Dim, GraphBuilder


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Hyper-parameters of :func:`make_resnet`.

    Attributes:
        image: Input height and width.
        channels: Input channels.
        widths: Output channels of each stage (stage 0 keeps stride 1, later ones halve).
        blocks: BasicBlocks per stage (same length as ``widths``).
        classes: Classifier outputs.
        eps: BatchNormalization epsilon.
        dtype: ``float32`` or ``float16``; logits are cast to float32.
        seed: Seed of the random weights.
    """

    image: int = 32
    channels: int = 3
    widths: tuple[int, ...] = (8, 16)
    blocks: tuple[int, ...] = (1, 1)
    classes: int = 10
    eps: float = 1e-5
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.blocks):
            raise ValueError(f"widths {self.widths} and blocks {self.blocks} differ in length")


def _conv(g: GraphBuilder, x: str, name: str, cin: int, cout: int, k: int, stride: int,
          scope: str) -> str:
    """Bias-free Conv with He-normal weights (keeps the ReLU stream's variance)."""
    w = g.weight(f"{name}.weight", (cout, cin, k, k), (2.0 / (cin * k * k)) ** 0.5)
    pad = k // 2
    return g.node("Conv", [x, w], scope, kernel_shape=[k, k], strides=[stride, stride],
                  pads=[pad] * 4, dilations=[1, 1], group=1)


def _bn(g: GraphBuilder, x: str, name: str, c: int, eps: float, scope: str,
        gamma: float = 1.0) -> str:
    """Eval-mode BatchNormalization with random affine parameters and running stats."""
    scale = g.weight(f"{name}.weight", (c,), 0.05, gamma)
    bias = g.weight(f"{name}.bias", (c,), 0.05)
    mean = g.weight(f"{name}.running_mean", (c,), 0.05)
    var = g.initializer(f"{name}.running_var",
                        g.rng.uniform(0.8, 1.2, size=(c,)).astype(g.dtype))
    return g.node("BatchNormalization", [x, scale, bias, mean, var], scope, epsilon=eps,
                  momentum=0.9)


def _basic_block(g: GraphBuilder, x: str, name: str, cin: int, cout: int, stride: int,
                 eps: float) -> str:
    s = "/" + name.replace(".", "/")
    y = _conv(g, x, f"{name}.conv1", cin, cout, 3, stride, f"{s}/conv1")
    y = g.node("Relu", [_bn(g, y, f"{name}.bn1", cout, eps, f"{s}/bn1")], f"{s}/relu")
    y = _conv(g, y, f"{name}.conv2", cout, cout, 3, 1, f"{s}/conv2")
    # A smaller bn2 scale (as zero-init-residual schemes do) keeps the sum from doubling.
    y = _bn(g, y, f"{name}.bn2", cout, eps, f"{s}/bn2", gamma=0.5)
    if stride != 1 or cin != cout:
        x = _conv(g, x, f"{name}.downsample.0", cin, cout, 1, stride, f"{s}/downsample/0")
        x = _bn(g, x, f"{name}.downsample.1", cout, eps, f"{s}/downsample/1")
    return g.node("Relu", [g.node("Add", [y, x], s)], f"{s}/relu_1")


def make_resnet(cfg: ResNetConfig | None = None, *, batch: Dim = "batch") -> onnx.ModelProto:
    """Builds a small ResNet with random weights.

    Args:
        cfg: Hyper-parameters; ``ResNetConfig()`` when None.
        batch: Batch dim (symbol or size).

    Returns:
        The ModelProto: ``input`` (batch, channels, image, image) in the model dtype ->
        ``logits`` float32 (batch, classes).
    """
    cfg = cfg or ResNetConfig()
    g = GraphBuilder("main_graph", cfg.dtype, cfg.seed)
    x = g.add_input("input", g.elem_type, [batch, cfg.channels, cfg.image, cfg.image])
    width = cfg.widths[0]
    x = _conv(g, x, "conv1", cfg.channels, width, 7, 2, "/conv1")
    x = g.node("Relu", [_bn(g, x, "bn1", width, cfg.eps, "/bn1")], "/relu")
    x = g.node("MaxPool", [x], "/maxpool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1], ceil_mode=0, dilations=[1, 1])
    for stage, (cout, n) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
        for b in range(n):
            stride = 2 if stage > 0 and b == 0 else 1
            x = _basic_block(g, x, f"layer{stage + 1}.{b}", width, cout, stride, cfg.eps)
            width = cout
    x = g.node("GlobalAveragePool", [x], "/avgpool")
    x = g.node("Flatten", [x], "", axis=1)
    logits = blk.gemm(g, x, "fc", width, cfg.classes, "/fc")
    blk.float32_output(g, logits, cfg.dtype, [batch, cfg.classes], "/fc")
    return g.build(doc=f"make_resnet({cfg})")


def sample_inputs(cfg: ResNetConfig | None = None, batch: int = 1,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal images ``input`` (batch, channels, image, image) in the model dtype."""
    cfg = cfg or ResNetConfig()
    return blk.sample_images("input", cfg.channels, cfg.image, cfg.dtype, batch, seed)
