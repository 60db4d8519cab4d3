"""Long-tail training on tiny real data: the logit-adjusted loss, cRT's frozen encoder, the
synthetic-aware options (weight 0 = real-only, replacement keeps the epoch size, the
in-distribution filter) and one-line errors for bad values; the arms of the comparison."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli.flags import parse_config
from conftest import classifier_dataset
from config import ClassifierConfig
from classifier import longtail
from classifier.synthetic_filter import in_distribution

SIZE = 16
COMMON = ["--backbone", "small_cnn", "--input_shape", str(SIZE), "--batch_size", "8",
          "--learning_rate", "3e-3", "--workers", "1", "--early_stop_patience", "0",
          "--no-tensorboard"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classifier_dataset(tmp_path_factory.mktemp("lt"))


def _cfg(*argv):
    cfg, _ = parse_config(ClassifierConfig, [*map(str, argv), *COMMON])
    return cfg


@pytest.fixture(scope="module")
def original(data):
    from classifier.training import train_run
    cfg = _cfg("--train_dir", data["train"], "--test_dir", data["test"], "--out_dir",
               data["root"] / "runs", "--run_name", "original", "--number_epochs", 4,
               "--seed", 0)
    return train_run(cfg, verbose=0)


# --- pure maths ---------------------------------------------------------------------------

def test_logit_adjusted_loss_is_cross_entropy_of_shifted_logits():
    from classifier.losses import AdjustedCrossEntropy
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 0, 1])
    prior = longtail.effective_prior([0] * 7 + [1] * 2 + [2], 3)
    tau = 1.5
    shifted = logits + tau * np.log(prior)
    z = shifted - shifted.max(1, keepdims=True)
    expected = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(6), labels].mean()
    loss = AdjustedCrossEntropy(longtail.logit_offsets(prior, tau))
    got = float(loss(np.eye(3, dtype=np.float32)[labels], logits))
    assert got == pytest.approx(expected, rel=1e-5)
    # Without offsets: plain cross-entropy, which the shift changes.
    plain = float(AdjustedCrossEntropy(None)(np.eye(3, dtype=np.float32)[labels], logits))
    assert abs(plain - expected) > 1e-3


def test_effective_prior_follows_weights_and_balanced_batches():
    assert longtail.effective_prior([0, 0, 1], 2).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert longtail.effective_prior([0, 0, 1], 2, [0.5, 0.5, 1]).tolist() == [0.5, 0.5]
    assert longtail.effective_prior([0, 0, 0, 1], 3, class_balanced=True).tolist() == [
        0.5, 0.5, 0.0]
    with pytest.raises(ValueError):
        longtail.effective_prior([0, 1], 2, [0.0, 0.0])


def test_replacement_keeps_the_epoch_size_and_the_labels():
    labels = np.array([0, 0, 0, 1, 1, 0, 0, 1])
    synthetic = np.array([False] * 5 + [True] * 3)
    rng = np.random.default_rng(0)
    plan = np.tile(np.arange(5), (3, 2))                 # real images only, 3 epochs
    out = longtail.replace_with_synthetic(plan, labels, synthetic, 0.5, rng)
    assert out.shape == plan.shape
    assert (labels[out] == labels[plan]).all()           # a slot keeps its label
    share = synthetic[out].mean()
    assert 0.3 < share < 0.7                             # about half swapped
    assert (longtail.replace_with_synthetic(plan, labels, synthetic, 0.0, rng) == plan).all()


def test_training_plan_with_replacement_has_the_real_epoch_size(data):
    from classifier.training import prepare_data, training_plan
    cfg = _cfg("--manifest", data["balanced"], "--synthetic_replace_prob", 0.5,
               "--number_epochs", 2)
    rng = np.random.default_rng(0)
    _, train, _ = prepare_data(cfg, rng, [])
    plan = training_plan(cfg, train, np.random.default_rng(1))
    n_real = int((~train.synthetic).sum())
    assert plan.shape == (2, int(np.ceil(n_real / 8)) * 8)
    assert train.synthetic[plan].any() and (~train.synthetic[plan]).any()


def test_soft_targets_smooth_only_where_asked():
    t = longtail.soft_targets([0, 1], 4, [0.0, 0.4])
    assert t[0].tolist() == [1, 0, 0, 0]
    assert t[1].tolist() == pytest.approx([0.1, 0.7, 0.1, 0.1])
    assert t.sum(1) == pytest.approx([1, 1])


def test_filter_keeps_in_distribution_and_drops_out_of_distribution_images():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0, 0, 0]) + rng.normal(0, 0.05, (30, 4))
    b = np.array([0, 1.0, 0, 0]) + rng.normal(0, 0.05, (30, 4))
    real, real_y = np.vstack([a, b]), [0] * 30 + [1] * 30
    syn = np.vstack([a[:3] + rng.normal(0, 0.01, (3, 4)),       # like label 0
                     [[0, 0, 1.0, 0]],                            # far from both labels
                     [[0.02, 1.0, 0, 0]]])                        # right place, wrong prediction
    keep, rows = in_distribution(real, real_y, syn, [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], 95.0)
    assert keep.tolist() == [True, True, True, False, False]
    assert rows[3]["reason"].startswith("farther") and rows[4]["reason"].startswith("predicted")


# --- runs ---------------------------------------------------------------------------------

def test_crt_leaves_every_encoder_weight_unchanged_and_reloads_the_same(data, original):
    from classifier.runs import load_run
    from classifier.training import predict_logits, train_run
    cfg = _cfg("--train_dir", data["train"], "--test_dir", data["test"], "--out_dir",
               data["root"] / "runs", "--run_name", "crt", "--from_run", original.run_dir,
               "--finetune_head_epochs", 3, "--seed", 0)
    res = train_run(cfg, verbose=0)
    before, _, _ = load_run(original.run_dir)
    after, _, _ = load_run(res.run_dir)
    for old, new in zip(before.layers, after.layers):
        same = all(np.array_equal(x, y) for x, y in zip(old.get_weights(), new.get_weights()))
        assert same == (old.name != "logits"), old.name     # only the head changed
    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    assert np.allclose(predict_logits(res.model, images), predict_logits(after, images),
                       atol=1e-5)
    m = res.metrics
    assert m["from_run"] == str(original.run_dir) and m["head"]["best_epoch"] >= 1
    assert m["epochs_run"] == 3 and m["tests"]["test"]["n"] == 18
    assert json.loads((res.run_dir / "model.json").read_text())["config"]["backbone"] == \
        "small_cnn"


def test_synthetic_weight_zero_trains_as_real_only(data, original):
    from classifier.training import train_run
    cfg = _cfg("--manifest", data["balanced"], "--test_dir", data["test"], "--out_dir",
               data["root"] / "runs", "--run_name", "weight0", "--number_epochs", 4,
               "--seed", 0, "--synthetic_weight", 0)
    res = train_run(cfg, verbose=0)
    assert res.metrics["n_train_synthetic"] == 0
    assert res.metrics["tests"]["test"]["confusion_matrix"] == \
        original.metrics["tests"]["test"]["confusion_matrix"]
    assert res.metrics["val"]["macro_f1"] == pytest.approx(original.metrics["val"]["macro_f1"])


def test_separate_batch_norm_trains_as_plain_on_real_images_and_reloads(data, original):
    from classifier.runs import load_run
    from classifier.training import predict_logits, train_run
    common = ("--manifest", data["balanced"], "--test_dir", data["test"], "--out_dir",
              data["root"] / "runs", "--number_epochs", 4, "--seed", 0, "--synthetic_bn",
              "separate")
    # No synthetic image in any batch: the split loop is the plain loop.
    alone = train_run(_cfg(*common, "--run_name", "bn_real", "--synthetic_weight", 0),
                      verbose=0)
    assert alone.metrics["tests"]["test"]["confusion_matrix"] == \
        original.metrics["tests"]["test"]["confusion_matrix"]
    res = train_run(_cfg(*common, "--run_name", "bn_separate"), verbose=0)
    assert res.metrics["n_train_synthetic"] == 12
    assert json.loads((res.run_dir / "config.json").read_text())["synthetic_bn"] == "separate"
    reloaded, _, _ = load_run(res.run_dir)
    images = np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    assert np.allclose(predict_logits(res.model, images), predict_logits(reloaded, images),
                       atol=1e-5)


@pytest.mark.slow
def test_filter_and_label_smoothing_run_and_log_what_was_dropped(data):
    import pandas as pd

    from classifier.training import train_run
    cfg = _cfg("--manifest", data["balanced"], "--out_dir", data["root"] / "runs",
               "--run_name", "filtered", "--number_epochs", 6, "--seed", 1,
               "--synthetic_filter", "in_distribution", "--synthetic_label_smoothing", 0.2,
               "--synthetic_weight", 0.5, "--logit_adjusted")
    res = train_run(cfg, verbose=0)
    table = pd.read_csv(res.run_dir / "synthetic_filter.csv")
    assert len(table) == 12 and set(table["reason"]) <= {
        "kept", "predicted as another label",
        "farther from its label's real images than they are from each other"}
    # The blue picture filed under red is not a red image.
    assert not table.set_index("path").loc[
        [p for p in table["path"] if p.endswith("red/ddim_1.png")][0], "kept"]
    info = res.metrics["synthetic_filter"]
    assert info["n_dropped"] == int((~table["kept"]).sum()) >= 1
    assert res.metrics["n_train_synthetic"] == 12 - info["n_dropped"]
    assert (res.run_dir / "synthetic_filter_dropped.png").is_file()
    saved = json.loads((res.run_dir / "config.json").read_text())
    assert saved["synthetic_weight"] == 0.5 and saved["logit_adjusted"] is True


@pytest.mark.parametrize("argv, words", [
    (["--synthetic_weight", "-1"], "--synthetic_weight"),
    (["--synthetic_label_smoothing", "1.5"], "--synthetic_label_smoothing"),
    (["--synthetic_replace_prob", "2"], "--synthetic_replace_prob"),
    (["--synthetic_filter", "nearby"], "--synthetic_filter"),
    (["--synthetic_bn", "mixed"], "--synthetic_bn"),
    (["--la_tau", "-0.5"], "--la_tau"),
    (["--finetune_head_epochs", "-2"], "--finetune_head_epochs"),
    (["--feature_fill"], "--finetune_head_epochs"),
    (["--from_run", "x"], "--finetune_head_epochs"),
])
def test_a_bad_long_tail_setting_is_one_error_line(data, tmp_path, capsys, argv, words):
    code = _exit_code(["--manifest", str(data["balanced"]), "--out_dir", str(tmp_path / "o"),
                       *argv, *COMMON])
    err = capsys.readouterr().err.strip().splitlines()
    # argparse's usage may come first; the reason is the one line after it
    reasons = [line for line in err if "error:" in line]
    assert code == 2 and len(reasons) == 1 and words in reasons[0] and err[-1] == reasons[0]
    assert not (tmp_path / "o").exists()


def _exit_code(argv) -> int:
    from classifier.train import main
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_synthetic_options_need_synthetic_images(data, tmp_path, capsys):
    code = _exit_code(["--train_dir", str(data["train"]), "--out_dir", str(tmp_path / "o"),
                       "--synthetic_replace_prob", "0.5", *COMMON])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "error:" in err[-1] and "--manifest" in err[-1]


def test_arms_parse_and_say_what_they_start_from():
    from classifier.arms import ArmError, is_generative, normalise_arm, starts_from
    assert normalise_arm("diffusion_fill+la+classic") == "diffusion_fill+classic+la"
    assert normalise_arm("feature_fill+la") == "feature_fill+la"
    assert not is_generative("crt") and not is_generative("logit_adjusted")
    assert is_generative("feature_fill+la")
    assert starts_from("crt") == "original" and starts_from("feature_fill") == "original"
    assert starts_from("feature_fill+la") == "logit_adjusted" and starts_from("classic") is None
    for bad in ("crt+la", "logit_adjusted+classic", "feature_fill+classic", "original+la"):
        with pytest.raises(ArmError):
            normalise_arm(bad)


def test_compare_without_the_arm_crt_starts_from_is_refused(data, tmp_path, capsys):
    from classifier.compare import main
    try:
        code = main(["--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
                     "--out_dir", str(tmp_path / "c"), "--variants", "rebalanced", "crt",
                     *COMMON])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "add original to --variants" in err



def test_a_nan_loss_stops_the_classifier_before_any_checkpoint(data, tmp_path):
    import keras

    from classifier.training import train_run
    from runtime.divergence import TrainingDiverged

    class Poison(keras.callbacks.Callback):
        # Weights turned NaN after the first step: every later loss is NaN.
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                layer = self.model.get_layer("logits")
                layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])

    cfg = _cfg("--train_dir", data["train"], "--out_dir", tmp_path / "o", "--run_name", "nan",
               "--number_epochs", 2)
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1"):
        train_run(cfg, verbose=0, extra_callbacks=[Poison()])
    run = tmp_path / "o" / "nan"
    assert not (run / "metrics.json").exists() and not (run / "best.weights.h5").exists()


def test_feature_fill_generates_the_planned_features_and_keeps_the_encoder(data, original):
    import pandas as pd

    from classifier.runs import load_run
    from classifier.training import predict_logits, train_run
    cfg = _cfg("--train_dir", data["train"], "--test_dir", data["test"], "--out_dir",
               data["root"] / "runs", "--run_name", "ffill", "--from_run", original.run_dir,
               "--finetune_head_epochs", 2, "--feature_fill", "--feature_fill_steps", 40,
               "--seed", 0)
    res = train_run(cfg, verbose=0)
    run = res.run_dir
    # Real training counts after the validation split: blue 6, green 8, red 11.
    rows = pd.read_csv(run / "generated_features.csv")
    assert rows["label"].value_counts().to_dict() == {"blue": 5, "green": 3}
    assert set(rows["source_run"]) == {str(original.run_dir)} and rows["seed"].is_unique
    saved = np.load(run / "generated_features.npz")
    assert saved["features"].shape[0] == 8 and np.isfinite(saved["features"]).all()
    assert (run / "feature_model" / "config.json").is_file()
    assert (run / "feature_model" / "model.json").is_file()
    quality = pd.read_csv(run / "feature_quality.csv")
    assert set(quality["label"]) >= {"blue", "green"}
    fill = res.metrics["head"]["feature_fill"]
    assert fill["n_generated"] == 8 and fill["generated_per_label"] == {"blue": 5, "green": 3}
    before, _, _ = load_run(original.run_dir)
    after, _, _ = load_run(run)
    for old, new in zip(before.layers, after.layers):
        if old.name != "logits":
            assert all(np.array_equal(x, y)
                       for x, y in zip(old.get_weights(), new.get_weights())), old.name
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    assert np.allclose(predict_logits(res.model, images), predict_logits(after, images),
                       atol=1e-5)


@pytest.mark.slow
def test_compare_trains_each_encoder_once_and_runs_the_long_tail_arms(data, tmp_path):
    import pandas as pd

    from classifier.compare import main
    out = tmp_path / "cmp"
    code = main(["--train_dir", str(data["train"]), "--balanced_dir", str(data["balanced"]),
                 "--test_dir", str(data["test"]), "--out_dir", str(out), "--seeds", "0",
                 "--number_epochs", "2", "--bootstrap", "100", "--crt_epochs", "2",
                 "--feature_fill_steps", "30", "--variants", "original", "logit_adjusted",
                 "crt", "feature_fill", "feature_fill+la", "diffusion_fill+la", *COMMON])
    assert code == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary[summary["set"] == "test"]["variant"]) == {
        "original", "logit_adjusted", "crt", "feature_fill", "feature_fill+la",
        "diffusion_fill+la"}
    config = {a: json.loads((out / a / "seed0" / "config.json").read_text())
              for a in ("crt", "feature_fill", "feature_fill+la", "diffusion_fill+la",
                        "logit_adjusted")}
    assert config["crt"]["from_run"] == str(out / "original" / "seed0")
    assert config["feature_fill+la"]["from_run"] == str(out / "logit_adjusted" / "seed0")
    assert config["feature_fill+la"]["logit_adjusted"] and config["feature_fill"]["feature_fill"]
    assert config["diffusion_fill+la"]["logit_adjusted"] and config["logit_adjusted"][
        "logit_adjusted"]
    assert config["crt"]["finetune_head_epochs"] == 2 and not config["crt"]["logit_adjusted"]
    # crt and feature_fill did not train an encoder: their history is the head's only.
    for arm in ("crt", "feature_fill"):
        history = pd.read_csv(out / arm / "seed0" / "history.csv")
        assert len(history) == 2 and set(history["phase"]) == {"head"}


def test_train_says_what_it_left_out_of_the_training_folder(tmp_path, capsys):
    from conftest import write_class_images, write_image

    from classifier.training import train_run
    train = write_class_images(tmp_path / "train", {"red": 6, "blue": 6}, seed=0)
    (train / "empty").mkdir()
    write_image(train / "stray.jpg")
    cfg = _cfg("--train_dir", train, "--out_dir", tmp_path / "o", "--number_epochs", 1)
    res = train_run(cfg, verbose=1)
    out = capsys.readouterr().out
    assert "left out 2 item(s)" in out and "stray.jpg" in out and "empty/" in out
    assert len(res.metrics["skipped"]) == 2 and res.metrics["class_names"] == ["blue", "red"]


@pytest.mark.slow
def test_compare_chooses_each_fill_arms_recipe_on_validation_runs_only(data, tmp_path):
    import pandas as pd

    from classifier.compare import main
    out = tmp_path / "cmp"
    argv = ["--train_dir", str(data["train"]), "--balanced_dir", str(data["balanced"]),
            "--test_dir", str(data["test"]), "--out_dir", str(out), "--seeds", "0",
            "--number_epochs", "1", "--bootstrap", "50", "--variants", "original",
            "diffusion_fill", "--recipe_grid", "synthetic_weight=0.5,1",
            "synthetic_label_smoothing=0,0.2", *COMMON]
    assert main(argv) == 0
    recipes = json.loads((out / "recipes.json").read_text())
    assert set(recipes) == {"diffusion_fill"}
    params = recipes["diffusion_fill"]
    # Four combinations trained on the recipe seed only, scored on validation.
    runs = sorted(p.parent.parent.name for p in
                  (out / "recipe_select" / "diffusion_fill").glob("*/seed1000/metrics.json"))
    assert len(runs) == 4
    scores = {r: json.loads((out / "recipe_select" / "diffusion_fill" / r / "seed1000" /
                             "metrics.json").read_text())["best_value"] for r in runs}
    from classifier.grid import combo_name
    assert scores[combo_name(params)] == max(scores.values())
    used = json.loads((out / "diffusion_fill" / "seed0" / "config.json").read_text())
    assert (used["synthetic_weight"], used["synthetic_label_smoothing"]) == (
        params["synthetic_weight"], params["synthetic_label_smoothing"])
    assert "chosen on validation" in (out / "compare.md").read_text()
    assert set(pd.read_csv(out / "summary.csv")["variant"]) == {"original", "diffusion_fill"}


@pytest.mark.parametrize("extra, words", [
    (["--recipe_grid", "learning_rate=1e-3,1e-2"], "a recipe chooses only"),
    (["--recipe_grid", "synthetic_weight=1", "--recipe_seed", "0"], "--recipe_seed 0"),
])
def test_a_recipe_search_that_could_touch_the_protocol_is_refused(data, tmp_path, capsys,
                                                                  extra, words):
    from classifier.compare import main
    try:
        code = main(["--train_dir", str(data["train"]), "--balanced_dir", str(data["balanced"]),
                     "--test_dir", str(data["test"]), "--out_dir", str(tmp_path / "c"),
                     "--seeds", "0", "--variants", "original", "diffusion_fill", *extra,
                     *COMMON])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and words in err[-1] and not (tmp_path / "c" / "recipe_select").exists()


def test_feature_fill_takes_weight_and_soft_labels_but_not_image_only_options(data):
    ok = _cfg("--train_dir", data["train"], "--feature_fill", "--finetune_head_epochs", 1,
              "--synthetic_weight", 0.5, "--synthetic_label_smoothing", 0.1)
    assert ok.synthetic_weight == 0.5
    with pytest.raises(SystemExit):
        _cfg("--train_dir", data["train"], "--feature_fill", "--finetune_head_epochs", 1,
             "--synthetic_replace_prob", 0.5)
