"""Rotation + flip + the least zoom that hides the rotated corners (pure image ops).

Rotating a WxH frame by theta leaves four black corners. Scaling the rotated image by
    s = cos(theta) + max(W/H, H/W) * sin(theta)
(measured between the outermost pixel centres) is the least zoom for which every output
pixel samples inside the source, so no black is left and no more is cropped than needed.

Example:
    >>> out = rotate_zoom(img, theta=10, flip=True)   # same shape as img
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def cover_zoom(theta: float, height: int, width: int) -> float:
    """The least zoom after a rotation by `theta` degrees that leaves no empty corner.

    Args:
        theta: rotation angle in degrees (sign does not matter).
        height, width: image size in pixels.

    Example:
        >>> round(cover_zoom(5, 200, 600), 3)
        1.258
    """
    half_w = max((width - 1) / 2.0, 0.5)
    half_h = max((height - 1) / 2.0, 0.5)
    a = math.radians(abs(theta))
    ratio = max(half_w / half_h, half_h / half_w)
    # A hair more than exact so float rounding never samples outside the source.
    return (math.cos(a) + ratio * math.sin(a)) * (1.0 + 1e-9)


def rotate_zoom(image: np.ndarray, theta: float, flip: bool = False,
                zoom: float | None = None, border_mode: int = cv2.BORDER_REPLICATE
                ) -> np.ndarray:
    """Flips (optionally), rotates by `theta` degrees counter-clockwise and zooms.

    Args:
        image: HxW or HxWxC array (any dtype cv2 handles; uint8 RGB in this project).
        theta: angle in degrees.
        flip: mirror left-right before rotating.
        zoom: scale factor; default `cover_zoom(theta, H, W)` (no border left). A smaller
            explicit zoom leaves corners filled by `border_mode`.
        border_mode: cv2 border mode for samples outside the source (only reached when an
            explicit zoom is too small).

    Returns:
        An array of the same shape and dtype as `image`.
    """
    h, w = image.shape[:2]
    if zoom is None:
        zoom = cover_zoom(theta, h, w)
    if theta == 0 and zoom == 1:
        return np.ascontiguousarray(image[:, ::-1] if flip else image)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(theta), float(zoom))
    if flip:
        # Mirror inside the same warp (x -> w-1-x before rotating): no extra pass or copy.
        matrix = matrix @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=border_mode)
