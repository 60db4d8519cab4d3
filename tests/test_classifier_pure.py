"""Stage 4, pure layer: metrics, calibration, sampling, grid parsing, config (no TensorFlow)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from classifier import calibration, sampling
from classifier.grid import combo_name, expand_grid, parse_grid, summarize
from classifier.metrics import classification_metrics, monitor_value, paired_comparison
from cli.flags import ConfigError, parse_config
from config import ClassifierConfig, CompareConfig, GridSearchConfig

Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1, 2]
Y_PRED = [0, 1, 0, 0, 1, 2, 1, 2, 0, 0, 1, 1]
NAMES = ["a", "b", "c"]


def test_metrics_match_sklearn_on_a_fixed_prediction():
    m = classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y_TRUE, Y_PRED))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="weighted"))
    prec = skm.precision_score(Y_TRUE, Y_PRED, average=None)
    rec = skm.recall_score(Y_TRUE, Y_PRED, average=None)
    for i, name in enumerate(NAMES):
        assert m["per_class"][name]["precision"] == pytest.approx(prec[i])
        assert m["per_class"][name]["recall"] == pytest.approx(rec[i])
    assert m["confusion_matrix"] == skm.confusion_matrix(Y_TRUE, Y_PRED).tolist()
    # One scale: fractions, never percent.
    assert all(0 <= m[k] <= 1 for k in ("accuracy", "balanced_accuracy", "macro_f1"))
    assert monitor_value(m, "f1") == m["macro_f1"]
    json.dumps(m)  # JSON-able as written to metrics.json


def test_metrics_with_a_class_absent_from_the_test_set():
    m = classification_metrics([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["per_class"]["c"]["support"] == 0
    assert len(m["confusion_matrix"]) == 3


def test_macro_f1_counts_a_predicted_class_absent_from_the_truth():
    # Issue 13: "c" is predicted but never true; scikit-learn's macro-F1 counts it as 0.
    y_true, y_pred = [0, 0, 1, 1], [0, 2, 1, 1]
    m = classification_metrics(y_true, y_pred, NAMES)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert m["macro_f1"] == pytest.approx(0.5556, abs=1e-4)
    # A class neither true nor predicted stays out of the average.
    assert classification_metrics([0, 1], [0, 1], ["a", "b", "c", "d"])["macro_f1"] == 1.0


def test_paired_comparison_matches_scipy():
    from scipy import stats
    a, b = [0.50, 0.60, 0.55, 0.52], [0.58, 0.61, 0.60, 0.50]
    res = paired_comparison(a, b)
    assert res["mean_diff"] == pytest.approx(np.mean(np.subtract(b, a)))
    assert res["p_value"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert (res["wins"], res["ties"], res["losses"]) == (3, 0, 1)
    assert paired_comparison([0.5], [0.6])["p_value"] is None
    assert res["test"] == "paired t"


@pytest.mark.parametrize("base", [[0.5, 0.6, 0.7], [0.05, 0.15, 0.1, 0.3, 0.7],
                                  [0.226, 0.326, 0.276, 0.3, 0.7], [0.9, 0.431, 0.2, 0.8, 0.1],
                                  [1 / 3, 2 / 3, 0.1, 0.7, 0.3]])
def test_equal_paired_differences_are_decided_by_the_sign_test_not_by_rounding(base):
    # Issue 13: b = a + 1/40 at every seed gave p = None for some baselines and p = 1e-62 for
    # others (float rounding of b - a). Equal differences now always get the exact sign test.
    a = np.asarray(base)
    res = paired_comparison(a, a + 1 / 40)
    n = len(a)
    assert res["test"] == "sign" and res["t"] is None and res["std_diff"] == 0.0
    assert (res["wins"], res["ties"], res["losses"]) == (n, 0, 0)
    assert res["p_value"] == pytest.approx(2 * 0.5 ** n)
    assert res["mean_diff"] == pytest.approx(1 / 40)
    lose = paired_comparison(a, a - 1 / 40)
    assert lose["p_value"] == res["p_value"] and lose["losses"] == n
    same = paired_comparison(a, a + 0.0)
    assert same["p_value"] == 1.0 and same["ties"] == n and same["test"] == "sign"
    # Differences that really vary keep the t-test.
    varied = paired_comparison(a, a + 1 / 40 + np.linspace(0, 0.01, n))
    assert varied["test"] == "paired t" and varied["p_value"] < 0.05


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    # Labels drawn from softmax(logits / 2): the right temperature is 2.
    p = calibration.softmax(logits, 2.0)
    labels = np.array([rng.choice(4, p=row) for row in p])
    t = calibration.fit_temperature(logits, labels)
    assert 1.8 < t < 2.2
    ece_raw = calibration.expected_calibration_error(calibration.softmax(logits), labels)
    ece_cal = calibration.expected_calibration_error(calibration.softmax(logits, t), labels)
    assert ece_cal < ece_raw


def test_diagen_weights():
    w = calibration.diagen_weights([0.95, 0.5, 0.3, 0.0], threshold=0.5)
    assert w.tolist() == [1.0, 1.0, 0.6, 0.0]       # DIAGen's 2p at threshold 0.5
    with pytest.raises(ValueError):
        calibration.diagen_weights([1.5])


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 0.9, 1.0])
def test_diagen_threshold_and_weights_agree_at_every_threshold(threshold):
    # Issue 13: above 0.5 the threshold changed no weight (min(2p, 1) is 1 there) while
    # n_below_threshold counted those images. Now weight < 1 exactly when p < threshold.
    p = np.linspace(0, 1, 101)
    w = calibration.diagen_weights(p, threshold)
    assert np.array_equal(w < 1, p < threshold)
    assert np.all(np.diff(w) >= 0) and w.min() >= 0 and w.max() == 1
    below = p < threshold
    if below.any():
        assert np.allclose(w[below], p[below] / threshold)    # continuous at the threshold
    if threshold > 0.5:
        # A higher threshold really lowers the weights of images between 0.5 and it.
        mid = (p >= 0.5) & below
        assert (w[mid] < calibration.diagen_weights(p[mid], 0.5)).all()


def test_stratified_split_is_seeded_disjoint_and_per_class():
    labels = [0] * 10 + [1] * 5 + [2] * 2 + [3]
    tr, va = sampling.stratified_split(labels, 0.2, np.random.default_rng(3))
    tr2, va2 = sampling.stratified_split(labels, 0.2, np.random.default_rng(3))
    assert tr.tolist() == tr2.tolist() and va.tolist() == va2.tolist()
    assert not set(tr) & set(va) and len(tr) + len(va) == len(labels)
    lab = np.array(labels)
    assert np.bincount(lab[va], minlength=4).tolist() == [2, 1, 1, 0]
    _, va3 = sampling.stratified_split(labels, 0.2, np.random.default_rng(4))
    assert va3.tolist() != va.tolist()


def test_select_synthetic_keeps_the_ratio_and_label_shares():
    syn = [0] * 30 + [1] * 10
    keep = sampling.select_synthetic(20, syn, 1.0, np.random.default_rng(0))
    assert len(keep) == 20 and len(set(keep)) == 20
    assert np.bincount(np.array(syn)[keep]).tolist() == [15, 5]
    assert len(sampling.select_synthetic(20, syn, None, np.random.default_rng(0))) == 40
    assert len(sampling.select_synthetic(20, syn, 0.0, np.random.default_rng(0))) == 0


def test_epoch_plan_shuffles_every_image_or_balances_classes():
    labels = [0] * 90 + [1] * 10
    plan = sampling.epoch_plan(labels, 3, 32, np.random.default_rng(0))
    assert plan.shape == (3, 128)
    assert all(set(plan[e]) == set(range(100)) for e in range(3))
    assert plan[0].tolist() != plan[1].tolist()
    bal = sampling.epoch_plan(labels, 20, 32, np.random.default_rng(0), class_balanced=True)
    share_minority = (np.array(labels)[bal.ravel()] == 1).mean()
    assert 0.45 < share_minority < 0.55


def test_grid_parsing_types_and_errors():
    grid = parse_grid(["learning_rate=1e-3,1e-4", "batch_size=8,16", "augm_type=base,flip"],
                      ClassifierConfig)
    assert grid["batch_size"] == [8, 16] and grid["learning_rate"] == [1e-3, 1e-4]
    combos = expand_grid(grid)
    assert len(combos) == 8 and combos[1] == {"learning_rate": 1e-3, "batch_size": 8,
                                              "augm_type": "flip"}
    assert expand_grid({}) == [{}]
    assert combo_name({"batch_size": 8, "learning_rate": 0.001}) == \
        "batch_size=8_learning_rate=0.001"
    for bad in (["nope=1,2"], ["batch_size=eight"], ["mean=0.1"], ["batch_size"],
                ["batch_size=1,1"]):
        with pytest.raises(ConfigError):
            parse_grid(bad, ClassifierConfig)


def test_grid_jobs_really_change_the_batch_size(tmp_path):
    from classifier.experiments import grid_jobs
    cfg, _ = parse_config(GridSearchConfig, ["--train_dir", "x", "--out_dir", str(tmp_path),
                                             "--grid", "batch_size=8,16", "--seeds", "1", "2",
                                             "--repeats", "2"])
    jobs = grid_jobs(cfg)
    assert len(jobs) == 8
    assert sorted({j["cfg"].batch_size for j in jobs}) == [8, 16]
    assert len({j["cfg"].seed for j in jobs}) == 4
    assert len({j["run_dir"] for j in jobs}) == 8
    assert not any(tmp_path.iterdir())  # planning writes nothing


def test_summarize_mean_and_std():
    import pandas as pd
    df = pd.DataFrame({"combo": ["a", "a", "b"], "accuracy": [0.5, 0.7, 0.9]})
    s = summarize(df, ["combo"], ["accuracy"])
    assert s.loc[0, "accuracy_mean"] == pytest.approx(0.6)
    assert s.loc[0, "accuracy_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s.loc[1, "n"] == 1


def test_config_flags_json_and_validation(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train_dir": "d", "batch_size": 8, "augm_type": "flip",
                                "mean": [0.5, 0.5, 0.5]}))
    cfg, ns = parse_config(ClassifierConfig, ["--config", str(path), "--batch_size", "4"])
    assert (cfg.batch_size, cfg.augm_type, cfg.mean) == (4, "flip", [0.5, 0.5, 0.5])
    for argv in ([], ["--train_dir", "d", "--manifest", "m"],
                 ["--train_dir", "d", "--input_shape", "16"],
                 ["--train_dir", "d", "--sample_weighting", "diagen"],
                 ["--train_dir", "d", "--augm_probability", "2"]):
        with pytest.raises(SystemExit):
            parse_config(ClassifierConfig, argv)
    cfg, _ = parse_config(CompareConfig, ["--train_dir", "a", "--balanced_dir", "b",
                                          "--test_dir", "c"])
    # Default arms: the real-only ones and each fill whose folder is given.
    assert cfg.arms() == ["original", "rebalanced", "classic", "logit_adjusted", "crt",
                          "diffusion_fill"]
    cfg, _ = parse_config(CompareConfig, ["--train_dir", "a", "--test_dir", "c"])
    assert cfg.balanced_dir == "" and cfg.arms() == ["original", "rebalanced", "classic",
                                                  "logit_adjusted", "crt"]
    with pytest.raises(SystemExit):     # only the fill arm needs the fill folder
        parse_config(CompareConfig, ["--train_dir", "a", "--test_dir", "c",
                                     "--variants", "original", "synthetic"])


def test_dry_run_writes_nothing_and_imports_no_tensorflow(tmp_path):
    code = ("import sys; from classifier.train import main; "
            f"rc = main(['--train_dir', 'x', '--out_dir', {str(tmp_path / 'o')!r}, '--dry-run']); "
            "assert rc == 0; assert 'tensorflow' not in sys.modules, 'TF imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "small_cnn" in res.stdout or "mobilenetv3small" in res.stdout
    assert not (tmp_path / "o").exists()
