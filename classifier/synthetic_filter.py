"""Which synthetic images are approximately in distribution (pure numpy + scikit-learn).

DiffuLT keeps only the generated images that a feature extractor trained on the real data
finds close to the real ones. Here a synthetic image is kept when the real-only classifier
predicts its label AND its nearest real image of that label (cosine distance of the
classifier's penultimate features) is no farther than the real images of that label are from
each other: the `percentile` of their own nearest-neighbour distances. A label with a single
real image has no spread to compare with: its images are judged by the prediction alone.

Example:
    >>> keep, table = in_distribution(real_f, real_y, syn_f, syn_y, syn_pred, 95.0)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest_distance(query: np.ndarray, reference: np.ndarray, exclude_self: bool
                      ) -> np.ndarray:
    """Cosine distance of each query row to its nearest reference row (itself excluded
    when the query is the reference)."""
    # why: scikit-learn is slow to import; only this step needs it
    from sklearn.neighbors import NearestNeighbors
    k = 2 if exclude_self else 1
    nn = NearestNeighbors(n_neighbors=k).fit(_unit(reference))
    dist, _ = nn.kneighbors(_unit(query))
    # Euclidean distance of unit vectors -> cosine distance (1 - cos) = d^2 / 2.
    return dist[:, k - 1] ** 2 / 2.0


def in_distribution(real_features: np.ndarray, real_labels: Sequence[int],
                    syn_features: np.ndarray, syn_labels: Sequence[int],
                    syn_predicted: Sequence[int], percentile: float = 95.0
                    ) -> tuple[np.ndarray, list[dict]]:
    """Which synthetic images to keep, and why each was kept or dropped.

    Args:
        real_features, real_labels: the real training images' features and class indices.
        syn_features, syn_labels: the synthetic images' features and class indices.
        syn_predicted: the real-only classifier's prediction per synthetic image.
        percentile: of the real-to-real nearest-neighbour distances of a label.

    Returns:
        (keep: bool array, one row per synthetic image: label, predicted, distance,
        threshold, kept, reason).

    Example:
        >>> real = np.array([[1, 0], [1, .1], [0, 1], [.1, 1]])
        >>> keep, _ = in_distribution(real, [0, 0, 1, 1], np.array([[1, .05], [1, 1]]),
        ...                           [0, 1], [0, 1])
        >>> keep.tolist()
        [True, False]
    """
    real_labels = np.asarray(real_labels, dtype=np.int64)
    syn_labels = np.asarray(syn_labels, dtype=np.int64)
    syn_predicted = np.asarray(syn_predicted, dtype=np.int64)
    distance = np.full(len(syn_labels), np.nan)
    threshold = np.full(len(syn_labels), np.inf)
    for c in np.unique(syn_labels):
        mine = syn_labels == c
        real = real_features[real_labels == c]
        if len(real) == 0:
            continue
        distance[mine] = _nearest_distance(syn_features[mine], real, exclude_self=False)
        if len(real) > 1:
            spread = _nearest_distance(real, real, exclude_self=True)
            threshold[mine] = float(np.percentile(spread, percentile))
    right = syn_predicted == syn_labels
    near = ~(distance > threshold)           # NaN (no real image of the label) counts as far
    near &= ~np.isnan(distance)
    keep = right & near
    rows = []
    for i in range(len(syn_labels)):
        reason = ("kept" if keep[i] else
                  "predicted as another label" if not right[i] else
                  "farther from its label's real images than they are from each other")
        rows.append({"label": int(syn_labels[i]), "predicted": int(syn_predicted[i]),
                     "distance": float(distance[i]), "threshold": float(threshold[i]),
                     "kept": bool(keep[i]), "reason": reason})
    return keep, rows
