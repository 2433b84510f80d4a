"""HannWindow: the Hann window of a given length."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._signal_window import WindowOp


@register_op("HannWindow", since_opset=17)
class HannWindow(WindowOp):
    """Hann window; coefficients of cos(2 pi k n / N'), k = 0, 1, ...: 0.5,-0.5."""

    coeffs = (0.5,-0.5)
