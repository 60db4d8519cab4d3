"""How often a shared model sees each label's images: repeat factors that move the labels'
shares of the training batches from their image counts toward equal."""
from __future__ import annotations

from typing import Mapping

# Whole factors approximate the wanted shares; the smallest base within this relative error.
_TOLERANCE = 0.1
_MAX_BASE = 10


def label_repeats(counts: Mapping[int, int], balance: float) -> dict[int, int]:
    """Whole repeat factors per label, so that label i's share of the training images goes
    as counts[i] ** (1 - balance) (0 = as they come, 1 = every label equally often).

    A label with n images gets round(base * (n_max / n) ** balance), with the smallest base
    (1 to 10) that keeps every factor within 10% of its exact value. Whole factors keep
    every image equally likely within its label and the data a finite list that an epoch
    passes through once.

    Args:
        counts: training images per label (labels with 0 images are left out).
        balance: between 0 and 1.

    Example:
        >>> label_repeats({0: 300, 1: 60, 2: 20}, 1.0)
        {0: 1, 1: 5, 2: 15}
        >>> label_repeats({0: 44, 1: 20}, 0.5)   # exact ratio 1.48
        {0: 2, 1: 3}
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be between 0 and 1, got {balance}")
    present = {k: int(n) for k, n in counts.items() if n > 0}
    if not present:
        return {}
    top = max(present.values())
    exact = {k: (top / n) ** balance for k, n in present.items()}
    for base in range(1, _MAX_BASE + 1):
        factors = {k: max(1, round(base * x)) for k, x in exact.items()}
        if all(abs(factors[k] / (base * x) - 1) <= _TOLERANCE for k, x in exact.items()):
            break
    return factors
