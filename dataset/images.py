"""Robust image loading and atomic saving, always as 8-bit RGB numpy arrays.

Whatever a user's folder holds (EXIF-rotated phone photos, grayscale, RGBA, palette, CMYK,
16-bit PNG/TIFF), `load_rgb` returns an HxWx3 uint8 array with the orientation a viewer
shows, or raises `ImageLoadError` with a one-line reason (not an image, truncated, ...).

Example:
    >>> img = load_rgb("photos/1/S3_0001.jpg")
    >>> save_rgb("out/1/S3_0001_copy.png", img)
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dataset.atomic import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}


class ImageLoadError(OSError):
    """An image file could not be read; the message says why in one line."""


def is_image_name(path: str | Path) -> bool:
    """True when the file name has one of IMAGE_EXTENSIONS (any case)."""
    # os.path, not Path(path): called once per file of every scanned folder
    return os.path.splitext(os.path.basename(path))[1].lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale the full 0..65535 range to 0..255 rather than clip it.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 or img.mode.startswith("I;16") else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "F":
        grey = to_uint8(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image (cannot identify its format)") from None
    except OSError as err:
        raise ImageLoadError(f"{path}: corrupt or truncated image ({err})") from None


def load_rgb(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """Loads any supported image as an HxWx3 uint8 RGB array, EXIF orientation applied.

    Args:
        path: the image file.
        min_side: the caller only needs the shorter side this long (it shrinks the image
            next): a JPEG is then decoded at 1/2, 1/4 or 1/8 scale where that still leaves
            at least `min_side` pixels, which is several times faster for camera photos.
            Other formats, and None, decode at full size.

    Example:
        >>> load_rgb("photo_4000x3000.jpg", min_side=96).shape   # decoded at 1/8 scale
        (375, 500, 3)

    Raises:
        ImageLoadError: the file is missing, not an image, truncated or corrupt.
    """
    path = Path(path)
    with _open(path) as img:
        try:
            if min_side and img.format == "JPEG" and min(img.size) >= 2 * min_side:
                scale = min_side / min(img.size)
                img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no copy when upright
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageLoadError(f"{path}: corrupt or truncated image ({err})") from None
        return _to_rgb(img)


def probe_image(path: str | Path) -> tuple[int, int]:
    """Checks that an image decodes completely; returns its (width, height) as displayed.

    JPEGs are decoded at reduced scale (every byte is still read, so truncation is
    caught) which makes a validation pass over a folder several times cheaper than loading.

    Raises:
        ImageLoadError: as `load_rgb`.
    """
    path = Path(path)
    with _open(path) as img:
        size = img.size
        try:
            orientation = img.getexif().get(0x0112, 1)
            if img.format == "JPEG":
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageLoadError(f"{path}: corrupt or truncated image ({err})") from None
    if orientation in (5, 6, 7, 8):
        size = (size[1], size[0])
    return size


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (a model's output) to uint8, rounded and clipped; (H, W, 1) -> (H, W)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def save_rgb(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Writes an HxWx3 uint8 RGB array atomically; the format follows the suffix.

    Args:
        path: destination; `.jpg`/`.jpeg` are written as JPEG at `quality`, `.png` losslessly.
        image: uint8 array of shape (H, W, 3) (or (H, W) grey).
    """
    path = Path(path)
    fmt = _PIL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported image suffix {path.suffix!r}")
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected a uint8 image, got {image.dtype}")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG":
        kwargs["compress_level"] = 1  # fast; PNG stays lossless at any level
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=fmt, **kwargs)
    return path
