"""Many / medium / few-shot accuracy, the usual long-tail breakdown (pure, no Keras).

A label's group follows its number of real training images. Two splits:
- `absolute` (the literature's, e.g. Liu et al. 2019 on ImageNet-LT): many > 100 training
  images, few < 20, medium in between (thresholds are parameters);
- `relative`: thirds of the labels ranked by count (shares are parameters). Needed where the
  absolute split leaves a group empty: Fashion-MNIST-LT's rarest class has 60 images at
  imbalance 100 and 600 at imbalance 10, so it has no few-shot label at all.
A group's accuracy is the mean per-class accuracy (recall) over its labels that have test
images; NaN for an empty group.

Example:
    >>> counts = {"a": 500, "b": 50, "c": 5}
    >>> shot_accuracy(["a", "a", "b", "c"], ["a", "b", "b", "a"], counts)
    {'many': 0.5, 'medium': 1.0, 'few': 0.0}
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

GROUPS = ("many", "medium", "few")
SPLITS = ("absolute", "relative")
MANY_ABOVE = 100
FEW_BELOW = 20
SHARES = (1 / 3, 1 / 3)


def absolute_groups(train_counts: Mapping[str, int], many_above: int = MANY_ABOVE,
                    few_below: int = FEW_BELOW) -> dict[str, str]:
    """{label: group}: many > many_above training images, few < few_below, else medium.

    Example:
        >>> absolute_groups({"a": 101, "b": 100, "c": 20, "d": 19})
        {'a': 'many', 'b': 'medium', 'c': 'medium', 'd': 'few'}
    """
    if few_below > many_above + 1:
        raise ValueError(f"few_below ({few_below}) must not exceed many_above + 1 "
                         f"({many_above + 1})")
    return {lab: "many" if n > many_above else "few" if n < few_below else "medium"
            for lab, n in train_counts.items()}


def _extremes(counts: Mapping[str, int], k: int, most: bool) -> set[str]:
    # The k labels with the most (or fewest) images and every label tied with the k-th:
    # labels with equal counts never land in different groups.
    if k <= 0 or not counts:
        return set()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1] if most else kv[1], kv[0]))
    limit = ranked[min(k, len(ranked)) - 1][1]
    return {lab for lab, n in ranked if (n >= limit if most else n <= limit)}


def relative_groups(train_counts: Mapping[str, int],
                    shares: tuple[float, float] = SHARES) -> dict[str, str]:
    """{label: group}: the round(shares[0] * C) labels with the most training images are
    many, the round(shares[1] * C) with the fewest are few (labels tied at a boundary join
    that group; few is taken first), the rest medium.

    Example:
        >>> relative_groups({"a": 900, "b": 300, "c": 100, "d": 30, "e": 9, "f": 3})
        {'a': 'many', 'b': 'many', 'c': 'medium', 'd': 'medium', 'e': 'few', 'f': 'few'}
    """
    many_share, few_share = shares
    if min(shares) < 0 or many_share + few_share > 1:
        raise ValueError(f"shares must be >= 0 and sum to at most 1, got {shares}")
    c = len(train_counts)
    few = _extremes(train_counts, round(few_share * c), most=False)
    many = _extremes({lab: n for lab, n in train_counts.items() if lab not in few},
                     round(many_share * c), most=True)
    return {lab: "few" if lab in few else "many" if lab in many else "medium"
            for lab in train_counts}


def shot_groups(train_counts: Mapping[str, int], split: str = "absolute",
                many_above: int = MANY_ABOVE, few_below: int = FEW_BELOW,
                shares: tuple[float, float] = SHARES) -> dict[str, str]:
    """{label: "many" | "medium" | "few"} by the `absolute` or `relative` split."""
    if split == "absolute":
        return absolute_groups(train_counts, many_above, few_below)
    if split == "relative":
        return relative_groups(train_counts, shares)
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def group_accuracy(labels: Sequence, predicted: Sequence, groups: Mapping[str, str]
                   ) -> dict[str, float]:
    """{group: mean per-class accuracy over its labels with test images} (NaN if none).

    Example:
        >>> group_accuracy(["a", "a", "b"], ["a", "b", "b"], {"a": "many", "b": "few"})
        {'many': 0.5, 'medium': nan, 'few': 1.0}
    """
    y_true = np.asarray([str(v) for v in labels], dtype=object)
    y_pred = np.asarray([str(v) for v in predicted], dtype=object)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    recall = {lab: float((y_pred[y_true == lab] == lab).mean())
              for lab in dict.fromkeys(y_true.tolist())}
    out = {}
    for group in GROUPS:
        values = [recall[str(lab)] for lab, g in groups.items()
                  if g == group and str(lab) in recall]
        out[group] = float(np.mean(values)) if values else math.nan
    return out


def shot_accuracy(labels: Sequence, predicted: Sequence, train_counts: Mapping[str, int],
                  split: str = "absolute", many_above: int = MANY_ABOVE,
                  few_below: int = FEW_BELOW, shares: tuple[float, float] = SHARES
                  ) -> dict[str, float]:
    """Many / medium / few-shot accuracy of one run.

    Args:
        labels, predicted: true and predicted label of each test image.
        train_counts: {label: real training images}.
        split: "absolute" (many > many_above, few < few_below) or "relative" (shares of the
            labels ranked by count, see `relative_groups`).

    Returns:
        {"many", "medium", "few": mean per-class accuracy, NaN for an empty group}.
    """
    groups = shot_groups(train_counts, split, many_above, few_below, shares)
    return group_accuracy(labels, predicted, groups)


def is_long_tailed(train_counts: Mapping[str, int], min_imbalance: float = 10.0) -> bool:
    """Whether the largest label has at least `min_imbalance` times the smallest's images
    (and there are at least 3 labels, so that three groups can exist).

    Example:
        >>> is_long_tailed({"a": 6000, "b": 600, "c": 60}), is_long_tailed({"a": 90, "b": 16})
        (True, False)
    """
    counts = [n for n in train_counts.values() if n > 0]
    return len(counts) >= 3 and max(counts) >= min_imbalance * min(counts)


def shot_rows(predictions: Mapping[tuple, object], train_counts: Mapping[str, int],
              splits: Sequence[str] = SPLITS, **thresholds) -> list[dict]:
    """One row per run, test set, split and group from per-image predictions.

    Args:
        predictions: {(set, arm, seed, ...): DataFrame with label and predicted columns}.
        train_counts: {label: real training images}.
        thresholds: many_above, few_below, shares (see `shot_accuracy`).

    Returns:
        [{set, variant, seed, split, group, labels (how many), accuracy}].
    """
    counts = {str(k): int(v) for k, v in train_counts.items()}
    groups = {s: shot_groups(counts, s, **thresholds) for s in splits}
    rows = []
    for key, df in predictions.items():
        for split in splits:
            acc = group_accuracy(df["label"].astype(str), df["predicted"].astype(str),
                                 groups[split])
            for group in GROUPS:
                rows.append({"set": key[0], "variant": key[1], "seed": key[2], "split": split,
                             "group": group,
                             "labels": sum(g == group for g in groups[split].values()),
                             "accuracy": acc[group]})
    return rows


def shot_summary(rows: Sequence[dict], arms: Sequence[str] = ()) -> list[dict]:
    """Mean ± std over seeds per (set, split, arm, group) of `shot_rows`' rows; arms in the
    order of `arms`, then any others in order of appearance.

    Example:
        >>> shot_summary([{"set": "test", "split": "absolute", "variant": "original",
        ...                "seed": s, "group": "few", "labels": 1, "accuracy": a}
        ...               for s, a in [(0, 0.5), (1, 0.7)]])[0]["mean"]
        0.6
    """
    cells: dict[tuple, list[float]] = {}
    n_labels: dict[tuple, int] = {}
    for r in rows:
        key = (r["set"], r["split"], r["variant"], r["group"])
        cells.setdefault(key, []).append(r["accuracy"])
        n_labels[key] = r["labels"]
    order = {a: i for i, a in enumerate(dict.fromkeys([*arms, *(k[2] for k in cells)]))}
    out = []
    for key in sorted(cells, key=lambda k: (k[0], SPLITS.index(k[1]) if k[1] in SPLITS
                                            else 9, order[k[2]], GROUPS.index(k[3]))):
        values = np.asarray([v for v in cells[key] if v == v], dtype=float)
        out.append({"set": key[0], "split": key[1], "variant": key[2], "group": key[3],
                    "labels": n_labels[key], "n": len(values),
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan})
    return out


def _split_text(split: str, counts: Mapping[str, int], many_above: int, few_below: int,
                shares: tuple[float, float]) -> str:
    groups = shot_groups(counts, split, many_above, few_below, shares)
    rule = (f"many > {many_above} training images, few < {few_below}" if split == "absolute"
            else f"the {shares[0]:.0%} of labels with the most training images are many, "
                 f"the {shares[1]:.0%} with the fewest few")
    by_count = sorted(counts, key=lambda lab: (-counts[lab], lab))     # head first
    named = "; ".join(f"{g}: {', '.join(lab for lab in by_count if groups[lab] == g) or 'none'}"
                      for g in GROUPS)
    return f"**{split}** split ({rule}). {named}."


def shots_markdown(summary: Sequence[dict], train_counts: Mapping[str, int],
                   many_above: int = MANY_ABOVE, few_below: int = FEW_BELOW,
                   shares: tuple[float, float] = SHARES) -> str:
    """The summary as Markdown: per test set and split, one row per arm with mean ± std
    over seeds of the many / medium / few-shot accuracy ("n/a": the group has no label)."""
    counts = {str(k): int(v) for k, v in train_counts.items()}
    cell = {(r["set"], r["split"], r["variant"], r["group"]): r for r in summary}
    lines = []
    for split in dict.fromkeys(r["split"] for r in summary):
        lines += ["", _split_text(split, counts, many_above, few_below, shares), "",
                  "| set | arm | n | many | medium | few |", "|---|---|---|---|---|---|"]
        for test_set, arm in dict.fromkeys((r["set"], r["variant"]) for r in summary
                                           if r["split"] == split):
            texts, n = [], 0
            for g in GROUPS:
                r = cell.get((test_set, split, arm, g))
                if r is None or r["mean"] != r["mean"]:
                    texts.append("n/a")
                    continue
                n = max(n, r["n"])
                texts.append(f"{r['mean']:.3f}" + ("" if r["std"] != r["std"]
                                                   else f" ± {r['std']:.3f}"))
            lines.append(f"| {test_set} | {arm} | {n} | " + " | ".join(texts) + " |")
    return "\n".join(lines).lstrip("\n")
