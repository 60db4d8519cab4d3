"""The named regions of an image a mask may lie in, as fractions of its height and width
(pure, no project imports: config.py checks `--mask_region` and its area against these, and
`inpainting.masks` draws the masks).

Example:
    >>> REGIONS["lower_third"]
    (0.6666666666666666, 1.0, 0.0, 1.0)
    >>> region_share("center")
    0.25
"""
from __future__ import annotations

# (top, bottom, left, right) as fractions of the image height / width.
REGIONS = {
    "all": (0.0, 1.0, 0.0, 1.0),
    "top": (0.0, 0.5, 0.0, 1.0), "bottom": (0.5, 1.0, 0.0, 1.0),
    "left": (0.0, 1.0, 0.0, 0.5), "right": (0.0, 1.0, 0.5, 1.0),
    "upper_third": (0.0, 1 / 3, 0.0, 1.0), "middle_third": (1 / 3, 2 / 3, 0.0, 1.0),
    "lower_third": (2 / 3, 1.0, 0.0, 1.0),
    "left_third": (0.0, 1.0, 0.0, 1 / 3), "right_third": (0.0, 1.0, 2 / 3, 1.0),
    "center": (0.25, 0.75, 0.25, 0.75),
}


def region_share(region: str) -> float:
    """The share of an image a named region covers.

    Args:
        region: a key of `REGIONS`.

    Example:
        >>> region_share("center")
        0.25
    """
    t, b, left, r = REGIONS[region]
    return (b - t) * (r - left)
