"""STFT: short-time Fourier transform of (batch, length, 1|2) signals."""

from __future__ import annotations

from dist_rt.ops._extra_util import fail, scalar
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops.dft import dft


@register_op("STFT", since_opset=17)
class STFT(Op):
    """Inputs: signal (B, L, 1|2), frame_step, optional window (W,), optional frame_length.
    Frames ``f`` start at ``f * frame_step``; each is windowed and transformed.
    Output (B, frames, bins, 2) with ``bins = W // 2 + 1`` when ``onesided`` (default)."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 4)
        return [TensorDesc(inputs[0].dtype, None)]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        signal, step = inputs[0], int(scalar(inputs[1]))
        window = inputs[2] if len(inputs) > 2 else None
        frame = scalar(inputs[3]) if len(inputs) > 3 else None
        frame = int(frame if frame is not None else window.shape[0] if window is not None
                    else 0)
        if signal.ndim != 3 or frame <= 0 or step <= 0 or frame > signal.shape[1]:
            raise fail(layer, f"signal {signal.shape}, frame_length {frame}, frame_step "
                              f"{step}: expected (B, L, 1|2), 0 < frame_length <= L, step > 0")
        count = 1 + (signal.shape[1] - frame) // step
        starts = xp.arange(count)[:, None] * step + xp.arange(frame)[None, :]
        frames = signal[:, starts]  # (B, frames, W, 1|2)
        if window is not None:
            frames = frames * window.reshape(1, 1, -1, 1)
        onesided = bool(layer.attr("onesided", 1))
        return [dft(xp, layer, frames.astype(signal.dtype), frame, 2, False, onesided)]
