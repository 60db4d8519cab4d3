"""Long-tail training maths (pure numpy): the logit adjustment's offsets, the class prior a
loss actually sees, soft targets for synthetic images, DA-Fusion's replacement of real
images by synthetic ones, and how many features a feature fill adds per label.

- Logit adjustment (Menon et al., ICLR 2021): train on logits + tau * log(prior), predict
  with the plain logits. The prior is the label distribution the loss sees: the weighted
  label counts of the training set, or uniform under class-balanced batches (then the
  offsets are all equal and the loss is plain cross-entropy).
- Replacement (DA-Fusion): each slot of an epoch plan that holds a real image is given, with
  probability p, to a synthetic image of the same label; the epoch keeps its size.

Example:
    >>> effective_prior([0, 0, 0, 1], num_classes=2)
    array([0.75, 0.25])
    >>> logit_offsets(np.array([0.5, 0.5]), tau=1.0).round(3)
    array([-0.693, -0.693])
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def effective_prior(labels: Sequence[int], num_classes: int,
                    weights: Sequence[float] | None = None,
                    class_balanced: bool = False) -> np.ndarray:
    """The class distribution a training loss sees: sum of sample weights per class,
    normalised; uniform over the classes present when batches are class-balanced.

    Args:
        labels: class index of each training sample.
        num_classes: C.
        weights: per-sample loss weights (default 1).
        class_balanced: batches draw each present class equally often.

    Raises:
        ValueError: no sample carries weight.

    Example:
        >>> effective_prior([0, 1, 1], 2, weights=[1.0, 0.5, 0.5])
        array([0.5, 0.5])
    """
    labels = np.asarray(labels, dtype=np.int64)
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    mass = np.bincount(labels, weights=w, minlength=num_classes).astype(np.float64)
    if class_balanced:
        mass = (mass > 0).astype(np.float64)
    if mass.sum() <= 0:
        raise ValueError("no training sample carries weight: the class prior is undefined")
    return mass / mass.sum()


def logit_offsets(prior: np.ndarray, tau: float, floor: float = 1e-12) -> np.ndarray:
    """tau * log(prior) per class: what the logit-adjusted loss adds to the logits.

    A class absent from training (prior 0) gets log(floor) rather than -inf, so the loss
    stays finite.

    Example:
        >>> logit_offsets(np.array([0.9, 0.1]), 0.0)
        array([0., 0.])
    """
    prior = np.asarray(prior, dtype=np.float64)
    return (float(tau) * np.log(np.maximum(prior, floor))).astype(np.float32)


def soft_targets(labels: Sequence[int], num_classes: int, smoothing: Sequence[float]
                 ) -> np.ndarray:
    """One-hot targets, smoothed per sample: (1 - s) * one_hot + s / C.

    Args:
        labels: class index per sample.
        num_classes: C.
        smoothing: s per sample (0 for real images, the synthetic smoothing for synthetic).

    Example:
        >>> soft_targets([1, 0], 2, [0.0, 0.2])
        array([[0. , 1. ],
               [0.9, 0.1]], dtype=float32)
    """
    labels = np.asarray(labels, dtype=np.int64)
    s = np.asarray(smoothing, dtype=np.float64)[:, None]
    one_hot = np.eye(num_classes)[labels]
    return ((1.0 - s) * one_hot + s / num_classes).astype(np.float32)


def replace_with_synthetic(plan: np.ndarray, labels: Sequence[int],
                           synthetic: Sequence[bool], probability: float,
                           rng: np.random.Generator) -> np.ndarray:
    """DA-Fusion's replacement: each slot of `plan` holding a real image is swapped, with
    `probability`, for a synthetic image of the same label drawn uniformly (a label without
    synthetic images keeps its real ones). The plan's shape, hence the epoch size, is kept.

    Args:
        plan: (epochs, slots) sample indices over real images only.
        labels, synthetic: per sample index (real and synthetic samples).
        probability: P in [0, 1].

    Example:
        >>> p = replace_with_synthetic(np.array([[0, 1]]), [0, 0, 0], [False, False, True],
        ...                            1.0, np.random.default_rng(0))
        >>> p.tolist()
        [[2, 2]]
    """
    labels = np.asarray(labels, dtype=np.int64)
    synthetic = np.asarray(synthetic, dtype=bool)
    out = np.array(plan, dtype=np.int64, copy=True)
    if probability <= 0 or not synthetic.any():
        return out
    pool = {c: np.flatnonzero(synthetic & (labels == c)) for c in np.unique(labels)}
    swap = rng.random(out.shape) < probability
    flat, flat_swap = out.reshape(-1), swap.reshape(-1)
    for c, candidates in pool.items():
        if not len(candidates):
            continue
        where = np.flatnonzero(flat_swap & (labels[flat] == c) & ~synthetic[flat])
        flat[where] = rng.choice(candidates, size=len(where), replace=True)
    return out


def fill_counts(counts: Mapping[str, int], target: int | None = None) -> dict[str, int]:
    """How many samples each label needs to reach `target` (default: the largest count).

    Example:
        >>> fill_counts({"a": 50, "b": 5, "c": 20})
        {'a': 0, 'b': 45, 'c': 30}
    """
    if not counts:
        return {}
    top = max(counts.values()) if target is None else int(target)
    return {label: max(0, top - int(n)) for label, n in counts.items()}
