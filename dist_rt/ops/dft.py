"""DFT: discrete Fourier transform of a real or complex signal along one axis."""

from __future__ import annotations

from dist_rt.ops._elementwise import widen
from dist_rt.ops._extra_util import fail, scalar
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def dft(xp, layer, x, length, axis, inverse, onesided):
    """Transform ``x`` (..., 1 or 2) along ``axis`` (a dim before the last); returns
    (..., bins, 2) in x's dtype."""
    if x.shape[-1] not in (1, 2):
        raise fail(layer, f"input has shape {x.shape}; the last dim must be 1 (real) or 2 "
                          f"(complex)")
    # Keep float32 signals in complex64, as NumPy 2's pocketfft and onnx's outputs do.
    dtype, x = x.dtype, widen(x)
    signal = x[..., 0] if x.shape[-1] == 1 else x[..., 0] + 1j * x[..., 1]
    if not 0 <= axis < signal.ndim:
        raise fail(layer, f"axis {axis} is out of range for input rank {x.ndim}")
    if inverse and onesided:
        # One-sided spectrum in, real signal out (irfft); default length 2 * (bins - 1).
        length = 2 * (signal.shape[axis] - 1) if length is None else length
        return xp.fft.irfft(signal, n=int(length), axis=axis)[..., None].astype(dtype)
    if length is None:
        length = signal.shape[axis]
    transform = xp.fft.ifft if inverse else xp.fft.fft
    y = transform(signal, n=int(length), axis=axis)
    if onesided:
        index = [slice(None)] * y.ndim
        index[axis] = slice(0, int(length) // 2 + 1)
        y = y[tuple(index)]
    return xp.stack([y.real, y.imag], axis=-1).astype(dtype)


@register_op("DFT", since_opset=17)
class DFT(Op):
    """Inputs: input (..., 1|2), optional dft_length, optional axis (opset 20; an attribute
    before). Attributes ``inverse``, ``onesided``. Output (..., bins, 2)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1, 3)
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        length = scalar(inputs[1]) if len(inputs) > 1 else None
        if layer.opset >= 20:
            axis = scalar(inputs[2], -2) if len(inputs) > 2 else -2
        else:
            axis = layer.attr("axis", 1)
        axis = int(axis) % x.ndim if -x.ndim <= int(axis) < x.ndim else int(axis)
        return [dft(rt.xp, layer, x, length, axis, bool(layer.attr("inverse", 0)),
                    bool(layer.attr("onesided", 0)))]
