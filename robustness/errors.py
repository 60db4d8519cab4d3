"""How much a model's output changed: `diff_error(original_output, augmented_output) -> [0, 1]`.

0 means the output on the corrupted image is the clean output; 1 means it is as different as
it can be. The original output is the model's own clean prediction (not the ground truth):
the question is whether the corruption changes what the model says.

Built-in errors work on whole batches (numpy arrays); a user function works on one image's
pair of outputs and is called per image (`batch_errors` handles both).

Example:
    >>> total_variation(np.array([[0.9, 0.1]]), np.array([[0.6, 0.4]]))
    array([0.3])
    >>> batch_errors("label", clean, corrupted)        # share of labels changed
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np


def _batched(fn):
    fn.batched = True
    return fn


def _as_2d(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


@_batched
def label_change(original, augmented) -> np.ndarray:
    """1 where the predicted label differs, else 0. Outputs: (N, C) scores or (N,) labels."""
    a, b = np.asarray(original), np.asarray(augmented)
    if a.ndim == 2:
        a, b = a.argmax(1), b.argmax(1)
    return (a != b).astype(np.float64)


@_batched
def total_variation(original, augmented) -> np.ndarray:
    """Total-variation distance of two probability vectors, 0.5 * sum |p - q| (in [0, 1]).
    Label outputs fall back to `label_change`."""
    a, b = _as_2d(original), _as_2d(augmented)
    if a.ndim == 1:
        return label_change(original, augmented)
    return np.clip(0.5 * np.abs(a - b).sum(1), 0.0, 1.0)


@_batched
def confidence_aware(original, augmented) -> np.ndarray:
    """1 when the label changes, else how much the confidence in the clean label moved.
    Label outputs fall back to `label_change`."""
    a, b = _as_2d(original), _as_2d(augmented)
    if a.ndim == 1:
        return label_change(original, augmented)
    top = a.argmax(1)
    rows = np.arange(len(a))
    moved = np.abs(a[rows, top] - b[rows, top])
    return np.where(top != b.argmax(1), 1.0, np.clip(moved, 0.0, 1.0))


@_batched
def mask_disagreement(original, augmented) -> np.ndarray:
    """Share of pixels whose class differs between two (N, H, W) label masks."""
    a, b = np.asarray(original), np.asarray(augmented)
    return (a != b).reshape(len(a), -1).mean(1).astype(np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (K, 4) and (M, 4) boxes given as x_min, y_min, x_max, y_max."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)
    union = area(a)[:, None] + area(b)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_error(original: dict, augmented: dict, iou: float = 0.5) -> float:
    """1 - F1 of greedily matched boxes (same label, IoU >= `iou`). Each output is a dict with
    `bboxes` (K, 4) in a corner format (pascal_voc / albumentations) and `labels` (K,)."""
    a = np.asarray(original.get("bboxes", []), dtype=np.float64).reshape(-1, 4)
    b = np.asarray(augmented.get("bboxes", []), dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 and len(b) == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return 1.0
    la = list(original.get("labels", [0] * len(a)))
    lb = list(augmented.get("labels", [0] * len(b)))
    m = _iou(a, b)
    m[np.array(la)[:, None] != np.array(lb)[None]] = 0.0
    matched = 0
    while m.size and m.max() >= iou:
        i, j = np.unravel_index(m.argmax(), m.shape)
        matched += 1
        m[i, :] = 0.0
        m[:, j] = 0.0
    return 1.0 - 2.0 * matched / (len(a) + len(b))


ERRORS: dict[str, Callable] = {"confidence": confidence_aware, "label": label_change,
                               "tv": total_variation, "mask": mask_disagreement,
                               "box": box_error}


def resolve_error(diff_error: str | Callable | None, label_format: Any = None) -> Callable:
    """A diff-error function from a name (see ERRORS) or a callable; None picks the default
    for the label format (confidence for classifiers, mask for masks, box for boxes)."""
    if diff_error is None:
        if label_format == "mask":
            diff_error = "mask"
        elif isinstance(label_format, dict) and "bbox" in label_format:
            diff_error = "box"
        else:
            diff_error = "confidence"
    if isinstance(diff_error, str):
        if diff_error not in ERRORS:
            raise ValueError(f"unknown diff error {diff_error!r}; known: {', '.join(ERRORS)}")
        return ERRORS[diff_error]
    if not callable(diff_error):
        raise ValueError(f"diff_error must be a name or a function, got {diff_error!r}")
    return diff_error


def error_fingerprint(fn: Callable) -> str:
    """A name for cache keys: the built-in's name, or a user function's name + code hash."""
    for name, builtin in ERRORS.items():
        if fn is builtin:
            return name
    code = getattr(fn, "__code__", None)
    digest = hashlib.sha256(code.co_code if code else repr(fn).encode()).hexdigest()[:12]
    return f"{getattr(fn, '__qualname__', type(fn).__name__)}:{digest}"


def batch_errors(diff_error: str | Callable, original: Sequence, augmented: Sequence
                 ) -> np.ndarray:
    """Errors (N,) between two batches of outputs, clipped to [0, 1].

    Built-in (batched) errors see whole arrays; other functions are called per image.
    """
    fn = resolve_error(diff_error)
    if getattr(fn, "batched", False) and isinstance(original, list):
        try:  # a list of equal-shaped arrays (moved masks) is a batch too
            original = np.stack([np.asarray(o) for o in original])
        except (ValueError, TypeError):
            pass
    if getattr(fn, "batched", False) and isinstance(augmented, list):
        try:
            augmented = np.stack([np.asarray(a) for a in augmented])
        except (ValueError, TypeError):
            pass
    if getattr(fn, "batched", False) and not isinstance(original, list) \
            and not isinstance(augmented, list):
        out = np.asarray(fn(original, augmented), dtype=np.float64)
    else:
        out = np.array([float(fn(o, a)) for o, a in zip(original, augmented)], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError("diff_error returned a non-finite value")
    return np.clip(out, 0.0, 1.0)
