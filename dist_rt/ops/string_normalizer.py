"""StringNormalizer: drop ``stopwords`` and change the case of a 1-D or ``[1, C]`` tensor.

Stop words compare case-sensitively when ``is_case_sensitive`` is 1; when every word is
dropped the output is a single ``""``.
"""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op
from dist_rt.ops._strings import STRING, host_strings, strings_like


@register_op("StringNormalizer", since_opset=10)
class StringNormalizer(Op):
    """``[case(w) for w in x if w not in stopwords]``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1)
        shape = inputs[0].shape
        return [TensorDesc(STRING, None if shape is None else (*shape[:-1], None))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = host_strings(inputs[0])
        if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != 1):
            raise ShapeError(f"layer '{layer.name}' (StringNormalizer): input shape "
                             f"{tuple(x.shape)}, expected [C] or [1, C]")
        sensitive = bool(int(layer.attr("is_case_sensitive", 0)))
        stops = list(layer.attr("stopwords", []) or [])
        stops = set(stops) if sensitive else {w.lower() for w in stops}
        words = [str(w) for w in x.reshape(-1)]
        kept = [w for w in words if (w if sensitive else w.lower()) not in stops]
        action = layer.attr("case_change_action", "NONE")
        if action == "LOWER":
            kept = [w.lower() for w in kept]
        elif action == "UPPER":
            kept = [w.upper() for w in kept]
        kept = kept or [""]
        return [strings_like((len(kept),) if x.ndim == 1 else (1, len(kept)), kept)]
