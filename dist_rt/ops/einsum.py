"""Einsum: Einstein summation over 1..N inputs (``equation`` like ``"bij,bjk->bik"``)."""

from __future__ import annotations

from dist_rt.errors import ShapeError
from dist_rt.ops._elementwise import check_same_dtype, widen
from dist_rt.ops._op import Op, TensorDesc, broadcast_shapes, register_op


def _parse(layer, equation: str, count: int) -> tuple[list[str], str]:
    """Split ``equation`` into input terms and the output term (implicit form resolved)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != count:
        raise ShapeError(f"layer '{layer.name}' (Einsum): equation {equation!r} has "
                         f"{len(terms)} input terms, got {count} inputs")
    if not arrow:
        # Implicit output: the broadcast dims, then letters seen once, alphabetically.
        letters = "".join(terms).replace("...", "")
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        rhs = ("..." if "..." in lhs else "") + "".join(once)
    return terms, rhs


@register_op("Einsum", since_opset=12)
class Einsum(Op):
    """``Output = einsum(equation, Inputs...)`` with NumPy semantics (ellipsis broadcasts)."""

    @classmethod
    def infer(cls, layer, inputs):
        equation = layer.attr("equation", None)
        if not isinstance(equation, str):
            raise ShapeError(f"layer '{layer.name}' (Einsum): attribute equation is missing")
        check_same_dtype(layer, inputs, range(len(inputs)))
        terms, rhs = _parse(layer, equation, len(inputs))
        if any(d.shape is None for d in inputs):
            return [TensorDesc(inputs[0].dtype, None)]
        dims: dict[str, object] = {}
        ellipses = []
        for i, (term, d) in enumerate(zip(terms, inputs, strict=True)):
            letters = term.replace("...", "")
            n_ell = len(d.shape) - len(letters)
            if n_ell < 0 or (n_ell and "..." not in term):
                raise ShapeError(f"layer '{layer.name}' (Einsum): term {term!r} does not fit "
                                 f"input {i} of shape {d.shape}")
            head = term.split("...")[0] if "..." in term else term
            ellipses.append(tuple(d.shape[len(head):len(head) + n_ell]) if "..." in term
                            else ())
            spread = list(head) + ["."] * n_ell + list(term.split("...")[1] if "..." in term
                                                        else "")
            for c, size in zip(spread, d.shape, strict=True):
                if c == ".":
                    continue
                seen = dims.get(c)
                if isinstance(seen, int) and isinstance(size, int) and seen != size and 1 not in (
                        seen, size):
                    raise ShapeError(f"layer '{layer.name}' (Einsum): label {c!r} is {seen} "
                                     f"in one input and {size} in input {i}")
                if seen is None or seen == 1:
                    dims[c] = size
        ell = broadcast_shapes(layer, *ellipses)
        out = []
        for part in rhs.split("..."):
            out.append([dims[c] for c in part])
        shape = out[0] + (list(ell) + out[1] if len(out) > 1 else [])
        return [TensorDesc(inputs[0].dtype, tuple(shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        xp = rt.xp
        equation = layer.attr("equation").replace(" ", "")
        y = xp.einsum(equation, *[widen(a) for a in inputs])
        return [xp.asarray(y).astype(inputs[0].dtype, copy=False)]
