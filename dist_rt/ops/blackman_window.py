"""BlackmanWindow: the Blackman window of a given length."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._signal_window import WindowOp


@register_op("BlackmanWindow", since_opset=17)
class BlackmanWindow(WindowOp):
    """Blackman window; coefficients of cos(2 pi k n / N'), k = 0, 1, ...: 0.42,-0.5,0.08."""

    coeffs = (0.42,-0.5,0.08)
