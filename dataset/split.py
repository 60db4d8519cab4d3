"""A seeded per-label hold-out of validation items (pure numpy): stage 2 holds out images of
each label for its validation loss, stage 4 real images for choosing epochs and strengths.

Example:
    >>> train, val = stratified_split([0, 0, 0, 1, 1, 1], 0.34, np.random.default_rng(0))
    >>> len(val)
    2
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def stratified_split(labels: Sequence[int], val_fraction: float, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices per class: round(fraction * n) to validation, but at least one image
    of a class with two or more stays on each side (a class with one image only trains).

    Args:
        labels: the label of each item.
        val_fraction: the share of each label to hold out, in (0, 1).
        rng: the seeded generator that shuffles each label.

    Returns:
        (train_indices, val_indices), each sorted.

    Example:
        >>> stratified_split([0] * 10 + [1] * 2, 0.2, np.random.default_rng(1))[1].size
        3
    """
    labels = np.asarray(labels, dtype=int)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(val_fraction * len(idx)))
        k = 0 if len(idx) < 2 else min(max(k, 1), len(idx) - 1)
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.asarray(train, dtype=int)), np.sort(np.asarray(val, dtype=int))
