"""Uncertainty of a classifier comparison (pure numpy/scipy): bootstrap confidence intervals
over seeds and test images, Holm's correction, tail labels, and the verdict rule.

A comparison's scores vary with the training seed and with the test images that happened to
be drawn; a CI over seeds alone ignores the second, so the bootstrap here resamples both: each
replicate draws the test images with replacement (the same draw for every arm and seed, so
arms stay paired) and the seeds with replacement, and averages the score over the drawn seeds.
Scores come from confusion matrices, with the definitions of `classification_metrics`:
balanced accuracy = mean recall over classes present, macro-F1 over classes present or
predicted, tail recall = mean recall over the tail labels present.

The verdict rule (`paired_verdicts`): one paired bootstrap distribution of (arm - reference)
gives both the p-value and the interval; Holm corrects the p-values across the arms; each
interval is printed at the level of its arm's Holm step, and the verdict is read off it.

Example:
    >>> y = np.array([0, 0, 1, 1, 2, 2])
    >>> runs = np.array([[0, 0, 1, 1, 2, 1], [0, 1, 1, 1, 2, 2]])    # 2 seeds
    >>> boot = image_bootstrap(y, runs, n_classes=3, n_boot=500, seed=0)
    >>> means = seed_resampled_means(boot["balanced_accuracy"], seed_counts(500, 2, 0))
    >>> low, high = percentile_interval(means)
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

BOOT_METRICS = ("balanced_accuracy", "macro_f1", "tail_recall")
# Not "n/a" alone: pandas reads that back from a CSV as a missing value.
NO_VERDICT = "n/a (no bootstrap)"


def scores_from_confusion(cm: np.ndarray, tail: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """Balanced accuracy, macro-F1 and tail recall of confusion matrices.

    Args:
        cm: (..., C, C) counts, rows = true class, columns = predicted class.
        tail: class indices whose mean recall is `tail_recall` (NaN when none is present).

    Returns:
        {metric: array of the leading shape}.

    Example:
        >>> float(scores_from_confusion(np.array([[2, 0], [1, 1]]))["balanced_accuracy"])
        0.75
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / support, 0.0)
        seen = present | (predicted > 0)
        f1 = np.where(seen, 2 * tp / (support + predicted), 0.0)
        out = {"balanced_accuracy": recall.sum(-1) / present.sum(-1),
               "macro_f1": f1.sum(-1) / seen.sum(-1)}
        tail = list(tail)
        if tail:
            tail_present = present[..., tail]
            out["tail_recall"] = recall[..., tail].sum(-1) / tail_present.sum(-1)
        else:
            out["tail_recall"] = np.full(recall.shape[:-1], np.nan)
    return out


def _confusions(counts: np.ndarray, pair_index: np.ndarray, n_cells: int) -> np.ndarray:
    """(B, n_cells) confusion counts of one run under B image resamples.

    counts: (B, N) how often each test image is drawn; pair_index: (N,) true*C + predicted.
    """
    order = np.argsort(pair_index, kind="stable")
    cells, starts = np.unique(pair_index[order], return_index=True)
    out = np.zeros((counts.shape[0], n_cells), dtype=np.int64)
    # Summing the draws of the images of each cell: O(B * N), no (N x C^2) one-hot matrix.
    out[:, cells] = np.add.reduceat(counts[:, order], starts, axis=1)
    return out


def image_bootstrap(y_true: Sequence[int], y_pred_runs: np.ndarray, n_classes: int,
                    n_boot: int = 2000, seed: int = 0, tail: Sequence[int] = (),
                    chunk: int = 250) -> dict[str, np.ndarray]:
    """Scores of each run under the same `n_boot` resamples of the test images.

    Args:
        y_true: (N,) true class of each test image.
        y_pred_runs: (R, N) predictions of R runs (arms x seeds) on the same images, same order.
        n_classes: C; classes are 0..C-1.
        n_boot: resamples (each draws N images with replacement).
        seed: the resamples depend only on it and N, so two calls with the same seed and
            images draw the same images (arms bootstrapped apart stay paired).
        tail: class indices for `tail_recall`.

    Returns:
        {metric: (n_boot, R)} for BOOT_METRICS.

    Example:
        >>> image_bootstrap([0, 1], np.array([[0, 1]]), 2, n_boot=3)["macro_f1"].shape
        (3, 1)
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    runs = np.atleast_2d(np.asarray(y_pred_runs, dtype=np.int64))
    if runs.shape[1] != len(y_true):
        raise ValueError(f"predictions cover {runs.shape[1]} images, y_true {len(y_true)}")
    n = len(y_true)
    rng = np.random.default_rng(seed)
    out = {m: np.empty((n_boot, len(runs))) for m in BOOT_METRICS}
    index = y_true[None, :] * n_classes + runs
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)
        for r in range(len(runs)):
            cm = _confusions(counts, index[r], n_classes * n_classes)
            scores = scores_from_confusion(cm.reshape(b, n_classes, n_classes), tail)
            for m in BOOT_METRICS:
                out[m][lo:lo + b, r] = scores[m]
    return out


def seed_counts(n_boot: int, n_seeds: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_seeds): how often each seed is drawn in each replicate (with replacement).

    Share one matrix between two arms with the same seeds to keep them paired."""
    rng = np.random.default_rng([seed, n_seeds])
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)


def seed_resampled_means(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n_boot,) mean over the drawn seeds of `scores` (n_boot, n_seeds); NaN scores (a tail
    label missing from a resample) are left out of that replicate's mean."""
    scores = np.asarray(scores, dtype=np.float64)
    w = np.where(np.isnan(scores), 0, counts)
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(scores) * w).sum(axis=1) / w.sum(axis=1)


def crossed_resampled_means(scores: np.ndarray, gen_counts: np.ndarray,
                            seed_counts_: np.ndarray) -> np.ndarray:
    """(n_boot,) mean of `scores` (n_boot, G, S) of G generators x S classifier seeds, each
    generator drawn gen_counts[b, g] times and each seed seed_counts_[b, s] times.

    The design is crossed: generator g made the images every classifier seed of the arm
    trained on, so generators and seeds are drawn apart and a cell's weight is the product.
    G = 1 (an arm without a generator, all counts 1) gives `seed_resampled_means`. NaN
    scores (a missing run, a tail label absent from a resample) are left out.

    Example:
        >>> s = np.array([[[0.5, 0.7], [0.6, 0.8]]])        # 1 resample, 2 generators, 2 seeds
        >>> float(crossed_resampled_means(s, np.array([[2, 0]]), np.array([[1, 1]]))[0])
        0.6
    """
    scores = np.asarray(scores, dtype=np.float64)
    w = (np.asarray(gen_counts)[:, :, None] * np.asarray(seed_counts_)[:, None, :]
         ).astype(np.float64)
    w = np.where(np.isnan(scores), 0.0, w)
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(scores) * w).sum(axis=(1, 2)) / w.sum(axis=(1, 2))


def label_recalls(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, tuple[float, int]]:
    """{label: (recall, support)} of one run, for the labels present in `y_true`.

    Example:
        >>> label_recalls(["a", "a", "b"], ["a", "b", "b"])
        {'a': (0.5, 2), 'b': (1.0, 1)}
    """
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    out = {}
    for label in dict.fromkeys(y_true.tolist()):
        mask = y_true == label
        out[label] = (float((y_pred[mask] == label).mean()), int(mask.sum()))
    return out


def percentile_interval(samples: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap samples (NaN ones ignored).

    Example:
        >>> percentile_interval(np.arange(101), 0.5)
        (25.0, 75.0)
    """
    x = np.asarray(samples, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(x, [tail, 100 - tail])
    return float(low), float(high)


def holm(p_values: Sequence[float | None]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order); None/NaN stay NaN and do not count
    towards the number of tests.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    p = np.array([math.nan if v is None else float(v) for v in p_values], dtype=np.float64)
    out = np.full(len(p), math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))   # step-down, monotone
        out[k] = running
    return [round(float(v), 12) if not math.isnan(v) else math.nan for v in out]


def tail_labels(counts: Mapping[str, int], fraction: float = 0.33) -> list[str]:
    """The labels with the fewest training images: the rarest round(fraction * C) (at least
    one) and every label tied with the last of them.

    Example:
        >>> tail_labels({"a": 50, "b": 5, "c": 20, "d": 5, "e": 40, "f": 30}, 0.2)
        ['b', 'd']
    """
    if not counts:
        return []
    ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    k = min(len(ranked), max(1, round(fraction * len(ranked))))
    limit = ranked[k - 1][1]
    return [lab for lab, n in ranked if n <= limit]


def bootstrap_p(diffs: Sequence[float]) -> float:
    """Two-sided p-value of "no difference" from paired bootstrap replicates of a difference.

    p = min(1, 2 * (min(#{d <= 0}, #{d >= 0}) + 1) / (B + 1)) over the B finite replicates:
    the share of replicates on the far side of 0, doubled, with the +1 of a Monte Carlo
    p-value so that it is never 0. It moves only when a replicate crosses 0, so five equal
    +0.02 differences and the same with one of them moved by 1e-7 get the same p. NaN when
    no replicate is finite.

    Example:
        >>> bootstrap_p([0.02] * 99), bootstrap_p([-1, 1, 2, 3])
        (0.02, 0.8)
    """
    d = _finite(diffs)
    if len(d) == 0:
        return math.nan
    far = min(int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0)))
    return min(1.0, _tail_share(far + 1, len(d)))


def _finite(x: Sequence[float]) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


def _tail_share(k, n_boot: int):
    """2k / (B + 1): the one expression behind both `bootstrap_p` and `matched_interval`'s
    ranks, so that "p < a" and "the interval excludes 0" agree to the last bit."""
    return 2 * k / (n_boot + 1)


def matched_interval(diffs: Sequence[float], error: float) -> tuple[float, float]:
    """The bootstrap interval of a difference that excludes 0 exactly when
    `bootstrap_p(diffs) < error`: order statistics [d_(j), d_(B+1-j)] of the B finite
    replicates, with j the number of k in 1..B whose 2k / (B + 1) < error (a percentile
    interval at level 1 - error, without interpolation).

    Args:
        diffs: bootstrap replicates of (arm - reference).
        error: 1 - the interval's level, e.g. 0.05 for 95%.

    Returns:
        (low, high); (-inf, inf) when B is too small for that level (j = 0: then p >= error
        whatever the replicates say), (nan, nan) when no replicate is finite.

    Example:
        >>> matched_interval(np.arange(1, 100) / 100, 0.05)     # j = 2
        (0.02, 0.98)
    """
    d = np.sort(_finite(diffs))
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    j = int(np.count_nonzero(_tail_share(np.arange(1, n + 1), n) < error))
    if j == 0:
        return -math.inf, math.inf
    return float(d[j - 1]), float(d[n - j])


def holm_errors(p_values: Sequence[float | None], alpha: float = 0.05) -> list[float]:
    """The error rate of each test's Holm step: alpha / (m - i) for the test of rank i
    (0-based, by p) while Holm rejects, and the rate of the step where it stops for that test
    and every later one (NaN for a missing p; m counts the others).

    With it, an interval at level 1 - error excludes 0 exactly for the tests Holm rejects: a
    rejected test has p < its step's rate, and every test from the stop on has p >= the
    stop's rate.

    Example:
        >>> holm_errors([0.04, 0.02])       # both rejected: 0.02 < 0.05/2, 0.04 < 0.05/1
        [0.05, 0.025]
        >>> holm_errors([0.04, 0.03])       # 0.03 >= 0.05/2: Holm stops at its first step
        [0.025, 0.025]
    """
    p = np.array([math.nan if v is None else float(v) for v in p_values], dtype=np.float64)
    out = [math.nan] * len(p)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    stopped = None
    for i, k in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        rate = alpha / (m - i) if stopped is None else stopped
        out[k] = rate
        if stopped is None and not p[k] < rate:
            stopped = rate          # Holm's step-down ends here: no later test is rejected
    return out


def verdict(ci_low: float, ci_high: float) -> str:
    """'better' / 'worse' when the interval of (arm - reference) lies above / below 0, 'no
    clear difference' when it holds 0, 'n/a (no bootstrap)' when there is none (NaN).

    The interval is the Holm-matched one of `paired_verdicts`, so the verdict is Holm's test
    of the bootstrap p-values, read off the interval that is printed.

    Example:
        >>> verdict(0.02, 0.08), verdict(-0.01, 0.05), verdict(-0.05, -0.01)
        ('better', 'no clear difference', 'worse')
    """
    if ci_low != ci_low or ci_high != ci_high:
        return NO_VERDICT
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no clear difference"


def paired_verdicts(replicates: Sequence[Sequence[float] | None],
                    alpha: float = 0.05) -> list[dict]:
    """The rule of a comparison, for the arms of one test set and metric: each arm's paired
    bootstrap replicates of (arm - reference) give a two-sided p (`bootstrap_p`); Holm
    corrects them across the arms; each arm's interval is printed at the level of its Holm
    step (`holm_errors`, `matched_interval`); the verdict is read off that interval.

    So "better"/"worse" <=> the printed interval excludes 0 <=> Holm rejects at `alpha`
    (p_holm < alpha, up to the last bit of rounding). An arm without replicates (no
    bootstrap) gets NaN and the verdict 'n/a (no bootstrap)' and does not count for Holm.

    Args:
        replicates: per arm, its B bootstrap differences, or None.
        alpha: the family-wise error rate.

    Returns:
        per arm: {p_value, p_holm, ci_level, ci_low, ci_high, verdict}.

    Example:
        >>> rows = paired_verdicts([np.full(999, 0.02), np.linspace(-1, 1, 999), None])
        >>> [r["verdict"] for r in rows], rows[0]["ci_level"]
        (['better', 'no clear difference', 'n/a (no bootstrap)'], 0.975)
    """
    p = [math.nan if d is None else bootstrap_p(d) for d in replicates]
    adjusted = holm(p)
    errors = holm_errors(p, alpha)
    out = []
    for d, p_raw, p_adj, error in zip(replicates, p, adjusted, errors):
        if p_raw != p_raw:
            out.append({"p_value": math.nan, "p_holm": math.nan, "ci_level": math.nan,
                        "ci_low": math.nan, "ci_high": math.nan, "verdict": NO_VERDICT})
            continue
        low, high = matched_interval(d, error)
        out.append({"p_value": p_raw, "p_holm": p_adj, "ci_level": 1 - error,
                    "ci_low": low, "ci_high": high, "verdict": verdict(low, high)})
    return out
