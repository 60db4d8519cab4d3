"""The maths of working at the model's size on images of any size: the crop window around
a mask, the model's inputs, and pasting the result back into the masked pixels only.

An image larger than the model is not shrunk as a whole (that would blur every pixel of
the result): a window around the mask's bounding box, grown to the model's aspect ratio and
to at least the model's size (for context), clipped to the image, is resized to the model's
size, inpainted, resized back, and blended in with the mask weights. Pixels of weight 0 keep
their exact input values.

Example:
    >>> win = crop_window((600, 800), (400, 520, 100, 300), (64, 64))
    >>> win                          # square, around the box, inside the image
    (335, 585, 75, 325)
    >>> model_in, model_mask = to_model(image, weights, win, (64, 64))
    >>> out = paste_back(image, weights, win, model_out)   # uint8, image's own size
"""
from __future__ import annotations

import numpy as np
from PIL import Image

CONTEXT = 0.25  # share of the mask's size added around it, so the model sees its setting


def bounding_box(weights: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), half-open, of the pixels with weight > 0; None if there are none."""
    ys = np.flatnonzero(np.asarray(weights).any(axis=1))
    xs = np.flatnonzero(np.asarray(weights).any(axis=0))
    if len(ys) == 0:
        return None
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def _place(center: float, size: int, limit: int) -> int:
    """Start of a span of `size` centred on `center`, shifted to lie inside [0, limit)."""
    start = int(round(center - size / 2))
    return min(max(start, 0), limit - size)


def crop_window(image_hw: tuple[int, int], bbox: tuple[int, int, int, int],
                model_hw: tuple[int, int], context: float = CONTEXT
                ) -> tuple[int, int, int, int]:
    """The window (y0, y1, x0, x1) of the image that goes to the model.

    An image no larger than the model in both sides goes whole. Otherwise the window has
    the model's aspect ratio, covers the mask's bounding box plus `context` of its size,
    is at least the model's size (no upsampling of a small crop), and is clipped to the
    image (then its aspect ratio can differ from the model's: it is resized anyway).

    Args:
        image_hw: (H, W) of the image.
        bbox: (y0, y1, x0, x1) of the mask (see `bounding_box`).
        model_hw: (h, w) the model works at.
        context: extra share of the box's size around it.
    """
    H, W = image_hw
    h, w = model_hw
    if H <= h and W <= w:
        return 0, H, 0, W
    by0, by1, bx0, bx1 = bbox
    aspect = w / h
    need_h = (by1 - by0) * (1.0 + context)
    need_w = (bx1 - bx0) * (1.0 + context)
    win_h = max(need_h, need_w / aspect, float(h))
    win_h = int(np.ceil(win_h))
    win_w = int(np.ceil(win_h * aspect))
    win_h, win_w = min(win_h, H), min(win_w, W)
    y0 = _place((by0 + by1) / 2, win_h, H)
    x0 = _place((bx0 + bx1) / 2, win_w, W)
    return y0, y0 + win_h, x0, x0 + win_w


def _resize_rgb(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BICUBIC))


def to_model(image: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int],
             model_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The model's inputs for one image.

    Args:
        image: uint8 (H, W, 3).
        weights: mask weights (H, W) in [0, 1].
        window: from `crop_window`.
        model_hw: (h, w) of the model.

    Returns:
        (float32 (h, w, 3) in [0, 1], float32 (h, w) binary mask). The binary mask covers
        every pixel of weight > 0 (a bilinear resize thresholded at > 0 only grows it), so
        the model regenerates the whole feathered band.
    """
    y0, y1, x0, x1 = window
    crop = _resize_rgb(np.ascontiguousarray(image[y0:y1, x0:x1]), model_hw)
    region = (np.asarray(weights[y0:y1, x0:x1]) > 0).astype(np.uint8) * 255
    if region.shape != tuple(model_hw):
        region = np.asarray(Image.fromarray(region).resize((model_hw[1], model_hw[0]),
                                                          Image.BILINEAR))
    return crop.astype(np.float32) / 255.0, (region > 0).astype(np.float32)


def paste_back(image: np.ndarray, weights: np.ndarray, window: tuple[int, int, int, int],
               result: np.ndarray) -> np.ndarray:
    """The model's result (float (h, w, 3) in [0, 1]) blended into a copy of the image.

    out = image * (1 - w) + result * w inside the window, rounded to uint8; every pixel of
    weight 0 is copied from `image` exactly.
    """
    y0, y1, x0, x1 = window
    outside = np.asarray(weights, np.float32).copy()
    outside[y0:y1, x0:x1] = 0
    if outside.any():
        raise ValueError("the crop window does not cover the whole mask")
    res = np.clip(np.rint(np.asarray(result, np.float32) * 255.0), 0, 255).astype(np.uint8)
    res = _resize_rgb(res, (y1 - y0, x1 - x0)).astype(np.float32)
    wts = np.asarray(weights[y0:y1, x0:x1], np.float32)[..., None]
    orig = image[y0:y1, x0:x1]
    blended = np.clip(np.rint(orig * (1.0 - wts) + res * wts), 0, 255).astype(np.uint8)
    out = image.copy()
    out[y0:y1, x0:x1] = np.where(wts > 0, blended, orig)
    return out
