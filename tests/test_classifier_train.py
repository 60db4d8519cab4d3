"""Stage 4, real training on tiny images: the small CNN learns, the best epoch is restored,
saved runs are rebuilt from config.json, grid search resumes, comparison and DIAGen run.

Three classes that differ by colour and pattern (16 px) so a small CNN beats chance in a
few epochs; trained models are shared through module-scoped fixtures.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli.flags import parse_config
from conftest import (class_image, classifier_dataset, tensorboard_tags, tree_hashes,
                      write_class_images)
from config import ClassifierConfig, GridSearchConfig
from dataset.scan import DatasetError

SIZE = 16


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return classifier_dataset(tmp_path_factory.mktemp("clf"))


def _cfg(cls=ClassifierConfig, **kw):
    argv = []
    for k, v in kw.items():
        if isinstance(v, bool):
            argv.append(f"--{k}" if v else f"--no-{k}")
        else:
            argv += [f"--{k}", *(map(str, v) if isinstance(v, list) else [str(v)])]
    cfg, _ = parse_config(cls, argv)
    return cfg


COMMON = dict(backbone="small_cnn", input_shape=SIZE, batch_size=8, learning_rate=3e-3,
              workers=1)


@pytest.fixture(scope="module")
def trained(data):
    from classifier.training import train_run
    cfg = _cfg(train_dir=data["train"], test_dir=data["test"], out_dir=data["root"] / "runs",
               run_name="main", number_epochs=8, augm_type="flip", augm_probability=0.3,
               early_stop_patience=0, seed=0, **COMMON)
    return train_run(cfg, verbose=0)


def test_small_cnn_trains_and_beats_chance(trained):
    m = trained.metrics
    assert m["tests"]["test"]["n"] == 18
    assert m["tests"]["test"]["accuracy"] > 0.6          # chance is 1/3
    assert m["tests"]["test"]["macro_f1"] > 0.5
    hist = trained.history
    assert hist[-1]["loss"] < hist[0]["loss"]
    run = trained.run_dir
    for name in ("config.json", "best.weights.h5", "history.csv", "metrics.json",
                 "confusion_val.png", "confusion_test.png"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "config.json").read_text())
    assert saved["_class_names"] == ["blue", "green", "red"]
    assert saved["batch_size"] == 8 and saved["augm_type"] == "flip"
    # Validation is a stratified split of the training images: every class is in it.
    assert m["val"]["n"] == 7 and all(v["support"] >= 1 for v in m["val"]["per_class"].values())
    assert m["n_train"] + m["n_val"] == 32
    tags = tensorboard_tags(run / "logs")         # loss and validation metrics, per epoch
    assert tags["train/epoch_loss"] == 8 and tags["validation/epoch_macro_f1"] == 8


def test_saved_run_is_rebuilt_from_config_json_and_evaluates_the_same(trained, data,
                                                                       tmp_path):
    from classifier.evaluate import evaluate_model, main
    m, out = evaluate_model(trained.run_dir, data["test"], tmp_path / "ev")
    ref = trained.metrics["tests"]["test"]
    assert m["accuracy"] == pytest.approx(ref["accuracy"])
    assert m["confusion_matrix"] == ref["confusion_matrix"]
    assert (out / "metrics.json").is_file() and (out / "confusion.png").is_file()
    # Default output: a new folder inside the run, never over an earlier evaluation.
    assert main(["--model", str(trained.run_dir), "--test_dir", str(data["test"])]) == 0
    assert main(["--model", str(trained.run_dir / "best.weights.h5"),
                 "--test_dir", str(data["test"])]) == 0
    assert sorted(p.name for p in (trained.run_dir / "evaluations").iterdir()) == \
        ["test", "test_2"]


def test_a_run_folder_describes_its_network_whatever_its_settings_say(trained, data,
                                                                        tmp_path):
    """model.json rebuilds the network even when config.json's architecture fields are gone
    (a renamed flag); a folder without model.json (older runs) still loads from config.json."""
    import shutil

    from classifier.evaluate import evaluate_model
    from classifier.runs import MODEL_NAME
    described = json.loads((trained.run_dir / MODEL_NAME).read_text())
    assert described["config"]["backbone"] == "small_cnn"
    renamed, old = tmp_path / "renamed", tmp_path / "old"
    for folder in (renamed, old):
        shutil.copytree(trained.run_dir, folder, ignore=shutil.ignore_patterns("evaluations"))
    cfg = json.loads((renamed / "config.json").read_text())
    for key in ("backbone", "input_shape", "mean", "std", "dropout"):
        cfg.pop(key)
    (renamed / "config.json").write_text(json.dumps(cfg))
    (old / MODEL_NAME).unlink()
    ref = trained.metrics["tests"]["test"]["accuracy"]
    for folder in (renamed, old):
        m, _ = evaluate_model(folder, data["test"], tmp_path / f"ev_{folder.name}")
        assert m["accuracy"] == pytest.approx(ref)


def test_evaluate_on_a_folder_with_an_unknown_class_gives_a_clear_error(trained, data,
                                                                        tmp_path, capsys):
    from classifier.evaluate import evaluate_model, main
    bad = write_class_images(tmp_path / "bad", {"red": 2, "purple": 2}, seed=5)
    with pytest.raises(DatasetError, match="does not know: purple"):
        evaluate_model(trained.run_dir, bad, tmp_path / "ev")
    assert main(["--model", str(trained.run_dir), "--test_dir", str(bad),
                 "--out_dir", str(tmp_path / "ev2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "purple" in err and "blue, green, red" in err
    assert not (tmp_path / "ev2").exists()


def test_early_stopping_restores_the_best_epoch_weights(data):
    import keras

    from classifier.training import train_run

    class Snapshots(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append([w.copy() for w in self.model.get_weights()])

    snaps = Snapshots()
    # min_delta 1.0: no accuracy can improve on epoch 1, so epoch 1 is best and training
    # stops after `patience` more epochs; the final weights must be epoch 1's, not the last.
    cfg = _cfg(train_dir=data["train"], out_dir=data["root"] / "runs", run_name="es",
               number_epochs=10, evaluation_type="accuracy", early_stop_patience=2,
               early_stop_min_delta=1.0, seed=1, **COMMON)
    res = train_run(cfg, verbose=0, extra_callbacks=[snaps])
    assert res.metrics["best_epoch"] == 1
    assert res.metrics["epochs_run"] == 3 and res.metrics["stopped_early"]
    final = res.model.get_weights()
    assert len(snaps.weights) == 3
    assert all(np.array_equal(a, b) for a, b in zip(final, snaps.weights[0]))
    assert not all(np.array_equal(a, b) for a, b in zip(final, snaps.weights[-1]))
    # The file on disk holds the same (best) weights.
    from classifier.runs import load_run
    model, _, _ = load_run(res.run_dir)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snaps.weights[0]))


@pytest.mark.slow  # 70 s at load 10 on 2 cores (2026-12-07 22:05)
def test_grid_search_resumes_and_keeps_every_run(data, tmp_path):
    import pandas as pd

    from classifier.experiments import run_grid_search
    out = tmp_path / "grid"
    cfg = _cfg(GridSearchConfig, train_dir=data["train"], test_dir=data["test"], out_dir=out,
               grid=["batch_size=4,16"], seeds=[0], repeats=2, number_epochs=1,
               **{k: v for k, v in COMMON.items() if k != "batch_size"})
    summary, failures = run_grid_search(cfg, verbose=0)
    assert failures == []
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs[runs["set"] == "val"]) == 4 and set(runs["set"]) == {"val", "test"}
    assert sorted(summary["combo"].unique()) == ["batch_size=16", "batch_size=4"]
    assert set(summary["n"]) == {2}
    # The grid's batch size is what the run trained with.
    saved = json.loads((out / "batch_size=4" / "seed0_r1" / "config.json").read_text())
    assert saved["batch_size"] == 4 and saved["seed"] == 1000
    assert (out / "best" / "batch_size=16" / "best.weights.h5").is_file()
    # Restart: finished runs are skipped; a run without metrics.json is redone.
    finished = out / "batch_size=16" / "seed0_r0" / "metrics.json"
    stamp = finished.stat().st_mtime_ns
    redo = out / "batch_size=4" / "seed0_r0" / "metrics.json"
    redo.unlink()
    run_grid_search(cfg, verbose=0)
    assert finished.stat().st_mtime_ns == stamp
    assert redo.is_file()
    assert len(pd.read_csv(out / "runs.csv")) == 8


def test_grid_search_keep_going_finishes_the_rest_and_exits_1(data, tmp_path, capsys):
    """A run that cannot be written (a file stands where its folder goes) fails; with
    --keep_going the other runs finish, their tables are written, and the exit status says
    that something failed."""
    import pandas as pd

    from classifier import grid_search
    out = tmp_path / "grid"
    (out / "batch_size=4").mkdir(parents=True)
    (out / "batch_size=4" / "seed0_r0").write_text("in the way\n")
    argv = ["--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
            "--out_dir", str(out), "--grid", "batch_size=4,16", "--seeds", "0",
            "--number_epochs", "1", "--keep_going", "--backbone", "small_cnn",
            "--input_shape", str(SIZE), "--learning_rate", "3e-3", "--workers", "1"]
    assert grid_search.main(argv) == 1
    assert "1 run(s) failed" in capsys.readouterr().out
    assert set(pd.read_csv(out / "runs.csv")["combo"]) == {"batch_size=16"}
    assert (out / "batch_size=4" / "seed0_r0").read_text() == "in the way\n"


def test_manifest_training_with_diagen_weights_and_class_balancing(data):
    import pandas as pd

    from classifier.training import train_run
    cfg = _cfg(manifest=data["balanced"], test_dir=data["test"], out_dir=data["root"] / "runs",
               run_name="diagen", number_epochs=3, sample_weighting="diagen", diagen_views=2,
               diagen_threshold=0.9,
               class_balanced=True, augm_type="albumentations", augm_probability=0.5,
               seed=2, **COMMON)
    res = train_run(cfg, verbose=0)
    m = res.metrics
    assert m["n_train_synthetic"] == 12
    assert m["diagen"]["temperature"] > 0
    w = pd.read_csv(res.run_dir / "synthetic_weights.csv")
    assert len(w) == 12 and w["weight"].between(0, 1).all()
    # Threshold and weights agree: the images counted below it are the down-weighted ones.
    below = w["p_label_calibrated"] < 0.9
    assert m["diagen"]["n_below_threshold"] == int((w["weight"] < 1).sum()) == int(below.sum())
    assert np.allclose(w.loc[below, "weight"], w.loc[below, "p_label_calibrated"] / 0.9)
    # The mislabelled synthetic image (a blue picture filed under red) scores lowest.
    assert w.loc[w["p_label_calibrated"].idxmin(), "path"].endswith("red/ddim_1.png")
    assert (res.run_dir / "filter_model" / "best.weights.h5").is_file()
    # Validation holds real images only.
    assert m["n_val"] == 7


@pytest.mark.slow
def test_compare_runs_every_arm_at_one_budget_and_tests_against_the_strongest(data,
                                                                                 tmp_path,
                                                                                 capsys):
    import pandas as pd

    from classifier.arms import strongest_non_generative
    from classifier.compare import main
    out = tmp_path / "cmp"
    argv = ["--train_dir", str(data["train"]), "--balanced_dir", str(data["balanced"]),
            "--classic_fill_dir", str(data["classic_fill"]), "--test_dir", str(data["test"]),
            "--out_dir", str(out), "--seeds", "0", "1", "--number_epochs", "1",
            "--classic_strengths", "0.5", "1", "--bootstrap", "200",
            "--variants", "original", "rebalanced", "classic", "classic_fill",
            "synthetic+classic", "--backbone", "small_cnn", "--input_shape", str(SIZE),
            "--batch_size", "8", "--workers", "1"]
    assert main(argv + ["--dry-run"]) == 0
    assert "after the classic strength search" in capsys.readouterr().out
    assert not out.exists()
    assert main(argv) == 0
    summary = pd.read_csv(out / "summary.csv")
    arms = ["original", "rebalanced", "classic", "classic_fill", "diffusion_fill+classic"]
    assert list(summary[summary["set"] == "test"]["variant"]) == arms
    assert set(summary["n"]) == {2}
    configs = {(a, s): json.loads((out / a / f"seed{s}" / "config.json").read_text())
               for a in arms for s in (0, 1)}
    # One budget: 32 real - 7 validation + 12 added = 37 images -> 5 steps of 8, every arm.
    assert {c["steps_per_epoch"] for c in configs.values()} == {5}
    assert configs[("rebalanced", 1)]["class_balanced"]
    # The classic strength was searched on seed 0 and that run reused, not trained again.
    chosen = configs[("classic", 1)]["augm_strength"]
    assert chosen in (0.5, 1.0) and configs[("classic", 0)]["augm_strength"] == chosen
    assert (out / "classic" / "seed0" / "selected_from.txt").is_file()
    assert configs[("diffusion_fill+classic", 0)]["augm_strength"] == chosen
    assert json.loads((out / "classic_fill" / "seed0" / "metrics.json").read_text())[
        "n_train_synthetic"] == 12
    preds = pd.read_csv(out / "original" / "seed0" / "predictions_test.csv")
    assert len(preds) == 18 and set(preds.columns) == {"path", "label", "predicted"}
    test = summary[summary["set"] == "test"]
    assert test["balanced_accuracy_ci_low"].notna().all()
    assert (test["balanced_accuracy_ci_low"] <= test["balanced_accuracy_ci_high"]).all()
    reference = strongest_non_generative(test.to_dict("records"))
    assert test.set_index("variant").loc[reference, "reference"]
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["baseline"]) == {reference}
    assert set(paired["variant"]) == set(arms) - {reference}
    assert {"p_holm", "ci_low", "verdict", "test"} <= set(paired.columns)
    md = (out / "compare.md").read_text()
    assert "strength" in md and "Holm" in md and f"{reference} *" in md
    # Re-running trains nothing: every run is finished.
    stamp = (out / "original" / "seed0" / "metrics.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "original" / "seed0" / "metrics.json").stat().st_mtime_ns == stamp
    assert "finished earlier, skipped" in capsys.readouterr().out
    # Resuming with other settings would mix two protocols in one table: refused.
    assert main(argv + ["--number_epochs", "2"]) == 2
    assert "number_epochs=1 there, 2 now" in capsys.readouterr().err


def test_classic_strength_and_flips_reach_the_augmenter():
    import tensorflow as tf

    from classifier.augment import make_batch_augmenter
    rng = np.random.default_rng(0)
    batch = tf.constant(np.stack([class_image(c, rng) for c in ("red", "green", "blue") * 4])
                        .astype(np.float32))
    assert make_batch_augmenter("flip", 1.0, strength=0.0, flip="none") is None
    # Strength 0 with vertical flips: each image is itself or turned upside down, never
    # mirrored left-right, rotated or zoomed.
    out = make_batch_augmenter("flip", 1.0, seed=1, strength=0.0, flip="vertical")(batch)
    x, y = batch.numpy(), out.numpy()
    same = [np.allclose(a, b) for a, b in zip(x, y)]
    upside = [np.allclose(a[::-1], b) for a, b in zip(x, y)]
    assert all(s or u for s, u in zip(same, upside)) and any(upside)
    mild = make_batch_augmenter("flip", 1.0, seed=1, strength=0.25, flip="none")(batch)
    strong = make_batch_augmenter("flip", 1.0, seed=1, strength=2.0, flip="none")(batch)
    assert np.abs(mild.numpy() - x).mean() < np.abs(strong.numpy() - x).mean()


@pytest.mark.parametrize("augm_type", ["flip", "randaugment", "augmix", "albumentations"])
def test_augmenters_keep_shape_and_range_and_respect_probability(augm_type):
    import tensorflow as tf

    from classifier.augment import make_batch_augmenter
    rng = np.random.default_rng(0)
    batch = tf.constant(np.stack([class_image(c, rng) for c in ("red", "green", "blue") * 4])
                        .astype(np.float32))
    out = make_batch_augmenter(augm_type, 1.0, seed=3)(batch).numpy()
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, batch.numpy())
    assert make_batch_augmenter(augm_type, 0.0) is None
    assert make_batch_augmenter("base", 1.0) is None


def test_empty_training_folder_gives_a_one_line_error(tmp_path):
    from classifier.train import main
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError):
        from classifier.training import train_run
        train_run(_cfg(train_dir=tmp_path / "empty", out_dir=tmp_path / "o", **COMMON),
                  verbose=0)
    assert main(["--train_dir", str(tmp_path / "empty"), "--out_dir", str(tmp_path / "o"),
                 "--backbone", "small_cnn", "--input_shape", "16"]) == 2
    assert not (tmp_path / "o").exists()


def test_an_out_dir_inside_any_input_is_refused_before_any_work(data, capsys):
    """Confusion PNGs written into a label folder would be read as training images."""
    from classifier.compare import main as compare
    from classifier.grid_search import main as grid_search
    from classifier.train import main as train
    before = tree_hashes(data["root"])
    small = ["--backbone", "small_cnn", "--input_shape", "16", "--number_epochs", "1"]
    for out in (data["train"] / "red", data["test"]):
        assert train(["--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
                      "--out_dir", str(out), *small]) == 2
        assert "is inside --" in capsys.readouterr().err
    assert grid_search(["--train_dir", str(data["train"]), "--out_dir",
                        str(data["train"] / "runs"), *small]) == 2
    assert "is inside --train_dir" in capsys.readouterr().err
    assert compare(["--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
                    "--fill_dirs", f"mine={data['balanced']}", "--variants", "original",
                    "--out_dir", str(data["balanced"] / "compare"), *small]) == 2
    assert "is inside --fill_dirs" in capsys.readouterr().err
    assert tree_hashes(data["root"]) == before


def test_a_test_folder_with_an_unknown_class_fails_before_training(data, tmp_path, capsys):
    from classifier.train import main
    bad = tmp_path / "test"
    write_class_images(bad, {"red": 2, "purple": 2}, seed=5)
    out = tmp_path / "runs"
    assert main(["--train_dir", str(data["train"]), "--test_dir", str(bad), "--out_dir",
                 str(out), "--backbone", "small_cnn", "--input_shape", "16"]) == 2
    assert "purple" in capsys.readouterr().err
    assert not out.exists()                        # no run folder, no training spent
