"""Pure numpy helpers of feature-space diffusion (layer 1): standardisation, per-sample
seeds, training-draw weights, a data fingerprint. No Keras, no files.

Example:
    >>> stats = FeatureStats.of(np.array([[0.0, 2.0], [2.0, 2.0]], "float32"))
    >>> stats.standardise(np.array([[1.0, 2.0]])).tolist()
    [[0.0, 0.0]]
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# A dimension that never varies (a dead ReLU unit) keeps this std, so standardising does
# not divide by zero and the generated value stays the constant.
MIN_STD = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean, std, minimum and maximum of the real training features."""
    mean: np.ndarray
    std: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, features: np.ndarray) -> "FeatureStats":
        """The statistics of (N, D) features (float64 sums, stored as float32)."""
        x = np.asarray(features, np.float64)
        std = np.maximum(x.std(axis=0), MIN_STD)
        return cls(*(a.astype(np.float32) for a in (x.mean(0), std, x.min(0), x.max(0))))

    @classmethod
    def from_lists(cls, mean, std, low, high) -> "FeatureStats":
        """From the lists a config.json holds.

        Raises:
            ValueError: the four lists are not of one length, or hold non-finite values.
        """
        arrays = [np.asarray(a, np.float32) for a in (mean, std, low, high)]
        if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays) or not all(
                np.isfinite(a).all() for a in arrays):
            raise ValueError("feature mean, std, min and max must be finite lists of one length")
        return cls(*arrays)

    def to_lists(self) -> dict[str, list[float]]:
        return {"feature_mean": self.mean.tolist(), "feature_std": self.std.tolist(),
                "feature_min": self.low.tolist(), "feature_max": self.high.tolist()}

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float32) - self.mean) / self.std).astype(np.float32)

    def unstandardise(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z, np.float32) * self.std + self.mean).astype(np.float32)

    def standardised_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of the real features in standardised units, per dimension."""
        return self.standardise(self.low[None])[0], self.standardise(self.high[None])[0]


def sample_seed(seed: int, label: str, k: int) -> int:
    """The seed of generated vector k of `label` in a run with `seed` (a uint32).

    Depends on the label's name, not its position, so a label's vectors do not change when
    other labels are asked for too.

    Example:
        >>> sample_seed(42, "cat", 0) == sample_seed(42, "cat", 0) != sample_seed(42, "cat", 1)
        True
    """
    entropy = [int(seed), zlib.crc32(label.encode("utf-8")), int(k)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def draw_weights(labels: np.ndarray, num_classes: int, balance: float) -> np.ndarray:
    """Probability of each training vector per draw: a label's share of the draws goes as
    its count ** (1 - balance), every vector equally likely within its label.

    Example:
        >>> draw_weights(np.array([0, 0, 0, 1]), 2, 1.0).round(3).tolist()
        [0.167, 0.167, 0.167, 0.5]
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be between 0 and 1, got {balance}")
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = counts[labels] ** -balance
    return w / w.sum()


def data_fingerprint(features: np.ndarray, labels: np.ndarray) -> str:
    """A short hash of the training data (values, shape and labels): whether a run folder
    was trained on these vectors."""
    h = hashlib.sha1()
    f = np.ascontiguousarray(features, np.float32)
    h.update(str(f.shape).encode())
    h.update(f.tobytes())
    h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()[:16]


def check_training_data(features, labels, class_names: Sequence[str]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (N, D), labels int64 (N,)) after checking them.

    Raises:
        ValueError: one line on the first problem (shape, non-finite values, labels out of
            range, duplicate or empty class names, too few vectors).
    """
    x = np.asarray(features)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"need one label per feature vector: {y.shape} labels for "
                         f"{x.shape[0]} vectors")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers (indices into class_names), got {y.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"features hold {int((~np.isfinite(x)).sum())} non-finite values")
    names = list(class_names)
    if not names or len(set(names)) != len(names) or any(not str(n) for n in names):
        raise ValueError(f"class_names must be distinct non-empty names, got {names}")
    if y.min() < 0 or y.max() >= len(names):
        raise ValueError(f"labels must be in 0..{len(names) - 1} (one per class name), got "
                         f"{int(y.min())}..{int(y.max())}")
    return x, y.astype(np.int64)
