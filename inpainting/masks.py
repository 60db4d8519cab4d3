"""Masks as arrays: generated (box, blob, region; seeded), loaded, size-checked, feathered.

A mask is an (H, W) array; True / 1 = regenerate, False / 0 = keep. Feathered masks are
float weights in [0, 1] quantised to 1/255 steps, so that the saved 8-bit mask file is
exactly the weight that blended the result in. Pure numpy (PIL for resizing); no files
except in `load_mask`.

Example:
    >>> rng = np.random.default_rng(7)
    >>> m = generate_mask((120, 160), "box", area=0.1, region="lower_third", rng=rng)
    >>> m.shape, m[:80].any()          # the box lies in the lower third
    ((120, 160), False)
    >>> w = feather(m, sigma=3.0)      # soft edge; far pixels stay exactly 0
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dataset.images import load_rgb
# The region table lives below config.py (which checks --mask_region); region_share is
# re-exported for the callers that have always found it here.
from setting_rules.mask_regions import REGIONS, region_share  # noqa: F401

MODES = ("box", "blob", "region")
ASPECT_TOLERANCE = 0.01


class MaskError(ValueError):
    """A mask cannot be used; the message names the file and says why in one line."""


def region_box(shape: tuple[int, int], region: str) -> tuple[int, int, int, int]:
    """The pixel rectangle (y0, y1, x0, x1), half-open, of a named region of an image.

    Example:
        >>> region_box((90, 40), "lower_third")
        (60, 90, 0, 40)
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose from {', '.join(REGIONS)}")
    h, w = shape
    t, b, left, r = REGIONS[region]
    y0, y1 = int(round(t * h)), max(int(round(b * h)), int(round(t * h)) + 1)
    x0, x1 = int(round(left * w)), max(int(round(r * w)), int(round(left * w)) + 1)
    return y0, min(y1, h), x0, min(x1, w)


def box_mask(shape: tuple[int, int], area: float, rng: np.random.Generator,
             region: str = "all") -> np.ndarray:
    """A rectangle covering about `area` of the image, aspect ratio drawn in [1/2, 2],
    placed uniformly inside `region`."""
    h, w = shape
    y0, y1, x0, x1 = region_box(shape, region)
    rh, rw = y1 - y0, x1 - x0
    pixels = area * h * w
    ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # width / height
    bw = min(rw, max(1, int(round(np.sqrt(pixels * ratio)))))
    bh = min(rh, max(1, int(round(pixels / bw))))
    bw = min(rw, max(1, int(round(pixels / bh))))  # refill when the height was clipped
    top = y0 + int(rng.integers(0, rh - bh + 1))
    left = x0 + int(rng.integers(0, rw - bw + 1))
    mask = np.zeros(shape, bool)
    mask[top:top + bh, left:left + bw] = True
    return mask


def blob_mask(shape: tuple[int, int], area: float, rng: np.random.Generator,
              region: str = "all") -> np.ndarray:
    """An irregular blob of exactly round(area * H * W) pixels inside `region`: smooth noise
    plus a pull towards a random centre, thresholded at the right quantile."""
    h, w = shape
    y0, y1, x0, x1 = region_box(shape, region)
    rh, rw = y1 - y0, x1 - x0
    k = min(rh * rw, max(1, int(round(area * h * w))))
    coarse = rng.standard_normal((5, 5)).astype(np.float32)
    noise = np.asarray(Image.fromarray(coarse, mode="F").resize((rw, rh), Image.BICUBIC))
    cy, cx = rng.uniform(0.25, 0.75, 2)
    yy, xx = np.mgrid[0:rh, 0:rw]
    dist = np.hypot((yy + 0.5) / rh - cy, (xx + 0.5) / rw - cx)
    score = 0.35 * noise / (noise.std() + 1e-6) - 4.0 * dist
    flat = np.argsort(-score, axis=None, kind="stable")[:k]
    inner = np.zeros(rh * rw, bool)
    inner[flat] = True
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = inner.reshape(rh, rw)
    return mask


def region_mask(shape: tuple[int, int], region: str) -> np.ndarray:
    """The whole named region (e.g. the lower third, where a river's water is)."""
    y0, y1, x0, x1 = region_box(shape, region)
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def generate_mask(shape: tuple[int, int], mode: str, area: float, region: str,
                  rng: np.random.Generator) -> np.ndarray:
    """A new mask for one image: `mode` is box, blob or region (see those functions)."""
    if mode == "box":
        return box_mask(shape, area, rng, region)
    if mode == "blob":
        return blob_mask(shape, area, rng, region)
    if mode == "region":
        return region_mask(shape, region)
    raise ValueError(f"mask mode must be one of {MODES}, got {mode!r}")


def load_mask(path: str | Path) -> np.ndarray:
    """A mask file as a bool (H, W) array: True where the pixel is bright (> 127).

    Raises:
        dataset.images.ImageLoadError: the file cannot be read.
    """
    return load_rgb(path).max(axis=2) > 127


def fit_mask(mask: np.ndarray, shape: tuple[int, int], name: str
             ) -> tuple[np.ndarray, str | None]:
    """The mask at the image's (H, W): unchanged, or resized (nearest neighbour) when only
    the scale differs (aspect ratios within 1%).

    Returns:
        (mask, a one-line note when it was resized, else None).

    Raises:
        MaskError: the aspect ratios differ by more than 1%, or the mask is all black.

    Example:
        >>> fit_mask(np.ones((10, 20), bool), (20, 40), "m.png")[1]
        'mask m.png is 20x10 px, the image 40x20 px: resized (nearest)'
    """
    mh, mw = mask.shape
    h, w = shape
    note = None
    if (mh, mw) != (h, w):
        image_aspect, mask_aspect = w / h, mw / mh
        if abs(mask_aspect - image_aspect) > ASPECT_TOLERANCE * image_aspect:
            raise MaskError(f"mask {name} is {mw}x{mh} px but the image is {w}x{h} px: "
                            f"their aspect ratios differ by more than 1%; give a mask of the "
                            f"image's size")
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
        mask = np.asarray(resized) > 127
        note = f"mask {name} is {mw}x{mh} px, the image {w}x{h} px: resized (nearest)"
    if not mask.any():
        raise MaskError(f"mask {name} is all black: nothing to regenerate")
    return mask, note


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soft mask weights: the binary mask blurred with a Gaussian of `sigma` pixels.

    Weights are quantised to k/255 (the saved mask file is then the exact weight), so the
    band fades out within about 3 sigma and every pixel further out is exactly 0; sigma 0
    returns the binary mask as 0/1 floats. A pixel of the mask keeps a weight of at least
    1/255, so blurring never erases a small mask.
    """
    weights = np.asarray(mask, np.float32)
    if sigma > 0:
        # why: scipy is slow to import; only this step needs it
        from scipy.ndimage import gaussian_filter
        blurred = gaussian_filter(weights, sigma=float(sigma), mode="nearest", truncate=3.0)
        weights = np.where(weights > 0, np.maximum(blurred, 1.0 / 255.0), blurred)
    return quantise(weights)


def quantise(weights: np.ndarray) -> np.ndarray:
    """Weights rounded to multiples of 1/255 (what an 8-bit mask file can hold)."""
    return np.rint(np.clip(weights, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def to_uint8_mask(weights: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] as the 8-bit grey image that is written as the mask file."""
    return np.rint(np.clip(weights, 0.0, 1.0) * 255.0).astype(np.uint8)
