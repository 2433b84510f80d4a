"""RotaryEmbedding (ONNX opset 23): rotate pairs of head features by position angles.

For the first ``rotary_embedding_dim`` features of each head (default: all), split into
pairs ``(x1, x2)`` — halves (``interleaved=0``, GPT-NeoX style) or even/odd features
(``interleaved=1``, GPT-J style):

    out1 = cos * x1 - sin * x2
    out2 = sin * x1 + cos * x2

``cos``/``sin`` are ``cos_cache[position_ids]`` (caches (max_pos, R/2), position_ids (B, S))
or, without position_ids, the caches themselves (B, S, R/2). Input is (B, H, S, D) or
(B, S, H * D) with the ``num_heads`` attribute; the output has the input's shape.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


@register_op("RotaryEmbedding", since_opset=23)
class RotaryEmbedding(Op):
    """ONNX RotaryEmbedding: X, cos_cache, sin_cache, optional position_ids."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 3, 4)
        x = inputs[0]
        if x.shape is not None and len(x.shape) not in (3, 4):
            raise ShapeError(f"layer '{layer.name}' (RotaryEmbedding): input has shape "
                             f"{x.shape}, expected (B, H, S, D) or (B, S, H*D)")
        return [TensorDesc(x.dtype, x.shape)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        x, cos, sin = inputs[:3]
        pos = inputs[3] if len(inputs) > 3 else None
        where = f"layer '{layer.name}' (RotaryEmbedding): "
        if x.ndim == 4:
            h = x.transpose(0, 2, 1, 3)  # (B, S, H, D)
        elif x.ndim == 3:
            heads = int(layer.attr("num_heads", 0))
            if not heads or x.shape[2] % heads:
                raise ShapeError(f"{where}3-D input {tuple(x.shape)} needs num_heads dividing "
                                 f"its hidden size, got num_heads={heads}")
            h = x.reshape(x.shape[0], x.shape[1], heads, -1)
        else:
            raise ShapeError(f"{where}input has shape {tuple(x.shape)}, expected 3-D or 4-D")
        dim = int(layer.attr("rotary_embedding_dim", 0)) or h.shape[3]
        if dim % 2 or dim > h.shape[3]:
            raise ShapeError(f"{where}rotary_embedding_dim {dim} must be even and <= head "
                             f"size {h.shape[3]}")
        if pos is not None:
            cos, sin = cos[pos], sin[pos]
        if cos.shape[-1] != dim // 2 or sin.shape != cos.shape or cos.shape[:2] != h.shape[:2]:
            raise ShapeError(f"{where}cos/sin {tuple(cos.shape)}/{tuple(sin.shape)} after the "
                             f"position lookup, expected (B, S, {dim // 2}) = "
                             f"{(h.shape[0], h.shape[1], dim // 2)}")
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
        rot = h[..., :dim]
        if int(layer.attr("interleaved", 0)):
            x1, x2 = rot[..., 0::2], rot[..., 1::2]
        else:
            x1, x2 = rot[..., :dim // 2], rot[..., dim // 2:]
        real = cos * x1 - sin * x2
        imag = sin * x1 + cos * x2
        if int(layer.attr("interleaved", 0)):
            rot = xp.stack([real, imag], axis=-1).reshape(rot.shape)
        else:
            rot = xp.concatenate([real, imag], axis=-1)
        out = xp.concatenate([rot.astype(x.dtype, copy=False), h[..., dim:]], axis=-1)
        out = out.reshape(x.shape) if x.ndim == 3 else out.transpose(0, 2, 1, 3)
        return [out]
