"""Nearest-neighbour memorisation test in a feature space (pure numpy, no files, no Keras).

A synthetic image is suspect when it lies closer to some real training image than real
held-out images do. The reference is the distribution of test-to-train nearest distances
(each real test image to its closest training image): a threshold at its 5th percentile
says "closer than 95% of genuinely new real images come". Synthetic images below it are
flagged; their share is the memorisation share.

Distances are taken between L2-normalised feature vectors, so scale does not matter:
    cosine  1 - cos(a, b), in [0, 2]
    l2      ||a/|a| - b/|b|||, in [0, 2] (= sqrt(2 * cosine))

Tiny reference sets: a percentile of fewer than `min_reference` distances (default 5) is
meaningless, so the threshold is then the smallest reference distance instead ("closer
than every real held-out image"); no reference distance at all is an error. Distances below
`COPY_TOLERANCE` are flagged whatever the threshold: they are copies up to float rounding.

Example:
    >>> idx, dist = nearest(synthetic_feats, train_feats)
    >>> ref = nearest(test_feats, train_feats)[1]
    >>> t = memorisation_threshold(ref, percentile=5.0)
    >>> flags = flag_memorised(dist, t.value)
    >>> flags.mean()            # the memorisation share
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

METRICS = ("cosine", "l2")
# Two feature vectors this close are the same image as far as float32 features can tell.
COPY_TOLERANCE = 1e-5


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); an all-zero row stays zero.

    Example:
        >>> l2_normalise(np.array([[3.0, 4.0]]))
        array([[0.6, 0.8]])
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (n, d), got shape {x.shape}")
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _distance_from_cos(cos: np.ndarray, metric: str) -> np.ndarray:
    cos = np.clip(cos, -1.0, 1.0)
    if metric == "cosine":
        return 1.0 - cos
    return np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """All distances (len(a), len(b)) between L2-normalised rows of `a` and `b`.

    Example:
        >>> pairwise_distances(np.eye(2), np.eye(2)).round(3)
        array([[0., 1.],
               [1., 0.]])
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return _distance_from_cos(l2_normalise(a) @ l2_normalise(b).T, metric)


def nearest(query: np.ndarray, reference: np.ndarray, metric: str = "cosine",
            exclude_self: bool = False, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each query row's closest reference row.

    Args:
        query, reference: feature matrices (n, d) and (m, d), same d.
        metric: "cosine" or "l2" (both on L2-normalised rows).
        exclude_self: query and reference are the same set; row i may not match itself
            (leave-one-out distances within one set).
        chunk: query rows per matrix product (bounds memory for large sets).

    Returns:
        (index into reference, distance), each of length n.

    Raises:
        ValueError: empty reference, different feature sizes, unknown metric.

    Example:
        >>> nearest(np.array([[1.0, 0.1]]), np.eye(2))
        (array([0]), array([0.00496281]))
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q, r = l2_normalise(query), l2_normalise(reference)
    if len(r) == 0 or (exclude_self and len(r) < 2):
        raise ValueError("the reference set needs at least one image (two with exclude_self)")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"feature sizes differ: {q.shape[1]} vs {r.shape[1]}")
    if exclude_self and len(q) != len(r):
        raise ValueError("exclude_self needs the query and reference to be the same set")
    index = np.zeros(len(q), dtype=np.int64)
    dist = np.zeros(len(q), dtype=np.float64)
    for start in range(0, len(q), chunk):
        cos = q[start:start + chunk] @ r.T
        if exclude_self:
            rows = np.arange(len(cos))
            cos[rows, start + rows] = -np.inf
        best = cos.argmax(axis=1)
        index[start:start + chunk] = best
        dist[start:start + chunk] = _distance_from_cos(cos[np.arange(len(cos)), best], metric)
    return index, dist


@dataclass(frozen=True)
class Threshold:
    """A memorisation threshold and how it was obtained (for tables and the report)."""
    value: float
    rule: str
    n_reference: int


def memorisation_threshold(reference_distances: Sequence[float], percentile: float = 5.0,
                           min_reference: int = 5) -> Threshold:
    """The distance below which an image counts as memorised.

    Args:
        reference_distances: test-to-train nearest distances (or leave-one-out
            train-to-train ones when no test set exists).
        percentile: of the reference distances, in [0, 100] (linear interpolation).
        min_reference: below this many distances the percentile is not estimated; the
            smallest distance is used (see the module docstring).

    Raises:
        ValueError: no reference distance, or a percentile outside [0, 100].

    Example:
        >>> memorisation_threshold([0.2, 0.3, 0.4], min_reference=5).rule
        'minimum of 3 reference distances (fewer than 5)'
    """
    d = np.asarray(reference_distances, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if len(d) == 0:
        raise ValueError("no reference distances: the threshold needs at least one real "
                         "held-out image")
    if len(d) < min_reference:
        return Threshold(float(d.min()), f"minimum of {len(d)} reference distances "
                                         f"(fewer than {min_reference})", len(d))
    return Threshold(float(np.percentile(d, percentile)),
                     f"{_ordinal(percentile)} percentile of {len(d)} reference distances", len(d))


def _ordinal(x: float) -> str:
    text = f"{x:g}"
    if not text.isdigit() or 11 <= int(text) % 100 <= 13:
        return f"{text}th"
    return text + {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")


def flag_memorised(distances: Sequence[float], threshold: float | Sequence[float],
                   copy_tolerance: float = COPY_TOLERANCE) -> np.ndarray:
    """True where a distance is below the threshold (strictly), or a copy (<= tolerance).

    `threshold` may be one number or one per distance (per-label thresholds).

    Example:
        >>> flag_memorised([0.0, 0.01, 0.2], 0.05)
        array([ True,  True, False])
    """
    d = np.asarray(distances, dtype=np.float64)
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), d.shape)
    return (d < t) | (d <= copy_tolerance)


def memorisation_share(flags: Sequence[bool]) -> float:
    """Share of flagged images; NaN for no images (nothing to judge).

    Example:
        >>> memorisation_share([True, False, False, False])
        0.25
    """
    f = np.asarray(flags, dtype=bool)
    return float(f.mean()) if len(f) else float("nan")


def label_thresholds(reference_distances: Sequence[float], reference_labels: Sequence[str],
                     labels: Sequence[str], percentile: float = 5.0, min_reference: int = 5
                     ) -> dict[str, Threshold]:
    """Per-label thresholds from the reference distances of each label's own images; a
    label with fewer than `min_reference` of them takes the threshold of all labels.

    Example:
        >>> t = label_thresholds([0.1] * 5 + [0.5], ["a"] * 5 + ["b"], ["a", "b"])
        >>> t["b"].rule.startswith("all labels")
        True
    """
    d = np.asarray(reference_distances, dtype=np.float64)
    ref_labels = np.asarray(list(reference_labels), dtype=object)
    if len(ref_labels) != len(d):
        raise ValueError("one label per reference distance is needed")
    overall = memorisation_threshold(d, percentile, min_reference)
    out = {}
    for label in labels:
        own = d[ref_labels == label]
        if len(own) >= min_reference:
            out[label] = memorisation_threshold(own, percentile, min_reference)
        else:
            out[label] = Threshold(overall.value, f"all labels' {overall.rule} (label has "
                                                  f"{len(own)} < {min_reference})",
                                   overall.n_reference)
    return out
