"""The comparison's statistics and planning, without training: bootstrap CIs over seeds and
test images, Holm, tail labels, the verdict rule, arm names, the strongest non-generative
reference, equal step budgets and the jobs of every arm."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from classifier import arms, sampling, statistics
from classifier.metrics import classification_metrics
from cli.flags import ConfigError, parse_config
from config import CompareConfig
from conftest import save_image
from dataset.manifest import ManifestRow, write_manifest


def test_confusion_scores_match_classification_metrics():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 5, 40)
        p = np.where(rng.random(40) < 0.6, y, rng.integers(0, 6, 40))   # 6: never true
        names = list("abcdef")
        m = classification_metrics(y, p, names)
        cm = np.asarray(m["confusion_matrix"])
        s = statistics.scores_from_confusion(cm, tail=[0, 3])
        assert s["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"])
        assert s["macro_f1"] == pytest.approx(m["macro_f1"])
        tail = [m["per_class"][c]["recall"] for c in "ad" if m["per_class"][c]["support"]]
        assert s["tail_recall"] == pytest.approx(np.mean(tail))


def test_image_bootstrap_is_seeded_paired_and_centred():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30)
    runs = np.stack([np.where(rng.random(90) < acc, y, (y + 1) % 3)
                     for acc in (0.6, 0.65, 0.7, 0.9, 0.92, 0.95)])
    boot = statistics.image_bootstrap(y, runs, 3, n_boot=400, seed=5, tail=[2])
    again = statistics.image_bootstrap(y, runs, 3, n_boot=400, seed=5, tail=[2], chunk=7)
    assert np.array_equal(boot["macro_f1"], again["macro_f1"])          # seeded, chunk-free
    assert boot["balanced_accuracy"].shape == (400, 6)
    # Two identical runs get identical resampled scores: a paired difference of exactly 0.
    twin = statistics.image_bootstrap(y, runs[[0, 0]], 3, n_boot=50, seed=5)
    assert np.array_equal(twin["macro_f1"][:, 0], twin["macro_f1"][:, 1])
    counts = statistics.seed_counts(400, 3, 0)
    assert (counts.sum(1) == 3).all()
    weak = statistics.seed_resampled_means(boot["balanced_accuracy"][:, :3], counts)
    strong = statistics.seed_resampled_means(boot["balanced_accuracy"][:, 3:], counts)
    point = np.mean([statistics.scores_from_confusion(
        np.asarray(classification_metrics(y, r, "abc")["confusion_matrix"]))
        ["balanced_accuracy"] for r in runs[:3]])
    lo, hi = statistics.percentile_interval(weak)
    assert lo < point < hi and hi - lo < 0.25
    d_lo, d_hi = statistics.percentile_interval(strong - weak)
    assert 0 < d_lo < d_hi
    # The seed resampling widens the CI compared to images alone.
    only_images = statistics.percentile_interval(boot["balanced_accuracy"][:, :3].mean(1))
    assert hi - lo > only_images[1] - only_images[0]


def test_seed_means_skip_a_tail_label_missing_from_a_resample():
    scores = np.array([[0.5, np.nan], [np.nan, np.nan]])
    out = statistics.seed_resampled_means(scores, np.array([[1, 1], [2, 0]]))
    assert out[0] == 0.5 and math.isnan(out[1])


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, None, 0.2]
    assert statistics.holm(p)[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert math.isnan(statistics.holm(p)[3]) and statistics.holm(p)[4] == pytest.approx(0.2)
    assert statistics.holm([0.9, 0.8]) == [1.0, 1.0]                  # capped at 1
    assert statistics.holm([0.02, 0.011]) == [0.022, 0.022]           # never below a smaller p
    assert statistics.holm([]) == []


def test_tail_labels_are_the_rarest_with_ties():
    counts = {"a": 50, "b": 5, "c": 20, "d": 5, "e": 40, "f": 30}
    assert statistics.tail_labels(counts, 0.33) == ["b", "d"]
    assert statistics.tail_labels(counts, 0.5) == ["b", "d", "c"]
    assert statistics.tail_labels({"x": 3}, 0.1) == ["x"]


def test_verdict_is_read_off_the_interval():
    assert statistics.verdict(0.01, 0.05) == "better"
    assert statistics.verdict(-0.05, -0.01) == "worse"
    assert statistics.verdict(-0.01, 0.05) == "no clear difference"
    assert statistics.verdict(0.0, 0.05) == "no clear difference"        # 0 is inside
    assert statistics.verdict(-math.inf, math.inf) == "no clear difference"
    assert statistics.verdict(math.nan, math.nan) == statistics.NO_VERDICT


def test_bootstrap_p_counts_the_replicates_beyond_zero_with_one_added():
    assert statistics.bootstrap_p(np.full(999, 0.02)) == pytest.approx(2 / 1000)
    assert statistics.bootstrap_p(np.full(999, -0.02)) == pytest.approx(2 / 1000)
    assert statistics.bootstrap_p(np.zeros(99)) == 1.0                 # all ties: no effect
    d = np.r_[np.full(10, -1.0), np.full(89, 1.0)]
    assert statistics.bootstrap_p(d) == pytest.approx(2 * 11 / 100)
    assert statistics.bootstrap_p(np.r_[d, np.nan]) == statistics.bootstrap_p(d)
    assert math.isnan(statistics.bootstrap_p([np.nan]))


def test_interval_excludes_zero_exactly_when_p_is_below_its_error_rate():
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(5, 400))
        d = rng.normal(rng.normal(0, 1), 1, n).round(int(rng.integers(0, 3)))  # ties at 0
        for error in (0.05, 0.05 / 2, 0.05 / 3, 0.05 / 7, 0.2, 2 / (n + 1)):
            low, high = statistics.matched_interval(d, error)
            assert (low > 0 or high < 0) == (statistics.bootstrap_p(d) < error)
            assert low <= high
    # Too few replicates for the level: no interval can exclude 0, and it says so.
    assert statistics.matched_interval(np.ones(30), 0.05) == (-math.inf, math.inf)
    assert statistics.matched_interval(np.ones(40), 0.05) == (1.0, 1.0)


def test_holm_errors_follow_the_step_down():
    p = [0.001, 0.3, 0.02, None, 0.012]
    # Ranks: 0.001 (0.05/4), 0.012 (0.05/3), 0.02 (0.05/2 = 0.025), 0.3 (0.05: kept).
    assert statistics.holm_errors(p) == pytest.approx([0.0125, 0.05, 0.025, math.nan,
                                                       0.05 / 3], nan_ok=True)
    # The first kept test stops Holm: every later one keeps that step's rate.
    assert statistics.holm_errors([0.04, 0.03, 0.5]) == pytest.approx([0.05 / 3] * 3)
    assert statistics.holm_errors([]) == []


def _family(rng, m: int, n_boot: int) -> list:
    """m arms' bootstrap differences: some clear effects, some near 0, one missing."""
    out = [rng.normal(rng.choice([-0.06, -0.02, 0.0, 0.01, 0.05]), 0.02, n_boot)
           for _ in range(m)]
    out[rng.integers(0, m)] = None if rng.random() < 0.3 else out[0]
    return out


def test_the_verdict_agrees_with_its_printed_interval_and_with_holm():
    rng = np.random.default_rng(7)
    for _ in range(200):
        m = int(rng.integers(1, 7))
        rows = statistics.paired_verdicts(_family(rng, m, int(rng.integers(50, 800))))
        for r in rows:
            if r["verdict"] == statistics.NO_VERDICT:
                assert math.isnan(r["ci_low"]) and math.isnan(r["p_holm"])
                continue
            excludes = r["ci_low"] > 0 or r["ci_high"] < 0
            assert (r["verdict"] != "no clear difference") == excludes
            assert (r["verdict"] != "no clear difference") == (r["p_holm"] < 0.05)
            assert r["ci_level"] >= 0.95 and r["ci_low"] <= r["ci_high"]


def test_case_a_an_interval_away_from_zero_is_a_verdict():
    """`make demo` printed "no clear difference ... difference -0.052 [-0.101, -0.016],
    Holm-corrected p = 0.430": a seed-level t-test decided against its own bootstrap CI."""
    from classifier.metrics import paired_comparison
    rng = np.random.default_rng(0)
    boot = rng.normal(-0.052, 0.022, 2000)
    lo, hi = statistics.percentile_interval(boot)
    assert hi < 0                                      # the 95% CI excludes 0
    seeds = paired_comparison([0.80, 0.82, 0.84], [0.70, 0.83, 0.80])   # 3 seeds
    assert seeds["p_value"] > 0.3                      # the old rule's p: no verdict
    (alone,) = statistics.paired_verdicts([boot])
    assert alone["verdict"] == "worse" and alone["ci_level"] == 0.95
    assert alone["ci_high"] < 0 and alone["p_holm"] < 0.05
    assert alone["ci_low"] == pytest.approx(lo, abs=0.005)
    # Among three arms it is printed at its Holm step's level, 98.3%: that interval just
    # reaches 0 (Holm p = 0.051), so the verdict, read off it, is no clear difference.
    rows = statistics.paired_verdicts([boot, rng.normal(0, 0.02, 2000),
                                       rng.normal(0.01, 0.02, 2000)])
    assert rows[0]["ci_level"] == pytest.approx(1 - 0.05 / 3)
    assert rows[0]["ci_low"] < lo and rows[0]["ci_high"] >= 0 > hi
    assert rows[0]["p_holm"] == pytest.approx(0.051, abs=0.001)
    assert [r["verdict"] for r in rows] == ["no clear difference"] * 3
    # Holm stopped at its first step, so every arm is printed at that step's level.
    assert {r["ci_level"] for r in rows} == {rows[0]["ci_level"]}


def test_case_b_the_rule_does_not_jump_at_zero_variance():
    """Five equal +0.02 differences gave the sign test's p = 0.0625; moving one by 1e-7
    gave a t-test with p = 6e-24. The bootstrap p moves only when a replicate crosses 0."""
    from classifier.metrics import paired_comparison
    base = np.array([0.70, 0.72, 0.74, 0.76, 0.78])
    equal, moved = base + 0.02, base + 0.02 + np.array([1e-7, 0, 0, 0, 0])
    # The seed-level test still jumps; it is descriptive now and decides nothing.
    assert paired_comparison(base, equal)["p_value"] == pytest.approx(0.0625)
    assert paired_comparison(base, moved)["p_value"] < 1e-20
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.004, 2000)                 # the test images' share
    flat = statistics.paired_verdicts([0.02 + noise, rng.normal(0, 0.01, 2000)])
    nudged = statistics.paired_verdicts([0.02 + noise + np.r_[1e-7, np.zeros(1999)],
                                         rng.normal(0, 0.01, 2000)])
    assert flat[0]["p_value"] == nudged[0]["p_value"]
    assert flat[0]["verdict"] == nudged[0]["verdict"] == "better"
    assert nudged[0]["ci_low"] - flat[0]["ci_low"] <= 1e-7
    # With no image noise at all every replicate is +0.02: p = 2 / (B + 1), not 0.
    (still,) = statistics.paired_verdicts([np.full(2000, 0.02)])
    assert still["p_value"] == pytest.approx(2 / 2001) and still["verdict"] == "better"


def test_arm_names():
    assert arms.normalise_arm("synthetic") == "diffusion_fill"
    assert arms.normalise_arm("diffusion_fill+diagen+classic") == "diffusion_fill+classic+diagen"
    assert arms.normalise_arm("sdedit_fill+classic", ["sdedit_fill"]) == "sdedit_fill+classic"
    for bad in ("classic+classic", "original+diagen", "nope", "classic_fill+blur",
                "diffusion_fill+diagen+diagen"):
        with pytest.raises(arms.ArmError):
            arms.normalise_arm(bad)
    assert [arms.is_generative(a) for a in ("original", "rebalanced", "classic",
                                            "classic_fill+classic", "diffusion_fill",
                                            "synthetic", "sdedit_fill")] == \
        [False, False, False, False, True, True, True]
    assert arms.uses_classic("classic") and arms.uses_classic("classic_fill+classic")
    assert not arms.uses_classic("classic_fill")
    with pytest.raises(arms.ArmError):
        arms.parse_fill_dirs(["original=x"])
    with pytest.raises(arms.ArmError):
        arms.parse_fill_dirs(["sdedit"])


def test_strongest_non_generative_arm_is_the_reference():
    rows = [{"variant": "original", "balanced_accuracy_mean": 0.70},
            {"variant": "rebalanced", "balanced_accuracy_mean": 0.74},
            {"variant": "classic_fill", "balanced_accuracy_mean": 0.72},
            {"variant": "diffusion_fill", "balanced_accuracy_mean": 0.90}]
    assert arms.strongest_non_generative(rows) == "rebalanced"
    assert arms.strongest_non_generative(rows[3:]) is None


def _rows_and_predictions(gain: float, n_seeds: int = 5, n_img: int = 120):
    """Runs of 4 arms on the same test images: the diffusion arm is right on a `gain` share
    of the images every other arm gets wrong."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), n_img // 4)
    names = np.array(["a", "b", "c", "d"])
    paths = [f"t/{names[c]}/{i}.png" for i, c in enumerate(y)]
    acc = {"original": 0.6, "rebalanced": 0.62, "classic": 0.64,
           "diffusion_fill": 0.64 + gain}
    rows, preds = [], {}
    for arm, a in acc.items():
        for s in range(n_seeds):
            # The real-only arms share their errors (same draws); the generated arm errs
            # independently of them.
            r = np.random.default_rng((200 if arm == "diffusion_fill" else 100) + s
                                      ).random(n_img)
            p = np.where(r < a, y, (y + 1 + rng.integers(0, 3, n_img)) % 4)
            m = classification_metrics(y, p, list(names))
            rows.append({"variant": arm, "seed": s, "set": "test",
                         **{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                              "weighted_f1")},
                         "tail_recall": m["per_class"]["d"]["recall"],
                         "best_epoch": 3, "epochs_run": 5})
            rows.append({**rows[-1], "set": "val"})
            preds[("test", arm, s)] = pd.DataFrame({"path": paths, "label": names[y],
                                                    "predicted": names[p]})
    return rows, preds


def test_compare_tables_pair_every_arm_with_the_strongest_non_generative_one():
    from classifier.comparison import compare_tables, markdown_table, paired_markdown
    rows, preds = _rows_and_predictions(gain=0.25)
    summary, paired = compare_tables(rows, preds, tail=["d"], n_boot=300)
    test = summary[summary["set"] == "test"].set_index("variant")
    assert test.loc["classic", "reference"] and test["reference"].sum() == 1
    assert test.loc["diffusion_fill", "kind"] == "generative"
    for arm, r in test.iterrows():
        assert r["balanced_accuracy_ci_low"] < r["balanced_accuracy_mean"] \
            < r["balanced_accuracy_ci_high"]
        assert r["tail_recall_ci_low"] <= r["tail_recall_ci_high"]
    assert set(paired["baseline"]) == {"classic"}
    assert set(paired["variant"]) == {"original", "rebalanced", "diffusion_fill"}
    ba = paired[paired["metric"] == "balanced_accuracy"].set_index("variant")
    # Holm: the smallest p is multiplied by the 3 arms compared.
    raw = ba["p_value"].astype(float)
    assert ba.loc[raw.idxmin(), "p_holm"] == pytest.approx(min(1, 3 * raw.min()))
    assert ba.loc["diffusion_fill", "verdict"] == "better"
    assert ba.loc["diffusion_fill", "ci_low"] > 0
    assert "classic *" in markdown_table(summary) and "better" in paired_markdown(paired)
    # The val rows are summarised but neither paired nor bootstrapped.
    assert "val" not in set(paired["set"])


def test_a_small_gain_is_no_clear_difference():
    from classifier.comparison import compare_tables
    rows, preds = _rows_and_predictions(gain=0.01)
    _, paired = compare_tables(rows, preds, tail=["d"], n_boot=300)
    fill = paired[paired["variant"] == "diffusion_fill"]
    assert set(fill["verdict"]) == {"no clear difference"}
    # original loses to classic at every seed (its errors are a superset): a real effect.
    assert paired.set_index(["variant", "metric"]).loc[("original", "balanced_accuracy"),
                                                       "verdict"] == "worse"
    # Without predictions, or without resamples, there is no interval and no verdict.
    for preds_, n_boot in ((None, 300), (preds, 0)):
        _, paired = compare_tables(rows, preds_, tail=["d"], n_boot=n_boot)
        assert paired["ci_low"].isna().all() and paired["p_holm"].isna().all()
        assert set(paired["verdict"]) == {statistics.NO_VERDICT}
        assert set(paired["test"]) == {"none"}
        assert paired["seed_p"].notna().all()          # the seed test is still shown


def _shifted_runs(extra: dict[str, list[int]], n_img: int = 120):
    """Runs on the same test images: the reference `classic` errs on a fixed 30%; every
    other arm errs where classic does, plus on the first k of classic's right images
    (k > 0, per seed) or is right on the first -k of classic's wrong images (k < 0)."""
    y = np.repeat(np.arange(4), n_img // 4)
    names = np.array(["a", "b", "c", "d"])
    paths = [f"t/{names[c]}/{i}.png" for i, c in enumerate(y)]
    wrong = np.random.default_rng(0).permutation(n_img) < 0.3 * n_img
    right_idx, wrong_idx = np.flatnonzero(~wrong), np.flatnonzero(wrong)
    rows, preds = [], {}
    for arm, ks in {"classic": [0] * len(next(iter(extra.values()))), **extra}.items():
        for s, k in enumerate(ks):
            miss = wrong.copy()
            miss[right_idx[:max(k, 0)]] = True
            miss[wrong_idx[:max(-k, 0)]] = False
            p = np.where(miss, (y + 1) % 4, y)
            m = classification_metrics(y, p, list(names))
            rows.append({"variant": arm, "seed": s, "set": "test",
                         **{k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                              "weighted_f1")},
                         "tail_recall": m["per_class"]["d"]["recall"]})
            preds[("test", arm, s)] = pd.DataFrame({"path": paths, "label": names[y],
                                                    "predicted": names[p]})
    return rows, preds


def test_compare_tables_case_a_seed_test_would_say_nothing_the_interval_decides():
    from classifier.comparison import compare_tables, paired_markdown
    # Three seeds that all lose (2, 6 and 12 of 120 images): the t-test over 3 seeds gives
    # p > 0.05, the bootstrap over seeds and images lies below 0.
    rows, preds = _shifted_runs({"original": [1, 0, 1], "diffusion_fill": [2, 6, 12]})
    _, paired = compare_tables(rows, preds, n_boot=1000)
    fill = paired.set_index(["variant", "metric"]).loc[("diffusion_fill", "balanced_accuracy")]
    assert fill["seed_p"] > 0.05 and fill["seed_test"] == "paired t"
    assert fill["ci_high"] < 0 and fill["verdict"] == "worse" and fill["p_holm"] < 0.05
    assert fill["test"] == "paired bootstrap"
    assert "worse" in paired_markdown(paired) and "(97.5%)" in paired_markdown(paired)


def test_compare_tables_case_b_equal_gains_at_every_seed_are_better():
    from classifier.comparison import compare_tables
    # Right on the same 8 images classic gets wrong, at each of 5 seeds: equal differences,
    # the sign test's p = 0.0625; the bootstrap sees the gain in every resample but a few.
    rows, preds = _shifted_runs({"original": [3] * 5, "diffusion_fill": [-8] * 5})
    _, paired = compare_tables(rows, preds, n_boot=1000)
    fill = paired.set_index(["variant", "metric"]).loc[("diffusion_fill", "balanced_accuracy")]
    assert fill["seed_test"] == "sign" and fill["seed_p"] == pytest.approx(0.0625)
    assert fill["verdict"] == "better" and fill["ci_low"] > 0


def test_compare_tables_verdicts_always_match_their_printed_intervals():
    from classifier.comparison import ci_text, compare_tables
    for gain in (0.0, 0.01, 0.05, 0.25):
        _, paired = compare_tables(*_rows_and_predictions(gain, n_seeds=3), tail=["d"],
                                   n_boot=200)
        for _, r in paired.iterrows():
            if r["verdict"] == statistics.NO_VERDICT:       # a tail label never drawn
                assert math.isnan(r["ci_low"])
                continue
            excludes = r["ci_low"] > 0 or r["ci_high"] < 0
            assert (r["verdict"] in ("better", "worse")) == excludes
            assert (r["verdict"] == "better") == (r["ci_low"] > 0)
            assert (r["p_holm"] < 0.05) == excludes
            # What a reader sees says the same: the printed bounds, as text.
            low, high = (float(x) for x in ci_text(r["ci_low"], r["ci_high"], r["ci_level"])
                         .split("]")[0].strip(" [").split(", "))
            assert (low > 0 or high < 0) == excludes
    # A bound just off 0 is printed with the digits that show its side.
    assert ci_text(3e-4, 0.05, 0.95) == " [+0.0003, +0.050] (95%)"


def test_epoch_plan_with_a_step_budget():
    rng = np.random.default_rng(0)
    plan = sampling.epoch_plan(list(range(10)), 2, 4, rng, steps_per_epoch=7)
    assert plan.shape == (2, 28)
    for e in range(2):   # every image once before any twice
        assert sorted(plan[e, :10]) == list(range(10)) and sorted(plan[e, 10:20]) == \
            list(range(10))
    small = sampling.epoch_plan(list(range(100)), 1, 4, rng, steps_per_epoch=3)
    assert small.shape == (1, 12) and len(set(small[0])) == 12


# --- planning the arms of a real (tiny) folder; no training ---------------------------

def _folder(root, counts: dict[str, int], generator: str = "", added: dict | None = None):
    rows = []
    for label, n in counts.items():
        for i in range(n):
            save_image(root / label / f"s_{i}.png", np.full((8, 8, 3), (i * 10, 0, 0)))
            rows.append(ManifestRow(f"{label}/s_{i}.png", label, "s", "", "original"))
    for label, n in (added or {}).items():
        for i in range(n):
            save_image(root / label / f"g_{i}.png", np.full((8, 8, 3), (0, i * 10, 0)))
            rows.append(ManifestRow(f"{label}/g_{i}.png", label, "s", "", generator, i, {}))
    if generator:
        write_manifest(root / "manifest.csv", rows)
    return root


def test_compare_plans_every_arm_at_one_step_budget(tmp_path):
    from classifier.comparison import (compare_jobs, fill_count_notes, source_counts,
                                       step_budget, strength_jobs)
    real = {"a": 20, "b": 5}
    train = _folder(tmp_path / "train", real)
    diff = _folder(tmp_path / "diff", real, "ddim", {"b": 15})
    clas = _folder(tmp_path / "clas", real, "classic", {"b": 14})
    argv = ["--train_dir", str(train), "--test_dir", str(train), "--balanced_dir", str(diff),
            "--classic_fill_dir", str(clas), "--out_dir", str(tmp_path / "out"),
            "--seeds", "3", "4", "--batch_size", "8", "--classic_strengths", "0.5", "1"]
    cfg, _ = parse_config(CompareConfig, argv)
    assert cfg.arms() == ["original", "rebalanced", "classic", "logit_adjusted", "crt",
                          "classic_fill", "diffusion_fill"]
    counts = source_counts(cfg)
    # Largest arm: diffusion_fill, 25 real - 5 validation + 15 added = 35 images -> 5 steps.
    assert step_budget(cfg, cfg.arms(), counts) == 5
    assert fill_count_notes(counts) and "not the same counts" in fill_count_notes(counts)[0]
    selection = strength_jobs(cfg, 5)
    assert [j["cfg"].augm_strength for j in selection] == [0.5, 1.0]
    assert {j["cfg"].seed for j in selection} == {3}
    jobs, waiting = compare_jobs(cfg, None, 5, counts)
    assert waiting == ["classic"]
    jobs, waiting = compare_jobs(cfg, 0.5, 5, counts)
    assert not waiting and len(jobs) == 14
    by = {(j["variant"], j["seed"]): j["cfg"] for j in jobs}
    assert {c.steps_per_epoch for c in by.values()} == {5}
    assert by[("rebalanced", 3)].class_balanced and not by[("original", 3)].class_balanced
    assert by[("logit_adjusted", 4)].logit_adjusted and not by[("original", 4)].logit_adjusted
    assert by[("crt", 4)].from_run == str(tmp_path / "out" / "original" / "seed4")
    assert by[("classic", 4)].augm_type == "flip" and by[("classic", 4)].augm_strength == 0.5
    assert by[("diffusion_fill", 3)].manifest == str(diff)
    assert by[("classic_fill", 3)].manifest == str(clas)
    assert by[("classic_fill", 3)].augm_type == "base"
    assert not (tmp_path / "out").exists()             # planning writes nothing

    extra, _ = parse_config(CompareConfig, argv + [
        "--variants", "synthetic+classic+diagen", "classic_fill+classic", "sdedit_fill",
        "--fill_dirs", f"sdedit_fill={diff}"])
    jobs, _ = compare_jobs(extra, 1.0, 5, source_counts(extra))
    by = {j["variant"]: j["cfg"] for j in jobs}
    assert by["diffusion_fill+classic+diagen"].sample_weighting == "diagen"
    assert by["diffusion_fill+classic+diagen"].augm_type == "flip"
    assert by["classic_fill+classic"].sample_weighting == "none"
    assert by["sdedit_fill"].manifest == str(diff)


@pytest.mark.parametrize("changes, message", [
    ({"variants": ["classic_fill"]}, "--classic_fill_dir"),
    ({"variants": ["synthetic"]}, "--balanced_dir"),
    ({"variants": ["original", "original"]}, "twice"),
    ({"variants": ["original+classic"]}, "only fill arms"),
    ({"augm_type": "flip"}, "--classic_augm_type"),
    ({"classic_augm_type": "albumentations"}, "fixed strengths"),
    ({"fill_dirs": ["classic=x"]}, "built-in"),
])
def test_compare_config_errors(changes, message):
    from cli.flags import config_from_dict, validate_config
    cfg = config_from_dict(CompareConfig, {"train_dir": "t", "test_dir": "t", **changes})
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_a_folder_and_a_manifest_of_the_same_images_validate_on_the_same_images(tmp_path):
    # Arms read the real images from train_dir or from a fill's manifest (another row order);
    # for one seed they must hold out the same validation images.
    from classifier.training import prepare_data
    from config import ClassifierConfig
    train = _folder(tmp_path / "train", {"a": 9, "b": 6})
    fill = _folder(tmp_path / "fill", {"a": 9, "b": 6}, "ddim", {"b": 3})
    rows = (tmp_path / "fill" / "manifest.csv").read_text().splitlines()
    (tmp_path / "fill" / "manifest.csv").write_text("\n".join([rows[0], *rows[:0:-1]]) + "\n")
    held = []
    for source in (dict(train_dir=str(train)), dict(manifest=str(fill))):
        cfg = ClassifierConfig(**source, input_shape=8, workers=1, seed=7)
        _, tr, val = prepare_data(cfg, np.random.default_rng(cfg.seed), [])
        held.append(sorted((s.label, s.path.rsplit("/", 1)[1]) for s in val.samples))
    assert held[0] == held[1] and len(held[0]) == 3


# --- generator seeds, per-label recall, convergence --------------------------------------

def test_crossed_means_weigh_generators_and_seeds_apart():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 1, 4))
    seeds = statistics.seed_counts(50, 4, 0)
    ones = np.ones((50, 1), dtype=int)
    # One generator: the plain seed resampling.
    assert np.allclose(statistics.crossed_resampled_means(scores, ones, seeds),
                       statistics.seed_resampled_means(scores[:, 0], seeds))
    s = np.array([[[0.5, 0.7], [0.6, 0.8]]])
    assert statistics.crossed_resampled_means(s, np.array([[2, 0]]), np.array([[1, 1]]))[0] \
        == pytest.approx(0.6)
    assert statistics.crossed_resampled_means(s, np.array([[1, 1]]), np.array([[0, 2]]))[0] \
        == pytest.approx(0.75)
    # A missing run (NaN) is left out of the mean, not counted as 0.
    s = np.array([[[0.5, np.nan], [0.7, 0.9]]])
    assert statistics.crossed_resampled_means(s, np.array([[1, 1]]), np.array([[1, 1]]))[0] \
        == pytest.approx(0.7)


def test_label_recalls():
    assert statistics.label_recalls(["a", "a", "b", "c"], ["a", "b", "b", "a"]) == \
        {"a": (0.5, 2), "b": (1.0, 1), "c": (0.0, 1)}
    with pytest.raises(ValueError):
        statistics.label_recalls(["a"], ["a", "b"])


def test_recall_by_label_averages_each_arms_runs():
    from classifier.comparison import recall_by_label

    def df(true, pred):
        return pd.DataFrame({"path": [f"{i}.png" for i in range(len(true))],
                             "label": list(true), "predicted": list(pred)})
    preds = {("original", 0): df("aab", "abb"), ("original", 1): df("aab", "aab"),
             ("diffusion_fill", 0, 42): df("aab", "aaa"),
             ("diffusion_fill", 1, 43): df("aab", "aba")}
    rows = recall_by_label(preds, ["original", "diffusion_fill", "missing"])
    assert rows == [{"label": "a", "test images": 2, "original": 0.75, "diffusion_fill": 0.75},
                    {"label": "b", "test images": 1, "original": 1.0, "diffusion_fill": 0.0}]


def test_convergence_summary_names_runs_whose_best_epoch_was_the_last():
    from classifier.comparison import convergence_summary
    runs = [{"variant": "original", "best_epoch": 10, "epochs_run": 10, "max_epochs": 10},
            {"variant": "original", "best_epoch": 4, "epochs_run": 8, "max_epochs": 10},
            {"variant": "classic", "best_epoch": 3, "epochs_run": 7, "max_epochs": 10}]
    by = {r["arm"]: r for r in convergence_summary(runs)}
    assert by["original"]["best_is_last"] == 1 and by["original"]["stopped_early"] == 1
    assert by["original"]["best_epoch_median"] == 7 and by["original"]["best_epoch_max"] == 10
    assert by["classic"]["best_is_last"] == 0 and by["classic"]["runs"] == 1


def _two_generators(gains=(0.25, 0.0), n_seeds=5):
    """The 4-arm runs of `_rows_and_predictions`, with diffusion_fill once per generator:
    generator 42 with the first gain, 43 with the second."""
    rows, preds = [], {}
    for g, gain in zip((42, 43), gains):
        r, p = _rows_and_predictions(gain, n_seeds)
        if g == 42:
            rows += [x for x in r if x["variant"] != "diffusion_fill"]
            preds.update({k: v for k, v in p.items() if k[1] != "diffusion_fill"})
        rows += [{**x, "generator_seed": g} for x in r if x["variant"] == "diffusion_fill"]
        preds.update({(*k, g): v for k, v in p.items() if k[1] == "diffusion_fill"})
    return rows, preds


def test_generator_seeds_pool_into_one_arm_whose_ci_spans_the_generators():
    from classifier.comparison import compare_tables
    rows, preds = _two_generators()
    summary, paired = compare_tables(rows, preds, tail=["d"], n_boot=400)
    test = summary[summary["set"] == "test"].set_index("variant")
    assert test.loc["diffusion_fill", "n"] == 10 and test.loc["diffusion_fill", "generators"] == 2
    assert test.loc["classic", "n"] == 5 and test.loc["classic", "generators"] == 1
    ba = paired[paired["metric"] == "balanced_accuracy"].set_index("variant")
    fill = ba.loc["diffusion_fill"]
    # Paired per classifier seed on the mean over the two generators.
    assert fill["n"] == 5 and fill["generators"] == 2
    per_gen = pd.DataFrame(rows).query("set == 'test' and variant == 'diffusion_fill'")
    base = pd.DataFrame(rows).query("set == 'test' and variant == 'classic'")
    expected = per_gen.groupby("seed")["balanced_accuracy"].mean().mean() \
        - base["balanced_accuracy"].mean()
    assert fill["mean_diff"] == pytest.approx(expected)
    # A good and a useless generator: resampling the generators makes the difference's CI
    # reach from about the useless one's gain to about the good one's.
    assert fill["ci_low"] < 0.05 and fill["ci_high"] > 0.15
    assert fill["verdict"] == "no clear difference"
    # Two equally good generators give a narrow CI away from 0.
    _, paired = compare_tables(*_two_generators((0.25, 0.25)), tail=["d"], n_boot=400)
    same = paired.query("metric == 'balanced_accuracy'").set_index("variant").loc[
        "diffusion_fill"]
    assert same["ci_low"] > 0.1 and same["verdict"] == "better"


def test_pool_generator_runs_reads_every_generators_comparison(tmp_path):
    from classifier.comparison import pool_generator_runs
    dirs = []
    for g, gain in ((42, 0.25), (43, 0.0)):
        results = tmp_path / f"results{g}"
        rows, preds = _rows_and_predictions(gain, n_seeds=2)
        for r in rows:
            r["run_dir"] = str(results / r["variant"] / f"seed{r['seed']}")
        for (test_set, arm, seed), df in preds.items():
            run = results / arm / f"seed{seed}"
            run.mkdir(parents=True, exist_ok=True)
            df.to_csv(run / f"predictions_{test_set}.csv", index=False)
        pd.DataFrame(rows).to_csv(results / "runs.csv", index=False)
        dirs.append((g, results))
    rows, preds = pool_generator_runs(dirs)
    df = pd.DataFrame(rows)
    # Non-generative arms once (from the first comparison), generative arms per generator.
    assert (df.query("variant == 'classic'")["generator_seed"].isna()).all()
    assert len(df.query("variant == 'classic' and set == 'test'")) == 2
    assert sorted(df.query("variant == 'diffusion_fill' and set == 'test'")["generator_seed"]
                  ) == [42, 42, 43, 43]
    assert ("test", "classic", 0) in preds and ("test", "diffusion_fill", 1, 43) in preds
    assert not any(k[1] == "classic" and len(k) == 4 for k in preds)


def test_tail_labels_of_reads_the_file_or_recomputes(tmp_path):
    import json
    from classifier.comparison import tail_labels_of
    results = tmp_path / "results"
    results.mkdir()
    assert tail_labels_of(results) == []
    train = _folder(tmp_path / "train", {"a": 6, "b": 2, "c": 4})
    (results / "compare_config.json").write_text(json.dumps(
        {"train_dir": str(train), "tail_fraction": 0.33}))
    assert tail_labels_of(results) == ["b"]
    (results / "tail_labels.json").write_text(json.dumps({"tail": ["c"]}))
    assert tail_labels_of(results) == ["c"]
