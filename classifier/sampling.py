"""Which images train, which validate, and in what order (pure numpy, seeded).

- `stratified_split` (from `dataset.split`): a seeded per-class hold-out for validation
  (real images only).
- `select_synthetic`: keep a real:synthetic ratio, spreading the kept synthetic images over
  the labels in proportion to what was generated (largest remainder, exact counts).
- `epoch_plan`: the sample indices of every batch of every epoch, shuffled or
  class-balanced; precomputed so a run is reproducible from its seed.

Example:
    >>> rng = np.random.default_rng(0)
    >>> tr, va = stratified_split([0, 0, 0, 1, 1, 1], 0.34, rng)
    >>> plan = epoch_plan([0, 0, 1], epochs=2, batch_size=2, rng=rng)
    >>> plan.shape
    (2, 4)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from balancing.plan import largest_remainder
# Below stage 2 and stage 4, which both hold out validation images; re-exported here.
from dataset.split import stratified_split  # noqa: F401


def select_synthetic(n_real: int, synthetic_labels: Sequence[int], ratio: float | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Positions (into `synthetic_labels`) of the synthetic images to train with.

    Args:
        n_real: real training images.
        synthetic_labels: label of each available synthetic image.
        ratio: synthetic images per real image (0.5 = one synthetic per two real);
            None keeps them all.

    Example:
        >>> select_synthetic(4, [0, 0, 0, 1], 0.5, np.random.default_rng(0)).size
        2
    """
    labels = np.asarray(synthetic_labels, dtype=int)
    if ratio is None or len(labels) == 0:
        return np.arange(len(labels))
    want = min(len(labels), int(round(ratio * n_real)))
    classes, counts = np.unique(labels, return_counts=True)
    per_class = largest_remainder(counts, want)
    keep = []
    for c, k in zip(classes, per_class):
        keep.extend(rng.choice(np.flatnonzero(labels == c), size=k, replace=False))
    return np.sort(np.asarray(keep, dtype=int))


def epoch_plan(labels: Sequence[int], epochs: int, batch_size: int, rng: np.random.Generator,
               class_balanced: bool = False, steps_per_epoch: int | None = None
               ) -> np.ndarray:
    """Sample indices for each epoch, shape (epochs, steps_per_epoch * batch_size).

    By default an epoch has ceil(N / batch_size) full batches. Shuffled: a permutation of all
    N images, topped up with random repeats to fill the last batch. Class-balanced: draws with
    replacement, each class equally likely. With `steps_per_epoch` (an equal budget for
    arms of different sizes), a shuffled epoch is consecutive permutations cut at that
    length: a larger set is seen partly, a smaller one more than once, never an image twice
    before every image once.

    Example:
        >>> p = epoch_plan([0] * 9 + [1], 1, 10, np.random.default_rng(0), class_balanced=True)
        >>> 2 <= (p == 9).sum() <= 9
        True
        >>> epoch_plan([0, 1, 1], 2, 2, np.random.default_rng(0), steps_per_epoch=5).shape
        (2, 10)
    """
    labels = np.asarray(labels, dtype=int)
    n = len(labels)
    if n == 0:
        raise ValueError("no training images")
    if steps_per_epoch is None:
        per_epoch = int(np.ceil(n / batch_size)) * batch_size
    else:
        per_epoch = int(steps_per_epoch) * batch_size
    out = np.empty((epochs, per_epoch), dtype=np.int64)
    if class_balanced:
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        p = 1.0 / (len(classes) * counts[inverse])
    for e in range(epochs):
        if class_balanced:
            out[e] = rng.choice(n, size=per_epoch, replace=True, p=p)
        elif steps_per_epoch is None:
            extra = rng.choice(n, size=per_epoch - n, replace=per_epoch - n > n)
            out[e] = np.concatenate([rng.permutation(n), extra])
        else:
            parts, left = [], per_epoch
            while left > 0:
                parts.append(rng.permutation(n)[:left])
                left -= len(parts[-1])
            out[e] = np.concatenate(parts)
    return out
