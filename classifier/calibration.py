"""Temperature scaling and the DIAGen weighting of synthetic images (pure numpy).

A classifier trained on real images only scores each synthetic image; after temperature
calibration its probability p of the intended label says how convincing the image is.
DIAGen's rule at threshold t: weight 1 when p >= t, else p / t (2p at DIAGen's t = 0.5), so
dubious images still count, just less, and exactly the images below t lose weight.

Example:
    >>> t = fit_temperature(val_logits, val_labels)
    >>> p = softmax(syn_logits, t)[np.arange(n), syn_labels]
    >>> w = diagen_weights(p, threshold=0.5)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: Sequence[int], temperature: float) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    p = softmax(logits, temperature)
    idx = np.asarray(labels, dtype=int)
    return float(-np.log(np.clip(p[np.arange(len(idx)), idx], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int],
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising validation NLL (Guo et al. 2017), searched in log space.

    Args:
        logits: (N, C) validation logits of the real-only classifier.
        labels: (N,) true class indices.
        bounds: the range searched; T > 1 softens over-confident models.

    Example:
        >>> fit_temperature(np.array([[4.0, 0.0], [4.0, 0.0]]), [0, 1]) > 1
        True
    """
    # why: scipy is slow to import; only this step needs it
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) == 0:
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt))),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int], bins: int = 10) -> float:
    """ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def diagen_weights(p_true: Sequence[float], threshold: float = 0.5) -> np.ndarray:
    """DIAGen sample weights: 1 where p >= threshold, else p / threshold.

    At DIAGen's threshold 0.5 this is its rule min(2p, 1). The weight grows linearly to 1 at
    the threshold, so every threshold matters (with a fixed 2p, thresholds above 0.5 changed
    nothing) and an image has weight < 1 exactly when p < threshold; threshold 0 weights
    every image 1.

    Args:
        p_true: calibrated probability of each synthetic image's intended label (averaged
            over a few augmented views).
        threshold: the confidence from which an image counts fully, in [0, 1].

    Example:
        >>> diagen_weights([0.9, 0.25, 0.0], 0.5).tolist()
        [1.0, 0.5, 0.0]
        >>> diagen_weights([0.9, 0.4], 0.8).tolist()
        [1.0, 0.5]
    """
    p = np.asarray(p_true, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if threshold == 0:
        return np.ones_like(p)
    return np.where(p >= threshold, 1.0, p / threshold)
