"""Resize (opsets 10-19) and its helpers; Upsample reuses them.

Separable: each resized axis is interpolated on its own, one after the other. For output
index ``y`` the coordinate transformation gives a source coordinate ``x`` (float64, on the
host, as in the ONNX reference), then

* nearest: ``X[clip(round(x))]`` with ``nearest_mode`` choosing the rounding;
* linear / cubic: ``sum_t w_t(x) * X[clip(base + t)]`` over a few taps around ``x``
  (``base = ceil(x) - 1``, edge values reused outside the input). ``antialias=1`` widens
  the kernel by ``1 / scale`` when downsampling and normalizes the weights;
  ``exclude_outside=1`` zeroes the taps outside the input and renormalizes.

``tf_crop_and_resize`` writes ``extrapolation_value`` where ``x`` leaves the input. Scales
give ``out = floor(in * scale)``; sizes give ``scale = out / in`` (adjusted by
``keep_aspect_ratio_policy``). The gather indices and weights are built with NumPy (they
are tiny, per axis) and moved to ``xp``; the data work is ``xp.take`` and a weighted sum.
"""

from __future__ import annotations

import math

import numpy as np

from dist_rt.errors import ShapeError, UnsupportedOpError
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def source_coords(mode, out_len, in_len, scale, roi=None):
    """Map output indices to source coordinates; returns (x, outside mask or None)."""
    y = np.arange(out_len, dtype=np.float64)
    # length_resized is the float in * scale, as in the ONNX reference (onnxruntime uses the
    # integer output length for align_corners; the two differ when in * scale is fractional)
    out_f = scale * in_len
    outside = None
    if mode == "align_corners":
        x = np.zeros(out_len) if out_f == 1 else y * (in_len - 1) / (out_f - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        start, end = roi
        x = (np.full(out_len, (end - start) * (in_len - 1) / 2) if out_f == 1
             else y * (end - start) * (in_len - 1) / (out_f - 1))
        x = x + start * (in_len - 1)
        outside = (x < 0) | (x > in_len - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_f)
        x = offset + (y + 0.5) / scale - 0.5
    elif mode == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r} is not supported")
    return x, outside


def _cubic(t, a):
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def taps(x, in_len, mode, scale, *, nearest_mode="round_prefer_floor", cubic_a=-0.75,
         antialias=False, exclude_outside=False):
    """Gather indices (out, T) into the input and their weights (out, T) for one axis."""
    base = np.ceil(x).astype(np.int64) - 1  # the tap left of x, x itself when integral
    ratio = x - base  # in (0, 1]
    if mode == "nearest":
        frac = x - np.floor(x)
        up = {"round_prefer_floor": frac > 0.5, "round_prefer_ceil": frac >= 0.5,
              "floor": np.zeros_like(x, bool), "ceil": frac > 0}.get(nearest_mode)
        if up is None:
            raise ValueError(f"nearest_mode {nearest_mode!r} is not supported")
        idx = np.floor(x).astype(np.int64) + up
        return np.clip(idx, 0, in_len - 1)[:, None], None
    s = min(scale, 1.0) if antialias else 1.0
    radius = 1 if mode == "linear" else 2
    start = int(math.floor(-radius / s) + 1)
    offsets = np.arange(start, 2 - start)
    t = (offsets[None, :] - ratio[:, None]) * s
    w = np.clip(1 - np.abs(t), 0, 1) if mode == "linear" else _cubic(t, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = base[:, None] + offsets[None, :]
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1, total)
    return np.clip(idx, 0, in_len - 1), w


def resize_axis(xp, data, axis, out_len, scale, attrs, roi=None):
    """Resize ``data`` along one axis (float data for linear/cubic)."""
    in_len = data.shape[axis]
    x, outside = source_coords(attrs["ctm"], out_len, in_len, scale, roi)
    idx, w = taps(x, in_len, attrs["mode"], scale, nearest_mode=attrs["nearest_mode"],
                  cubic_a=attrs["cubic_a"], antialias=attrs["antialias"],
                  exclude_outside=attrs["exclude_outside"])
    gathered = xp.take(data, xp.asarray(idx.reshape(-1)), axis=axis)
    shape = data.shape[:axis] + idx.shape + data.shape[axis + 1:]
    gathered = gathered.reshape(shape)
    if w is None:
        result = gathered.reshape(data.shape[:axis] + (out_len,) + data.shape[axis + 1:])
    else:
        wshape = (1,) * axis + w.shape + (1,) * (data.ndim - axis - 1)
        result = (gathered * xp.asarray(w.reshape(wshape), dtype=data.dtype)).sum(axis=axis + 1)
    if outside is not None and outside.any():
        mshape = (1,) * axis + (out_len,) + (1,) * (data.ndim - axis - 1)
        fill = xp.asarray(attrs["extrapolation_value"], dtype=result.dtype)
        result = xp.where(xp.asarray(outside.reshape(mshape)), fill, result)
    return result


def resize(xp, x, scales, sizes, axes, roi, attrs):
    """Resize ``x`` (full-rank scales or sizes over ``axes``); returns x's dtype."""
    work = x
    if attrs["mode"] != "nearest" or attrs["ctm"] == "tf_crop_and_resize":
        # weights need floats: 16-bit floats widen to float32, integers to float64
        if x.dtype not in (np.float32, np.float64):
            work = x.astype(np.float32 if x.dtype.itemsize <= 2 and x.dtype.kind != "i"
                            and x.dtype.kind != "u" else np.float64)
    for i, axis in enumerate(axes):
        scale, out_len = float(scales[i]), int(sizes[i])
        axis_roi = None if roi is None else (float(roi[i]), float(roi[i + len(axes)]))
        if out_len == x.shape[axis] and math.isclose(scale, 1.0) and \
                (axis_roi is None or axis_roi == (0.0, 1.0)):
            continue
        work = resize_axis(xp, work, axis, out_len, scale, attrs, axis_roi)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        work = xp.clip(xp.rint(work), info.min, info.max)
    return work.astype(x.dtype, copy=False)


def read_attrs(layer, opset):
    """Resize attributes with opset-dependent defaults."""
    mode = layer.attr("mode", "nearest")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic"):
        raise UnsupportedOpError(f"layer '{layer.name}' ({layer.op_type}): mode {mode!r}, "
                                 f"expected nearest, linear or cubic")
    old = layer.op_type == "Upsample" or opset < 11
    return {
        "mode": mode,
        # Upsample and Resize-10 are asymmetric with truncating nearest
        "ctm": "asymmetric" if old else layer.attr("coordinate_transformation_mode",
                                                   "half_pixel"),
        "nearest_mode": "floor" if old else layer.attr("nearest_mode", "round_prefer_floor"),
        "cubic_a": float(layer.attr("cubic_coeff_a", -0.75)),
        "antialias": bool(layer.attr("antialias", 0)) and mode != "nearest",
        "exclude_outside": bool(layer.attr("exclude_outside", 0)),
        "extrapolation_value": float(layer.attr("extrapolation_value", 0.0)),
    }


def plan_sizes(layer, shape, scales, sizes, axes):
    """Per resized axis: (scales, output sizes), following ONNX's size rules.

    Raises:
        ShapeError: Neither or both of scales/sizes, or wrong lengths.
    """
    where = f"layer '{layer.name}' ({layer.op_type}): "
    if (scales is None) == (sizes is None):
        raise ShapeError(f"{where}exactly one of scales and sizes must be given")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise ShapeError(f"{where}{'scales' if scales is not None else 'sizes'} has "
                         f"{len(given)} values, expected {len(axes)} (one per resized axis)")
    in_sizes = [shape[a] for a in axes]
    if scales is not None:
        scales = [float(s) for s in scales]
        if any(s <= 0 for s in scales):
            raise ShapeError(f"{where}scales {scales} must be positive")
        return scales, [int(math.floor(n * s)) for n, s in zip(in_sizes, scales, strict=True)]
    sizes = [int(s) for s in sizes]
    scales = [o / n for o, n in zip(sizes, in_sizes, strict=True)]
    policy = layer.attr("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        if policy not in ("not_larger", "not_smaller"):
            raise UnsupportedOpError(f"{where}keep_aspect_ratio_policy {policy!r}")
        s = min(scales) if policy == "not_larger" else max(scales)
        scales = [s] * len(axes)
        sizes = [int(math.floor(s * n + 0.5)) for n in in_sizes]
    return scales, sizes


def _host(a):
    if a is None:
        return None
    return np.asarray(a.get() if hasattr(a, "get") else a)


@register_op("Resize", since_opset=10)
class Resize(Op):
    """ONNX Resize: X, roi, scales, sizes (opset 10: X, scales)."""

    shape_inputs = (1, 2, 3)

    @classmethod
    def _parts(cls, layer, inputs):
        if layer.opset < 11:
            return None, inputs[1], None
        scales, sizes = (inputs[i] if len(inputs) > i else None for i in (2, 3))
        if scales is not None and np.size(scales) == 0:
            scales = None
        if sizes is not None and np.size(sizes) == 0:
            sizes = None
        return (inputs[1] if len(inputs) > 1 else None), scales, sizes

    @classmethod
    def _axes(cls, layer, rank):
        axes = layer.attr("axes", None)
        if axes is None:
            return list(range(rank))
        return [int(a) % rank for a in axes]

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 1 if layer.opset >= 11 else 2, 4)
        x = inputs[0]
        if x.shape is None:
            return [TensorDesc(x.dtype, None)]
        roi, scales, sizes = (None if d is None else d.value
                              for d in cls._parts(layer, list(inputs)))
        axes = cls._axes(layer, len(x.shape))
        if (scales is None and sizes is None) or not all(isinstance(x.shape[a], int)
                                                         for a in axes):
            shape = list(x.shape)
            for a in axes:
                shape[a] = None
            return [TensorDesc(x.dtype, tuple(shape))]
        _, out = plan_sizes(layer, x.shape, None if scales is None else scales.reshape(-1),
                            None if sizes is None else sizes.reshape(-1), axes)
        shape = list(x.shape)
        for a, n in zip(axes, out, strict=True):
            shape[a] = n
        return [TensorDesc(x.dtype, tuple(shape))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        x = inputs[0]
        roi, scales, sizes = (_host(a) for a in cls._parts(layer, list(inputs)))
        axes = cls._axes(layer, x.ndim)
        scales, out = plan_sizes(layer, x.shape, None if scales is None else scales.reshape(-1),
                                 None if sizes is None else sizes.reshape(-1), axes)
        attrs = read_attrs(layer, layer.opset)
        roi_vals = None
        if attrs["ctm"] == "tf_crop_and_resize":
            if roi is None or roi.size != 2 * len(axes):
                raise ShapeError(f"layer '{layer.name}' (Resize): tf_crop_and_resize needs roi "
                                 f"with {2 * len(axes)} values, got "
                                 f"{None if roi is None else roi.size}")
            roi_vals = roi.reshape(-1).astype(np.float64)
        try:
            return [resize(rt.xp, x, scales, out, axes, roi_vals, attrs)]
        except ValueError as exc:
            raise UnsupportedOpError(f"layer '{layer.name}' (Resize): {exc}") from exc
