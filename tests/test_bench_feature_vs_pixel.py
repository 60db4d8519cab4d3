"""The pure helpers of benchmarks/bench_feature_vs_pixel.py: the fill plan and the
extrapolation the speed table rests on."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_feature_vs_pixel import extrapolate, fill_plan, split_even  # noqa: E402


def test_fill_plan_splits_validation_then_fills_every_class_to_the_largest():
    labels = [0] * 100 + [1] * 30 + [2] * 5
    train, need = fill_plan(labels, val_fraction=0.2)
    assert len(train) == 80 + 24 + 4
    assert need == {0: 0, 1: 56, 2: 76}


def test_fill_plan_matches_the_fmnist_lt_figure_of_the_docs():
    from sample_data.fmnist_lt import longtail_counts
    labels = [c for c, n in enumerate(longtail_counts(100)) for _ in range(n)]
    train, need = fill_plan(labels)
    assert len(train) == 11913 and sum(need.values()) == 36087


def test_extrapolate_and_split_even():
    assert extrapolate(2.0, 40, 3000) == pytest.approx(150.0)
    assert extrapolate(1.0, 10, 10) == 1.0
    with pytest.raises(ValueError):
        extrapolate(1.0, 0, 10)
    assert split_even(3000, 4) == [750] * 4
    assert split_even(10, 3) == [4, 3, 3] and sum(split_even(36087, 4)) == 36087
