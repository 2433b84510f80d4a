"""NonMaxSuppression: greedy per-class box selection by score and IoU.

Runs on host NumPy: the greedy loop is sequential and data-dependent, and the op is rare
(detection post-processing), so a device version would not pay off.
"""

from __future__ import annotations

import numpy as np

from dist_rt.ops._extra_util import fail, host, scalar
from dist_rt.ops._op import Op, TensorDesc, check_inputs, register_op


def _corners(boxes: np.ndarray, center: bool) -> np.ndarray:
    if center:
        xc, yc, w, h = boxes.T
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)
    y1, x1, y2, x2 = boxes.T
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2),
                     np.maximum(x1, x2)], axis=1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top = np.maximum(box[0], others[:, 0])
    left = np.maximum(box[1], others[:, 1])
    bottom = np.minimum(box[2], others[:, 2])
    right = np.minimum(box[3], others[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


@register_op("NonMaxSuppression", since_opset=10)
class NonMaxSuppression(Op):
    """boxes (B, S, 4), scores (B, C, S), max_output_boxes_per_class, iou_threshold,
    score_threshold -> selected (K, 3) int64 rows ``[batch, class, box]``."""

    @classmethod
    def infer(cls, layer, inputs):
        check_inputs(layer, inputs, 2, 5)
        return [TensorDesc(np.dtype(np.int64), (None, 3))]

    @classmethod
    def _run(cls, layer, inputs, rt):
        inputs = list(inputs) + [None] * (5 - len(inputs))
        boxes, scores = host(inputs[0]).astype(np.float64), host(inputs[1])
        limit = int(scalar(inputs[2], 0))
        iou_max = float(scalar(inputs[3], 0.0))
        score_min = scalar(inputs[4], None)
        if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or \
                scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
            raise fail(layer, f"boxes {boxes.shape} and scores {scores.shape} must be "
                              f"(B, S, 4) and (B, C, S)")
        center = bool(layer.attr("center_point_box", 0))
        selected = []
        for b in range(boxes.shape[0]):
            corners = _corners(boxes[b], center)
            for c in range(scores.shape[1]):
                s = scores[b, c]
                order = np.argsort(-s, kind="stable")
                if score_min is not None:
                    order = order[s[order] > score_min]
                keep: list[int] = []
                for i in order:
                    if len(keep) >= limit:
                        break
                    if not keep or np.all(_iou(corners[i], corners[keep]) <= iou_max):
                        keep.append(int(i))
                selected += [[b, c, i] for i in keep]
        out = np.array(selected, dtype=np.int64).reshape(-1, 3)
        return [rt.xp.asarray(out)]
