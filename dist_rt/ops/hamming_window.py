"""HammingWindow: the Hamming window of a given length."""

from __future__ import annotations

from dist_rt.ops._op import register_op
from dist_rt.ops._signal_window import WindowOp


@register_op("HammingWindow", since_opset=17)
class HammingWindow(WindowOp):
    """Hamming window; coefficients of cos(2 pi k n / N'), k = 0, 1, ...: 25/46,-(1-25/46)."""

    coeffs = (25/46,-(1-25/46))
