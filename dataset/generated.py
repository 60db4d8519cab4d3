"""The one writer of generated images and their manifest rows (stage 3, `run_diffusion.py
--runtime inference`, the OOD sets).

An image goes to its file first (atomically: a killed run leaves no half image), then its
row to the folder's manifest.csv, so a row always names an image that exists.

Example:
    >>> save_generated(out / "1" / "S1_ddim_00000_ab12.png", images[0])   # floats in [0, 1]
    >>> record_generated(out, rows)              # the whole manifest (append=True: add rows)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from dataset.images import save_rgb, to_uint8
from dataset.manifest import MANIFEST_NAME, ManifestRow, append_manifest, write_manifest


def save_generated(path: str | Path, image: np.ndarray) -> Path:
    """Writes one generated image: a model's floats in [0, 1] (rounded to 8 bits) or uint8
    pixels; the suffix picks the format (PNG: lossless)."""
    image = np.asarray(image)
    return save_rgb(path, image if image.dtype == np.uint8 else to_uint8(image))


def record_generated(out_dir: str | Path, rows: Iterable[ManifestRow],
                     append: bool = False) -> Path:
    """Writes out_dir/manifest.csv from `rows` (paths relative to out_dir), or with `append`
    adds them to it (a job that records each batch as soon as it exists)."""
    path = Path(out_dir) / MANIFEST_NAME
    if append:
        append_manifest(path, rows)
        return path
    return write_manifest(path, rows)
