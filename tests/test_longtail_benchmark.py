"""Fashion-MNIST-LT's report pieces without training: many / medium / few-shot groups and
accuracies, and the long-tail benchmark's pure helpers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from classifier import shot_groups as sg

FMNIST_LT_100 = dict(zip("0123456789", [6000, 3597, 2156, 1293, 775, 465, 278, 167, 100, 60]))
FMNIST_LT_10 = dict(zip("0123456789", [6000, 4646, 3597, 2785, 2156, 1670, 1293, 1001, 775,
                                       600]))


def test_absolute_split_uses_the_usual_thresholds():
    groups = sg.absolute_groups({"a": 101, "b": 100, "c": 20, "d": 19, "e": 0})
    assert groups == {"a": "many", "b": "medium", "c": "medium", "d": "few", "e": "few"}
    assert sg.absolute_groups({"a": 50, "b": 5}, many_above=40, few_below=6) == {
        "a": "many", "b": "few"}
    # Fashion-MNIST-LT: no few-shot label at either imbalance factor.
    assert set(sg.absolute_groups(FMNIST_LT_100).values()) == {"many", "medium"}
    assert set(sg.absolute_groups(FMNIST_LT_10).values()) == {"many"}
    with pytest.raises(ValueError):
        sg.absolute_groups({"a": 1}, many_above=10, few_below=20)


def test_relative_split_is_thirds_by_count_and_keeps_ties_together():
    for counts in (FMNIST_LT_100, FMNIST_LT_10):
        groups = sg.relative_groups(counts)
        assert [groups[c] for c in "0123456789"] == ["many"] * 3 + ["medium"] * 4 + ["few"] * 3
    tied = sg.relative_groups({"a": 9, "b": 5, "c": 5, "d": 1, "e": 1, "f": 1})
    assert tied == {"a": "many", "b": "many", "c": "many", "d": "few", "e": "few", "f": "few"}
    assert sg.relative_groups({"a": 9, "b": 5, "c": 1}, shares=(0.0, 0.34)) == {
        "a": "medium", "b": "medium", "c": "few"}
    with pytest.raises(ValueError):
        sg.relative_groups({"a": 1}, shares=(0.7, 0.5))
    with pytest.raises(ValueError, match="split"):
        sg.shot_groups({"a": 1}, split="median")


def test_shot_accuracy_is_the_mean_per_class_accuracy_of_each_group():
    counts = {"head": 500, "h2": 300, "mid": 50, "tail": 5, "unseen": 3}
    labels = ["head"] * 4 + ["h2"] * 2 + ["mid"] * 5 + ["tail"] * 2
    predicted = ["head"] * 3 + ["mid"] + ["h2", "h2"] + ["mid"] * 5 + ["tail", "head"]
    acc = sg.shot_accuracy(labels, predicted, counts)
    # many: mean of 3/4 and 2/2 (per class, not per image); unseen has no test image.
    assert acc == {"many": pytest.approx(0.875), "medium": 1.0, "few": 0.5}
    rel = sg.shot_accuracy(labels, predicted, counts, split="relative", shares=(0.2, 0.2))
    assert rel["many"] == 0.75 and rel["few"] != rel["few"]          # only 'unseen': NaN
    assert math.isnan(sg.shot_accuracy(["a"], ["a"], {"a": 500})["few"])
    with pytest.raises(ValueError):
        sg.group_accuracy(["a", "b"], ["a"], {"a": "many"})


def test_is_long_tailed():
    assert sg.is_long_tailed(FMNIST_LT_10) and sg.is_long_tailed(FMNIST_LT_100)
    assert not sg.is_long_tailed({"1": 40, "2": 24, "3": 16, "4": 90, "5": 70, "6": 60})
    assert not sg.is_long_tailed({"a": 100, "b": 1})          # two labels: no three groups
    assert sg.is_long_tailed({"a": 300, "b": 200, "c": 20}, min_imbalance=15)


def test_shot_rows_summary_and_markdown():
    counts = {"a": 500, "b": 50, "c": 5}
    preds = {("test", arm, seed): pd.DataFrame({"label": ["a", "b", "c", "c"],
                                                "predicted": ["a", "b", p, "c"]})
             for arm, p_by_seed in (("original", "a"), ("crt", "c")) for seed, p in
             zip((0, 1), (p_by_seed, "c"))}
    rows = sg.shot_rows(preds, counts)
    assert len(rows) == 4 * 2 * 3
    summary = sg.shot_summary(rows, arms=["crt", "original"])
    few = {(r["split"], r["variant"]): r for r in summary if r["group"] == "few"}
    assert few[("absolute", "original")]["mean"] == pytest.approx(0.75)
    assert few[("absolute", "original")]["std"] == pytest.approx(math.sqrt(0.125))
    assert few[("absolute", "crt")]["mean"] == 1.0 and few[("absolute", "crt")]["n"] == 2
    assert [r["variant"] for r in summary][:3] == ["crt"] * 3           # the arms' order
    text = sg.shots_markdown(summary, counts)
    assert "| test | original | 2 | 1.000 ± 0.000 | 1.000 ± 0.000 | 0.750 ± 0.354 |" in text
    assert "**absolute** split (many > 100 training images, few < 20). many: a; medium: b; " \
           "few: c." in text and "**relative** split" in text
    # An empty group reads n/a.
    text = sg.shots_markdown(sg.shot_summary(sg.shot_rows(preds, {"a": 500, "b": 50, "c": 50},
                                                          splits=["absolute"])),
                             {"a": 500, "b": 50, "c": 50})
    assert "| n/a |" in text and "few: none" in text


def _bench():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_longtail
    return bench_longtail


def test_benchmark_settings_are_a_valid_comparison(tmp_path):
    from cli.flags import config_from_dict, validate_config
    from config import CompareConfig
    bench = _bench()
    arms = bench.default_arms()
    assert arms[:3] == ["original", "rebalanced", "classic"]
    for quick in (False, True):
        cfg = config_from_dict(CompareConfig, bench.compare_settings(
            tmp_path / "lt", tmp_path / "out", arms, [0, 1], quick, batch_size=64))
        validate_config(cfg)
        assert cfg.arms() == arms and cfg.train_dir == str(tmp_path / "lt" / "train")
        assert (cfg.backbone, cfg.input_shape, cfg.batch_size) == ("small_cnn", 28, 64)
        assert cfg.evaluation_type == "balanced_accuracy"
        assert cfg.number_epochs == (1 if quick else bench.CLASSIFIER["number_epochs"])


def test_benchmark_times_per_arm_and_seed(tmp_path):
    bench = _bench()
    rows = [{"variant": a, "seed": s, "set": st, "seconds": t}
            for a, s, t in [("original", 0, 61.2), ("original", 1, 70.0), ("crt", 0, 3.4)]
            for st in ("val", "test")]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    assert bench.run_times(tmp_path / "runs.csv") == [
        {"arm": "original", "seed 0": "61", "seed 1": "70", "total s": "131"},
        {"arm": "crt", "seed 0": "3", "seed 1": "-", "total s": "3"}]


def test_compare_writes_shots_only_for_long_tailed_data(tmp_path):
    from classifier.comparison import shots_section
    preds = {("test", "original", 0): pd.DataFrame({"label": ["a", "b", "c"],
                                                    "predicted": ["a", "b", "a"]})}
    text = shots_section(tmp_path, preds, {"a": 500, "b": 50, "c": 5}, ["original"])
    assert text.startswith("\n## Many / medium / few-shot accuracy")
    assert "| test | original | 1 | 1.000 | 1.000 | 0.000 |" in text
    shots = pd.read_csv(tmp_path / "shots.csv")
    assert set(shots["split"]) == {"absolute", "relative"} and len(shots) == 6
    (tmp_path / "shots.csv").unlink()
    assert shots_section(tmp_path, preds, {"a": 90, "b": 50, "c": 16}, ["original"]) == ""
    assert not (tmp_path / "shots.csv").exists()
