"""Operators: one module per op, each registered explicitly with ``@register_op``.

Importing this package imports every op module listed below, which registers it. Add a new
op by writing ``dist_rt/ops/<op>.py`` and listing the module here.
"""

from __future__ import annotations

import importlib

from dist_rt.ops._op import (
    Op,
    RunContext,
    TensorDesc,
    get_op,
    is_supported,
    register_op,
    supported_ops,
)

_MODULES = [
    # math (ops-math helper)
    "exp", "log", "sqrt", "reciprocal", "tanh", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "sigmoid", "softsign", "softplus",
    "mish", "hard_sigmoid", "hard_swish", "leaky_relu", "elu", "selu", "celu",
    "thresholded_relu", "neg", "abs", "sign", "floor", "ceil", "round", "is_nan", "is_inf",
    "logical_not", "bitwise_not", "add", "sub", "mul", "logical_and", "logical_or",
    "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "equal", "less",
    "less_or_equal", "greater", "greater_or_equal", "div", "mod", "pow", "bit_shift",
    "gelu", "prelu", "where", "min", "max", "sum", "mean", "clip", "cast", "cast_like",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod", "reduce_l1",
    "reduce_l2", "reduce_log_sum", "reduce_log_sum_exp", "reduce_sum_square", "arg_max",
    "arg_min", "softmax", "log_softmax", "hardmax", "top_k", "cum_sum", "gemm", "einsum",
    "matmul_integer", "quantize_linear", "dequantize_linear",
    # linear algebra
    "matmul",
    # activations
    "relu",
    # distributed
    "dist_collective",
    # nn (ops-nn helper)
    "conv",
    "conv_transpose",
    "max_pool",
    "average_pool",
    "lp_pool",
    "global_pool",
    "batch_norm",
    "instance_norm",
    "layer_norm",
    "rms_norm",
    "group_norm",
    "lp_norm",
    "mvn",
    "lrn",
    "attention",
    "fused_attention",
    "rotary_embedding",
    "resize",
    "upsample",
    "silu_mul",
    "rotary_half",
    "rotary_half_pair",
    "add_rms_norm",
    "all_reduce_add_rms_norm",
    "weight_only_matmul",
    "matmul_cast",
    "matmul_silu_mul",
    # tensor (ops-tensor helper)
    "identity", "dropout", "constant", "shape", "size", "gather", "gather_elements",
    "gather_nd", "reshape", "transpose", "squeeze", "unsqueeze", "concat", "split", "slice",
    "expand", "constant_of_shape", "range", "trilu", "flatten", "pad", "tile", "scatter_nd",
    "scatter_elements", "one_hot", "non_zero", "eye_like", "depth_to_space", "space_to_depth",
    "compress", "reverse_sequence", "center_crop_pad", "unique",
    # extra (ops-extra helper)
    "swish", "swiglu", "shrink", "cum_prod", "bit_cast", "det",
    "negative_log_likelihood_loss", "softmax_cross_entropy_loss", "tensor_scatter",
    "causal_conv_with_state", "linear_attention", "qlinear_matmul", "conv_integer",
    "qlinear_conv", "dynamic_quantize_linear", "rnn", "gru", "lstm", "grid_sample",
    "affine_grid", "hann_window", "hamming_window", "blackman_window", "dft", "stft",
    "non_max_suppression", "col2im", "max_unpool",
    # control flow (control-flow helper)
    "if_", "loop", "scan", "sequence_empty", "sequence_construct", "sequence_insert",
    "sequence_at", "sequence_erase", "sequence_length", "concat_from_sequence",
    "split_to_sequence", "sequence_map", "optional", "optional_has_element",
    "optional_get_element", "string_concat", "string_split", "string_normalizer",
    "regex_full_match", "label_encoder", "array_feature_extractor", "binarizer", "adagrad",
    "adam", "momentum",
]

for _name in _MODULES:
    importlib.import_module(f"dist_rt.ops.{_name}")

__all__ = ["Op", "RunContext", "TensorDesc", "get_op", "is_supported", "register_op",
           "supported_ops"]
