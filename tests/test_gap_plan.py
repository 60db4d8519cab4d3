"""The stage 3 plan: exact totals for many imbalance shapes, rarest labels and sites first."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gap_filling.plan import plan_gap, water_fill


@pytest.mark.parametrize("counts, extra, expected", [
    ([40, 24, 16], 20, [0, 6, 14]),
    ([40, 24, 16], 250, [70, 86, 94]),
    ([5, 5, 5], 4, [2, 1, 1]),
    ([10, 0], 3, [0, 3]),
    ([3], 0, [0]),
    ([0, 0, 0], 7, [3, 2, 2]),
])
def test_water_fill_cases(counts, extra, expected):
    assert water_fill(counts, extra) == expected


def test_water_fill_properties_on_random_shapes():
    rng = np.random.default_rng(0)
    for _ in range(300):
        counts = rng.integers(0, 50, rng.integers(1, 7)).tolist()
        extra = int(rng.integers(0, 200))
        add = water_fill(counts, extra)
        assert sum(add) == extra and min(add) >= 0
        final = [c + a for c, a in zip(counts, add)]
        raised = [f for f, a in zip(final, add) if a > 0]
        # raised groups end within 1 of each other, and a group left alone is at most 1
        # below them (the smallest are raised first)
        if raised:
            assert max(raised) - min(raised) <= 1
            assert all(f >= max(raised) - 1 for f, a in zip(final, add) if a == 0)


LAYOUTS = [
    # category {1,2,3} smaller (the reference's case)
    {"1": {"S1": 20, "S2": 10}, "2": {"S1": 12, "S2": 6}, "3": {"S1": 16},
     "4": {"S1": 90}, "5": {"S1": 70}, "6": {"S1": 60}},
    # category {4,5,6} smaller (crashes the reference)
    {"1": {"S1": 90}, "2": {"S1": 50, "S2": 30}, "3": {"S1": 60},
     "4": {"S1": 5, "S2": 1}, "5": {"S1": 7}, "6": {"S1": 3, "S2": 3, "S3": 0}},
    # already balanced
    {"1": {"A": 5}, "2": {"A": 5}, "3": {"A": 5}, "4": {"A": 5}, "5": {"A": 5}, "6": {"A": 5}},
]


@pytest.mark.parametrize("counts", LAYOUTS)
def test_categories_end_exactly_equal(counts):
    cats = [["1", "2", "3"], ["4", "5", "6"]]
    plan = plan_gap(counts, cats)
    before, after = zip(*plan.category_totals())
    assert after[0] == after[1] == max(before)
    for label, sites in plan.extra.items():
        assert set(sites) == set(counts[label])
        assert sum(sites.values()) == plan.label_extra(label)
    bigger = int(np.argmax(before))
    assert all(plan.label_extra(lab) == 0 for lab in cats[bigger])


def test_balance_labels_and_three_categories():
    counts = LAYOUTS[1]
    plan = plan_gap(counts, [], balance="labels")
    assert {plan.total_after(lab) for lab in counts} == {90 + 0} | {max(
        sum(s.values()) for s in counts.values())}
    plan3 = plan_gap(counts, [["1"], ["2", "3"], ["4", "5", "6"]])
    assert len({after for _, after in plan3.category_totals()}) == 1


def test_rarest_sites_get_more_and_split_sites_off():
    plan = plan_gap({"a": {"big": 10, "small": 2}, "b": {"x": 30}}, [["a"], ["b"]])
    assert plan.extra["a"] == {"big": 5, "small": 13}
    plan = plan_gap({"a": {"big": 10, "small": 2}, "b": {"x": 30}}, [["a"], ["b"]],
                    split_sites=False)
    assert plan.extra["a"] == {"synthetic": 18}


def test_bad_categories():
    with pytest.raises(ValueError, match="without images: 9"):
        plan_gap({"1": {"S": 1}, "2": {"S": 2}}, [["1"], ["2", "9"]])
    with pytest.raises(ValueError, match="balance"):
        plan_gap({"1": {"S": 1}}, [["1"]], balance="sites")


def test_plan_is_deterministic():
    for counts in LAYOUTS:
        a = plan_gap(counts, [["1", "2", "3"], ["4", "5", "6"]])
        b = plan_gap(dict(counts), [["1", "2", "3"], ["4", "5", "6"]])
        assert a.extra == b.extra
    assert list(itertools.chain(water_fill([2, 2, 2], 2))) == [1, 1, 0]
