"""Near-duplicate check of generated images against the real ones (memorisation).

A small diffusion model trained on a few hundred images can reproduce a training image.
Each image is reduced to a signature (a 16x16 colour thumbnail, mean removed, unit length),
and a generated image's score is its highest cosine similarity to any real image of its label:
1 means a copy up to brightness and contrast. Pixel signatures catch copies and near-copies,
not a re-posed object; they need no pretrained network and so work offline.

Example:
    >>> sims = max_similarity(signatures(generated), signatures(real))
"""
from __future__ import annotations

import numpy as np
from PIL import Image


def signature(image: np.ndarray, size: int = 16) -> np.ndarray:
    """The unit-length, mean-removed `size`x`size` colour thumbnail of a uint8 RGB image."""
    thumb = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR),
                       dtype=np.float64).ravel()
    thumb -= thumb.mean()
    norm = np.linalg.norm(thumb)
    return thumb / norm if norm > 0 else thumb


def signatures(images) -> np.ndarray:
    """Stacked signatures of an iterable of uint8 RGB images: (n, 16*16*3)."""
    rows = [signature(img) for img in images]
    return np.stack(rows) if rows else np.zeros((0, 16 * 16 * 3))


def max_similarity(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """For each generated signature, the highest cosine similarity to a real one (-1 if none)."""
    if len(real) == 0 or len(generated) == 0:
        return np.full(len(generated), -1.0)
    return (generated @ real.T).max(axis=1)
