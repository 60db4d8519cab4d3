"""The pure site-balancing plan: exact counts, shortfall, determinism, fairness."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from balancing.plan import augmentation_ladder, largest_remainder, plan_label

CASES = [  # site counts, multiplier, expected after-counts
    ({"S1": 10, "S2": 3, "S3": 7}, 6, {"S1": 10, "S2": 10, "S3": 10}),
    ({"S1": 1, "S2": 1}, 1, {"S1": 1, "S2": 1}),
    ({"S1": 40, "S2": 1}, 6, {"S1": 40, "S2": 13}),          # 1 image x 12 augmentations
    ({"S1": 30, "S2": 2, "S3": 29}, 3, {"S1": 30, "S2": 14, "S3": 30}),
    ({"only": 5}, 6, {"only": 5}),
]


@pytest.mark.parametrize("counts, multiplier, after", CASES)
def test_exact_counts_and_shortfall(counts, multiplier, after):
    ladder = augmentation_ladder(5, multiplier)
    plans = plan_label(counts, ladder, seed=1, label="x")
    target = max(counts.values())
    for site, plan in plans.items():
        assert plan.n_after == after[site]
        assert plan.shortfall == target - after[site]
        assert plan.target == target
        # every (image, augmentation) pair is distinct and in range
        assert len(set(plan.assignments)) == plan.n_planned
        assert all(0 <= i < counts[site] and 0 <= a < len(ladder) for i, a in plan.assignments)


def test_round_robin_is_fair_and_mildest_first():
    plan = plan_label({"big": 50, "small": 7}, augmentation_ladder(5, 6), 0, "x")["small"]
    per_image = Counter(i for i, _ in plan.assignments)
    assert max(per_image.values()) - min(per_image.values()) <= 1
    augs = [a for _, a in plan.assignments]
    assert augs == sorted(augs)


def test_plan_is_deterministic_and_seeded():
    counts = {"S1": 20, "S2": 6}
    ladder = augmentation_ladder(5, 6)
    a = plan_label(counts, ladder, 42, "1")["S2"].assignments
    assert a == plan_label(counts, ladder, 42, "1")["S2"].assignments
    assert a != plan_label(counts, ladder, 43, "1")["S2"].assignments
    # adding a site elsewhere does not change this site's plan
    assert a == plan_label({**counts, "S3": 1}, ladder, 42, "1")["S2"].assignments


def test_ladder():
    ladder = augmentation_ladder(2.5, 3)
    assert [(a.theta, a.flip) for a in ladder] == [(2.5, False), (2.5, True), (5.0, False),
                                                   (5.0, True), (7.5, False), (7.5, True)]
    assert [a.tag for a in ladder[:2]] == ["r2p5", "r2p5f"]


@pytest.mark.parametrize("weights, total", [([1, 1, 1], 10), ([0.5, 0.3, 0.2], 7),
                                            ([3, 0, 1], 5), ([1], 0), ([2, 2], 1)])
def test_largest_remainder_is_exact(weights, total):
    parts = largest_remainder(weights, total)
    assert sum(parts) == total
    shares = np.array(weights) / np.sum(weights) * total
    assert all(abs(p - s) < 1 for p, s in zip(parts, shares))
    with pytest.raises(ValueError):
        largest_remainder([0, 0], 3)
