"""How many synthetic images each label and site needs (pure: counts in, counts out).

Categories are groups of labels (the original problem: {1,2,3} vs {4,5,6}). Every category
is filled up to the largest category's total; inside a category the extra images go to the
rarest labels first (water-filling: the smallest labels are raised to a common level), and
inside a label to its rarest sites the same way. With `balance="labels"` every label is
filled up to the largest label instead. All totals are exact integers.

Example:
    >>> water_fill([40, 24, 16], 20)
    [0, 6, 14]
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def water_fill(counts: list[int], extra: int) -> list[int]:
    """Splits `extra` new items over groups so the smallest groups are raised first.

    The result is the integer allocation that makes the final sizes as equal as possible:
    groups end at level L or L+1 (or keep their size if already above L); ties in the last
    units go to the smaller group, then to the earlier one. Deterministic and exact.

    Args:
        counts: current sizes (>= 0).
        extra: items to add (>= 0).

    Returns:
        additions per group, summing to `extra`.
    """
    if extra < 0 or any(c < 0 for c in counts):
        raise ValueError(f"cannot fill {counts} with {extra}")
    if not counts:
        if extra:
            raise ValueError("no group to fill")
        return []
    add = [0] * len(counts)
    sizes = np.asarray(counts, dtype=np.int64)
    order = np.lexsort((np.arange(len(counts)), sizes))  # smallest first, then earlier
    remaining = extra
    # Raise the k smallest groups to the next group's size while that fits.
    k = 1
    while remaining > 0:
        level = sizes[order[0]] + add[order[0]]
        nxt = sizes[order[k]] if k < len(order) else None
        if nxt is not None and (nxt - level) * k <= remaining:
            for i in order[:k]:
                add[i] += int(nxt - level)
            remaining -= int((nxt - level) * k)
            k += 1
            continue
        per, rest = divmod(remaining, k)
        for j, i in enumerate(order[:k]):
            add[i] += per + (1 if j < rest else 0)
        remaining = 0
    return add


@dataclass
class GapPlan:
    """The synthetic images to make: label -> site -> count, with the totals behind it."""
    counts: dict[str, dict[str, int]]          # real images per label and site
    categories: list[list[str]]
    extra: dict[str, dict[str, int]]           # synthetic images per label and site
    balance: str

    def label_extra(self, label: str) -> int:
        return sum(self.extra[label].values())

    def total_after(self, label: str) -> int:
        return sum(self.counts[label].values()) + self.label_extra(label)

    def category_totals(self) -> list[tuple[int, int]]:
        """(before, after) image totals per category."""
        return [(sum(sum(self.counts[lab].values()) for lab in cat),
                 sum(self.total_after(lab) for lab in cat)) for cat in self.categories]

    def totals_lines(self, kind: str = "synthetic") -> list[str]:
        """Category totals before and after, then each label's real + new = total.

        Example:
            >>> plan.totals_lines("classic")[-1]
            'label 6: 60 real + 0 classic = 60'
        """
        lines = []
        if self.balance == "categories":
            for cat, (before, after) in zip(self.categories, self.category_totals()):
                lines.append(f"category {{{','.join(cat)}}}: {before} real -> {after} images")
        for label in self.extra:
            lines.append(f"label {label}: {sum(self.counts[label].values())} real + "
                         f"{self.label_extra(label)} {kind} = {self.total_after(label)}")
        return lines


def plan_gap(counts: dict[str, dict[str, int]], categories: list[list[str]],
             balance: str = "categories", split_sites: bool = True) -> GapPlan:
    """Plans the synthetic images per label and site.

    Args:
        counts: real images per label and site (e.g. ScanResult.counts()).
        categories: groups of labels; every label in `counts` that is in no category is left
            alone (`balance="labels"` ignores categories).
        balance: "categories" (categories reach the largest category's total) or "labels"
            (every label reaches the largest label's total).
        split_sites: split a label's extra images over its sites (rarest first); otherwise
            they all go to a pseudo-site "synthetic".

    Raises:
        ValueError: a category names a label that has no images.
    """
    totals = {lab: sum(sites.values()) for lab, sites in counts.items()}
    label_extra = {lab: 0 for lab in counts}
    if balance == "labels":
        target = max(totals.values())
        label_extra = {lab: target - n for lab, n in totals.items()}
    elif balance == "categories":
        missing = sorted({lab for cat in categories for lab in cat} - set(counts))
        if missing:
            raise ValueError(f"categories name label(s) without images: {', '.join(missing)}")
        cat_totals = [sum(totals[lab] for lab in cat) for cat in categories]
        target = max(cat_totals)
        for cat, total in zip(categories, cat_totals):
            adds = water_fill([totals[lab] for lab in cat], target - total)
            label_extra.update(zip(cat, adds))
    else:
        raise ValueError(f"balance must be 'categories' or 'labels', got {balance!r}")
    extra = {}
    for lab, n_extra in label_extra.items():
        sites = counts[lab]
        if split_sites:
            extra[lab] = dict(zip(sites, water_fill(list(sites.values()), n_extra)))
        else:
            extra[lab] = {"synthetic": n_extra}
    return GapPlan(counts, categories, extra, balance)


def source_order(records: Sequence, seed: int, label: str, site: str) -> list:
    """The real images a (label, site) cell's synthetic images start from, in the order they
    are taken: the cell's own (all of the label's when the site has none), in an order
    seeded by the run's seed, the label and the site. Stage 3's sdedit and classic_fill both
    use it, so image k of either arm varies the same real image (a paired comparison).

    Args:
        records: the label's real images (anything with a `site_id`), in scan order.
        seed: the run's `--seed`.

    Example:
        >>> [r.site_id for r in source_order(recs, 42, "1", "S2")]
        ['S2', 'S2', 'S2']
    """
    cell = [r for r in records if r.site_id == site] or list(records)
    rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8")),
                                 zlib.crc32(site.encode("utf-8"))])
    return [cell[i] for i in rng.permutation(len(cell))]
