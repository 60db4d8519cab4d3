"""Classification metrics on one scale (fractions in [0, 1]) and paired comparisons.

Every number the classifier stage reports (per-epoch validation, final test, grid search,
comparison tables) comes from `classification_metrics`, so early stopping, model selection
and the report can never disagree about what "F1" means (the reference mixed percent and
fraction scales).

Example:
    >>> m = classification_metrics([0, 1, 1], [0, 1, 0], ["cat", "dog"])
    >>> round(m["macro_f1"], 3)
    0.667
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

# evaluation_type (the reference's key) -> the metric it selects; "loss" is lower-is-better.
MONITORS = {"f1": "macro_f1", "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy",
            "loss": "loss"}
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro/weighted F1, per-class scores, confusion matrix.

    Args:
        y_true, y_pred: class indices into `class_names`.
        class_names: every class the model knows; classes absent from `y_true` get zero
            support (and count as 0 in macro averages only if predicted, as scikit-learn does).

    Returns:
        A JSON-able dict; all scores are fractions in [0, 1].

    Example:
        >>> classification_metrics([0, 0, 1], [0, 1, 1], ["a", "b"])["accuracy"]
        0.6666666666666666
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} "
                         f"and {y_pred.shape}")
    labels = list(range(len(class_names)))
    present = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():
        # Absent classes are expected in small test folders; the zero_division choice says
        # what they count as.
        warnings.simplefilter("ignore")
        prec, rec, f1, support = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0)
        out = {
            "n": int(len(y_true)),
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            # Mean recall over the classes present in y_true (scikit-learn's definition).
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(skm.f1_score(y_true, y_pred, labels=present or labels,
                                           average="macro", zero_division=0)),
            "weighted_f1": float(skm.f1_score(y_true, y_pred, labels=labels,
                                              average="weighted", zero_division=0)),
        }
    out["per_class"] = {name: {"precision": float(prec[i]), "recall": float(rec[i]),
                               "f1": float(f1[i]), "support": int(support[i])}
                        for i, name in enumerate(class_names)}
    out["class_names"] = list(class_names)
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def cross_entropy(logits: np.ndarray, y_true: Sequence[int]) -> float:
    """Mean softmax cross-entropy of float logits (N, C) against class indices."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(z)), np.asarray(y_true, dtype=int)].mean())


def monitor_value(metrics: dict, evaluation_type: str) -> float:
    """The number `evaluation_type` selects from a metrics dict (plus "loss")."""
    return float(metrics[MONITORS[evaluation_type]])


def higher_is_better(evaluation_type: str) -> bool:
    return evaluation_type != "loss"


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict:
    """Compares scores `b` against baseline `a`, paired by seed (same seeds, same order).

    Returns mean and std of b - a, wins/ties/losses of b, and the paired t-test p-value
    (None with fewer than two pairs or zero variance of the differences).

    Example:
        >>> paired_comparison([0.5, 0.6, 0.55], [0.6, 0.65, 0.6])["wins"]
        3
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    d = b - a
    out = {"n": int(len(d)), "mean_diff": float(d.mean()) if len(d) else math.nan,
           "std_diff": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
           "wins": int((d > 0).sum()), "ties": int((d == 0).sum()), "losses": int((d < 0).sum()),
           "t": None, "p_value": None}
    if len(d) > 1 and d.std(ddof=1) > 0:
        from scipy import stats
        res = stats.ttest_rel(b, a)
        out["t"], out["p_value"] = float(res.statistic), float(res.pvalue)
    return out
