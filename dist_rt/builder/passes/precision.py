"""Reduced precision (fp16/bf16): float math runs in the compute dtype, bindings keep theirs.

What the pass does, in order:

1. Float32 weights are cast once, here, so the engine stores and loads the small dtype
   (not the scales of int8 weights, see :data:`FP32_CONSTANT_INPUTS`).
2. Each float32 network input gets a ``Cast`` to the compute dtype right after it; each
   float32 network output gets a ``Cast`` back, under the output's original name. So the
   caller feeds and receives exactly the model's dtypes.
3. Attributes that create float32 values (``Cast.to``, ``ConstantOfShape.value``,
   ``Constant.value``) are switched to the compute dtype so no fp32 creeps back in.
4. Layers whose math loses too much in 16 bits (softmax, normalizations, reductions of sums
   of squares) run in fp32: their float inputs are cast up and their outputs cast back.
   Not on CUDA for last-axis RMSNormalization and Softmax: their kernels load 16-bit values
   and compute in fp32 already, so the casts would only add two passes over the tensor.

float64 tensors are left alone: a model that asks for doubles means it.
"""

from __future__ import annotations

import numpy as np

from dist_rt import dtypes
from dist_rt.builder.passes import BuildState, on_cuda
from dist_rt.errors import BuildError
from dist_rt.network import Layer, Network, Tensor
from dist_rt.ops import is_supported
from dist_rt.weights import Weights

F32 = np.dtype(np.float32)
#: Ops that keep their math in fp32 under reduced precision.
FP32_OPS = frozenset({"Softmax", "LogSoftmax", "LayerNormalization", "RMSNormalization",
                      "SimplifiedLayerNormalization", "SkipLayerNormalization",
                      "GroupNormalization", "InstanceNormalization", "ReduceSumSquare",
                      "ReduceLogSumExp", "ReduceL2"})
#: Ops whose CUDA kernels already read 16-bit tensors and compute in fp32 inside (see
#: dist_rt/runtime/cuda/kernels.py), for the last axis only: no casts around them on CUDA.
CUDA_NATIVE_16BIT = frozenset({"RMSNormalization", "Softmax"})
#: (domain, op type, input index) whose float32 constants stay float32: an 8-bit weight's
#: per-column scale is only N floats, and rounding it to bf16 would bias whole columns.
FP32_CONSTANT_INPUTS = frozenset({("dist_rt", "WeightOnlyMatMul", 2)})


def _native_16bit(layer: Layer) -> bool:
    """True when the CUDA kernel of ``layer`` takes its 16-bit inputs as they are."""
    if layer.op_type not in CUDA_NATIVE_16BIT or layer.domain not in ("", "ai.onnx"):
        return False
    x = layer.inputs[0]
    rank = None if x is None or x.shape is None else len(x.shape)
    axis = int(layer.attr("axis", -1))
    if rank is None or not (axis == -1 or axis == rank - 1):
        return False
    if layer.op_type == "Softmax":
        return layer.opset >= 13
    # RMSNormalization: the kernel wants a 1-D scale of the input's dtype (a cast weight).
    w = layer.inputs[1] if len(layer.inputs) > 1 else None
    return w is not None and w.shape is not None and len(w.shape) == 1 and w.dtype == x.dtype


def _fp32_constants(network: Network) -> set[str]:
    """Constants read only as :data:`FP32_CONSTANT_INPUTS` inputs (and not outputs)."""
    readers: dict[str, bool] = {}
    for layer in network.layers:
        for i, t in enumerate(layer.inputs):
            if t is not None and t.is_constant:
                keep = (layer.domain, layer.op_type, i) in FP32_CONSTANT_INPUTS
                readers[t.name] = readers.get(t.name, True) and keep
    return {name for name, keep in readers.items() if keep} - {t.name for t in network.outputs}


def _cast(network: Network, src: Tensor, dtype: np.dtype, name: str | None = None) -> Tensor:
    layer = network.add_layer("Cast", [src], {"to": dtypes.to_onnx(dtype)},
                              name=network.unique_name(f"{src.name}.cast"),
                              outputs=[name or network.unique_name(f"{src.name}.{dtype}")])
    layer.metadata["inserted_by"] = "precision"
    return layer.outputs[0]


def _rename(network: Network, tensor: Tensor, new: str) -> None:
    del network.tensors[tensor.name]
    tensor.name = new
    network.tensors[new] = tensor


def _retype_attributes(layer: Layer, low: np.dtype) -> None:
    if layer.op_type == "Cast" and layer.attr("to") == dtypes.to_onnx(F32):
        layer.attributes["to"] = dtypes.to_onnx(low)
    for key, value in layer.attributes.items():
        if isinstance(value, np.ndarray) and value.dtype == F32:
            layer.attributes[key] = value.astype(low)


def _keep_fp32(network: Network, layer: Layer, low: np.dtype) -> None:
    for i, t in enumerate(layer.inputs):
        if t is not None and t.dtype == low:
            layer.inputs[i] = _cast(network, t, F32)
    for t in layer.outputs:
        if t.dtype != low:
            continue
        # The layer now writes an fp32 tensor; readers get a cast-down copy under the old name.
        old = t.name
        _rename(network, t, network.unique_name(f"{old}.fp32"))
        back = _cast(network, t, low, name=old)
        for other in network.layers:
            if other is not back.producer:
                other.inputs = [back if x is t else x for x in other.inputs]
        network.outputs = [back if x is t else x for x in network.outputs]


def run(network: Network, state: BuildState) -> str:
    """Convert the network to the config's precision (no-op for fp32).

    Args:
        network: The network to edit in place.
        state: Build state; ``state.config.compute_dtype`` is the target.

    Returns:
        A summary line.

    Raises:
        BuildError: Reduced precision needs the ``Cast`` op, which is not registered.
    """
    low = state.config.compute_dtype
    if low == F32:
        return "fp32: nothing to do"
    if not is_supported("Cast"):
        raise BuildError(f"precision {state.config.precision}: the Cast op is not registered, "
                         f"so inputs and outputs cannot be converted")
    network.toposort()
    weights = 0
    keep = _fp32_constants(network)
    for t in network.constants:
        if t.dtype == F32 and t.name not in keep:
            t.weights = Weights(t.weights.numpy().astype(low))
            t.dtype = low
            weights += 1
    for layer in network.layers:
        _retype_attributes(layer, low)
    inputs = 0
    for t in network.inputs:
        if t.dtype == F32:
            cast = _cast(network, t, low)
            for layer in network.layers:
                if layer is not cast.producer:
                    layer.inputs = [cast if x is t else x for x in layer.inputs]
            inputs += 1
    outputs = 0
    for i, t in enumerate(list(network.outputs)):
        if t.dtype == F32 and t.producer is not None:
            old = t.name
            _rename(network, t, network.unique_name(f"{old}.{low}"))
            network.outputs[i] = _cast(network, t, F32, name=old)
            outputs += 1
    # Re-infer so every intermediate takes the compute dtype, then pin fp32 islands.
    network.infer_shapes()
    native = _native_16bit if on_cuda(state) else (lambda layer: False)
    islands = [lay for lay in network.layers if lay.op_type in FP32_OPS and not native(lay)]
    for layer in islands:
        _keep_fp32(network, layer, low)
    network.infer_shapes()
    return (f"{state.config.precision}: {weights} weights cast, {inputs} inputs and "
            f"{outputs} outputs wrapped, {len(islands)} layers kept in fp32")
