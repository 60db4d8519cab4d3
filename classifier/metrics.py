"""Classification metrics on one scale (fractions in [0, 1]) and paired comparisons.

Every number the classifier stage reports (per-epoch validation, final test, grid search,
comparison tables) comes from `classification_metrics`, so early stopping, model selection
and the report can never disagree about what "F1" means (the original pipeline mixed percent and
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

# evaluation_type (the original pipeline's key) -> the metric it selects; "loss" is lower-is-better.
MONITORS = {"f1": "macro_f1", "accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy",
            "loss": "loss"}
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1")


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           class_names: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, macro/weighted F1, per-class scores, confusion matrix.

    Args:
        y_true, y_pred: class indices into `class_names`.
        class_names: every class the model knows. A class absent from `y_true` has zero
            support; macro-F1 averages over the classes in `y_true` or `y_pred` (as
            scikit-learn's default does), so a class predicted but absent counts as F1 0,
            and a class neither present nor predicted is left out. Balanced accuracy is the
            mean recall over the classes in `y_true`.

    Returns:
        A JSON-able dict; all scores are fractions in [0, 1].

    Example:
        >>> classification_metrics([0, 0, 1], [0, 1, 1], ["a", "b"])["accuracy"]
        0.6666666666666666
        >>> round(classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
        ...       ["macro_f1"], 3)      # "c" is predicted once, never true: F1 0
        0.556
    """
    # why: scikit-learn is slow to import; only this step needs it
    from sklearn import metrics as skm

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {y_true.shape} "
                         f"and {y_pred.shape}")
    labels = list(range(len(class_names)))
    # Predicted-but-absent classes are errors the model made; dropping them (as this code
    # once did) inflated macro-F1, which drives model selection and the report's verdict.
    seen = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
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
            "macro_f1": float(skm.f1_score(y_true, y_pred, labels=seen or labels,
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


# Differences closer than this (relative to their size) are equal: per-seed scores are
# ratios of counts, so real differences are far larger, while b - a of equal gains differs in
# the last bits and once decided the verdict (t = 1e30 or undefined, depending on the scores).
EQUAL_TOL = 1e-9


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven | each sign has chance 1/2).

    Example:
        >>> sign_test_p(5, 0)
        0.0625
    """
    # why: scipy is slow to import; only this step needs it
    from scipy import stats
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(stats.binomtest(int(wins), n, 0.5).pvalue)


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict:
    """Compares scores `b` against baseline `a`, paired by seed (same seeds, same order).

    Descriptive only: the comparison's verdict comes from the paired bootstrap
    (`statistics.paired_verdicts`), since this test ignores the test images' share of the
    variance and jumps at zero variance (from the sign test to the t-test).

    Returns mean and std of b - a, wins/ties/losses of b (|difference| <= EQUAL_TOL is a
    tie), and a two-sided p-value, from:
    - "paired t": the paired t-test, when the differences vary;
    - "sign": the exact sign test, when every difference is the same within EQUAL_TOL (the
      t statistic is undefined there: zero variance). n equal gains give p = 2 / 2**n
      (5 seeds: 0.0625), all ties give p = 1; `t` is None and `std_diff` is 0.
    - "none": fewer than two pairs (p None).

    Example:
        >>> paired_comparison([0.5, 0.6, 0.55], [0.6, 0.65, 0.6])["wins"]
        3
        >>> paired_comparison([0.5, 0.6, 0.7], [0.525, 0.625, 0.725])["test"]
        'sign'
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    d = b - a
    tol = EQUAL_TOL * max(1.0, float(np.abs(d).max())) if len(d) else EQUAL_TOL
    wins, losses = int((d > tol).sum()), int((d < -tol).sum())
    out = {"n": int(len(d)), "mean_diff": float(d.mean()) if len(d) else math.nan,
           "std_diff": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
           "wins": wins, "ties": int(len(d)) - wins - losses, "losses": losses,
           "t": None, "p_value": None, "test": "none"}
    if len(d) < 2:
        return out
    if float(np.ptp(d)) <= tol:
        out.update(std_diff=0.0, p_value=sign_test_p(wins, losses), test="sign")
        return out
    # why: scipy is slow to import; only this step needs it
    from scipy import stats
    res = stats.ttest_rel(b, a)
    out.update(t=float(res.statistic), p_value=float(res.pvalue), test="paired t")
    return out
