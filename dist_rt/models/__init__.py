"""Model generators: ONNX graphs written in the shapes PyTorch's exporters produce.

Each module has a frozen ``Config`` dataclass, ``make_<name>(cfg) -> onnx.ModelProto`` and
``sample_inputs(cfg, ...) -> dict``. The models use opset-18 default-domain ops only and
random seeded weights scaled so activations stay O(1). They feed the default CLI run, the
tests of every package and the benchmarks; onnxruntime is their reference.

Modules: :mod:`~dist_rt.models.llama` (the default run), :mod:`~dist_rt.models.gpt2`,
:mod:`~dist_rt.models.bert`, :mod:`~dist_rt.models.vit`, :mod:`~dist_rt.models.resnet`,
:mod:`~dist_rt.models.moe` (top-k mixture of experts: dense dispatch, or GShard capacity
dispatch with all_to_all expert parallelism).
Each module's ``sample_inputs`` gives matching random feeds.

Example::

    from dist_rt import models
    model = models.make_llama(models.LlamaConfig(layers=4))
    models.write(model, "llama.onnx", external_data=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from dist_rt.models import bert, gpt2, llama, moe, resnet, vit
from dist_rt.models._io import write
from dist_rt.models.bert import BertConfig, make_bert
from dist_rt.models.gpt2 import GPT2Config, make_gpt2
from dist_rt.models.llama import LlamaConfig, make_llama
from dist_rt.models.llama import sample_inputs as llama_inputs
from dist_rt.models.moe import MoEConfig, make_moe
from dist_rt.models.resnet import ResNetConfig, make_resnet
from dist_rt.models.vit import ViTConfig, make_vit

__all__ = [
    "BertConfig",
    "GPT2Config",
    "LlamaConfig",
    "MoEConfig",
    "REGISTRY",
    "ModelSpec",
    "ResNetConfig",
    "ViTConfig",
    "default_model",
    "llama_inputs",
    "make",
    "make_bert",
    "make_gpt2",
    "make_llama",
    "make_moe",
    "make_resnet",
    "make_vit",
    "write",
]


def default_model() -> onnx.ModelProto:
    """The model of the default CLI run: a 2-layer Llama (hidden 256, 8 heads, 4 KV heads).

    MLP 512, vocab 1000, max_seq 256; ``input_ids`` (batch, seq) with symbolic dims.

    Returns:
        The ModelProto (about 1.7 M parameters, weights embedded).
    """
    return make_llama(LlamaConfig())


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One generator: its config class, builder and input maker (for CLIs and benchmarks).

    Attributes:
        config: The frozen config dataclass.
        make: ``make(cfg) -> ModelProto``.
        sample_inputs: ``sample_inputs(cfg, batch, [seq,] seed=...) -> dict`` of feeds.
    """

    config: type
    make: Callable[..., onnx.ModelProto]
    sample_inputs: Callable[..., dict[str, np.ndarray]]


#: Generators by name.
REGISTRY: dict[str, ModelSpec] = {
    "llama": ModelSpec(LlamaConfig, make_llama, llama.sample_inputs),
    "gpt2": ModelSpec(GPT2Config, make_gpt2, gpt2.sample_inputs),
    "bert": ModelSpec(BertConfig, make_bert, bert.sample_inputs),
    "vit": ModelSpec(ViTConfig, make_vit, vit.sample_inputs),
    "resnet": ModelSpec(ResNetConfig, make_resnet, resnet.sample_inputs),
    "moe": ModelSpec(MoEConfig, make_moe, moe.sample_inputs),
}


def make(name: str, **overrides: Any) -> onnx.ModelProto:
    """Builds generator ``name`` with config fields overridden, e.g. ``make("llama", layers=4)``.

    Args:
        name: A key of :data:`REGISTRY`.
        **overrides: Config fields to change from their defaults.

    Returns:
        The ModelProto.

    Raises:
        KeyError: If ``name`` is not a registered generator.
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; expected one of {sorted(REGISTRY)}")
    spec = REGISTRY[name]
    return spec.make(spec.config(**overrides))
