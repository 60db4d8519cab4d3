"""Feature-space diffusion (feature_diffusion/): the denoiser, training into a run folder,
resume, reload, per-vector seeds, label conditioning, broken folders, feature quality.

Data: three labels of Gaussian blobs in 16-D (120 / 40 / 20 vectors, means far apart, a
ReLU so that every feature is >= 0, like a pooled ReLU encoder's). One tiny model (64 wide,
2 blocks, 400 steps) is trained once per module and shared.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cli.flags import ConfigError  # noqa: E402
from config import FeatureDiffusionConfig  # noqa: E402
from dataset.scan import DatasetError  # noqa: E402
from feature_diffusion.model import FeatureDenoiser  # noqa: E402
from feature_diffusion.quality import feature_quality  # noqa: E402
from feature_diffusion.stats import FeatureStats, sample_seed  # noqa: E402
from feature_diffusion.train import (LOSS_CSV, WEIGHTS, load_feature_model,  # noqa: E402
                                     train_feature_model)

NAMES = ["wide", "mid", "rare"]
COUNTS = [120, 40, 20]
DIM = 16
TINY = dict(hidden_dim=64, blocks=2, embedding_dims=16, train_steps=400, batch_size=64,
            generate_steps=20, loss_every=50)


def blobs(seed: int = 0, counts=COUNTS):
    """(features, int labels, label means): ReLU of Gaussian blobs, means 4 std apart."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).uniform(0.0, 6.0, (len(NAMES), DIM))
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.maximum(means[y] + rng.normal(0.0, 0.7, (len(y), DIM)), 0.0).astype(np.float32)
    return x, y, np.stack([x[y == i].mean(0) for i in range(len(counts))])


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("feat") / "run"
    x, y, _ = blobs()
    model = train_feature_model(x, y, NAMES, FeatureDiffusionConfig(**TINY), run_dir,
                                progress=False)
    return model, run_dir


def own_mean_share(model, seed=3, n=30):
    """Share of generated vectors whose nearest real label mean is their own label's."""
    _, _, means = blobs()
    feats, labels, _ = model.generate({name: n for name in NAMES}, seed=seed)
    nearest = np.linalg.norm(feats[:, None] - means[None], axis=-1).argmin(1)
    return float(np.mean(nearest == np.array([NAMES.index(lab) for lab in labels])))


def test_trains_saves_and_generates_the_planned_counts(trained):
    model, run_dir = trained
    for name in ("config.json", "model.json", LOSS_CSV, WEIGHTS):
        assert (run_dir / name).is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["_class_names"] == NAMES and config["_feature_dim"] == DIM
    assert len(config["_feature_mean"]) == DIM and len(config["_feature_std"]) == DIM
    losses = [float(r.split(",")[1]) for r in (run_dir / LOSS_CSV).read_text().split()[1:]]
    assert len(losses) == 8 and losses[-1] < losses[0]
    feats, labels, seeds = model.generate({"rare": 7, "wide": 3, "mid": 0}, seed=1)
    assert feats.shape == (10, DIM) and feats.dtype == np.float32
    assert labels == ["rare"] * 7 + ["wide"] * 3
    assert len(set(seeds)) == 10 and seeds[0] == sample_seed(1, "rare", 0)


def test_reload_gives_the_same_features_and_rows_regenerate_alone(trained):
    model, run_dir = trained
    feats, labels, seeds = model.generate({"mid": 5, "rare": 4}, seed=11, batch_size=3)
    reloaded = load_feature_model(run_dir)
    np.testing.assert_array_equal(
        reloaded.generate({"mid": 5, "rare": 4}, seed=11, batch_size=3)[0], feats)
    # Other batch sizes: the same rows up to float rounding of the batched matmuls.
    again, _, _ = model.generate({"mid": 5, "rare": 4}, seed=11)
    np.testing.assert_allclose(again, feats, atol=1e-4)
    alone = reloaded.generate_from_seeds(labels[6:7], seeds[6:7])
    np.testing.assert_allclose(alone[0], feats[6], atol=1e-4)
    other, _, _ = model.generate({"mid": 5, "rare": 4}, seed=12)
    assert np.abs(other - feats).max() > 0.1


def test_generated_vectors_lie_near_their_own_label(trained):
    model, _ = trained
    x, y, means = blobs()
    feats, labels, _ = model.generate({name: 40 for name in NAMES}, seed=5)
    labels = np.array(labels)
    for i, name in enumerate(NAMES):
        dist = np.linalg.norm(feats[labels == name].mean(0) - means, axis=1)
        assert dist.argmin() == i, (name, dist.round(2))
        # closer to its own mean than half the way to the nearest other mean
        assert dist[i] < 0.5 * np.delete(dist, i).min(), (name, dist.round(2))
    assert own_mean_share(model) > 0.9
    # ReLU features: the real range per dimension keeps them >= 0 (clip "final")
    assert feats.min() >= 0.0


def test_a_model_blind_to_labels_fails_the_label_check(tmp_path):
    """The control of the test above: trained without ever seeing a label (label_dropout 1),
    the generated vectors fall near the other labels' means as often as near their own."""
    x, y, _ = blobs()
    cfg = FeatureDiffusionConfig(**{**TINY, "train_steps": 200, "label_dropout": 1.0,
                                    "guidance_scale": 1.0})
    blind = train_feature_model(x, y, NAMES, cfg, tmp_path / "blind", progress=False)
    assert own_mean_share(blind) < 0.7


def test_finished_folder_is_loaded_not_retrained(trained):
    model, run_dir = trained
    x, y, _ = blobs()
    stamp = (run_dir / WEIGHTS).stat().st_mtime_ns, (run_dir / LOSS_CSV).read_text()
    cfg = FeatureDiffusionConfig(**{**TINY, "guidance_scale": 2.0, "eta": 0.0})
    again = train_feature_model(x, y, NAMES, cfg, run_dir, progress=False)
    assert ((run_dir / WEIGHTS).stat().st_mtime_ns, (run_dir / LOSS_CSV).read_text()) == stamp
    assert again.cfg.guidance_scale == 2.0 and again.cfg.eta == 0.0   # generation settings
    np.testing.assert_allclose(again.generate({"rare": 3}, seed=2,
                                              guidance_scale=model.cfg.guidance_scale,
                                              eta=model.cfg.eta)[0],
                               model.generate({"rare": 3}, seed=2)[0], atol=1e-4)
    with pytest.raises(ConfigError) as err:
        train_feature_model(x, y, NAMES, FeatureDiffusionConfig(**{**TINY, "blocks": 3}),
                            run_dir, progress=False)
    assert "blocks" in one_line(err) and str(run_dir) in str(err.value)
    with pytest.raises(ConfigError) as err:
        train_feature_model(x + 1.0, y, NAMES, FeatureDiffusionConfig(**TINY), run_dir,
                            progress=False)
    assert "other data" in one_line(err)


def test_interrupted_folder_trains_again_from_the_start(trained, tmp_path):
    model, run_dir = trained
    x, y, _ = blobs()
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / WEIGHTS).unlink()          # killed before the weights: not finished
    (copy / LOSS_CSV).write_text("step,loss,wall_s\n50,9.9,1.0\n")
    cfg = FeatureDiffusionConfig(**{**TINY, "train_steps": 50})
    with pytest.raises(ConfigError):   # other settings than the interrupted run's
        train_feature_model(x, y, NAMES, cfg, copy, progress=False)
    again = train_feature_model(x, y, NAMES, FeatureDiffusionConfig(**TINY), copy,
                                progress=False)
    assert (copy / WEIGHTS).is_file() and "9.9" not in (copy / LOSS_CSV).read_text()
    # Seeded initial weights and noise: the new run ends where the first one did.
    a = again.generate({"mid": 20}, seed=4)[0].mean(0)
    b = model.generate({"mid": 20}, seed=4)[0].mean(0)
    assert np.abs(a - b).max() < 1e-2


@pytest.mark.parametrize("damage, kind, words", [
    ("config_not_json", ConfigError, "not valid JSON"),
    ("no_weights", DatasetError, "has no feature_model.weights.h5"),
    ("truncated_weights", DatasetError, "cannot be loaded"),
    ("other_kind", ConfigError, "this needs a feature-model run folder"),
    ("no_config", DatasetError, "not a run folder (no config.json"),
    ("model_json_other_size", DatasetError, "cannot be loaded"),
    ("config_missing_stats", ConfigError, "is damaged"),
])
def test_broken_folders_give_one_line_errors(trained, tmp_path, damage, kind, words):
    _, run_dir = trained
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    config = json.loads((bad / "config.json").read_text())
    if damage == "config_not_json":
        (bad / "config.json").write_text("{not json")
    elif damage == "no_weights":
        (bad / WEIGHTS).unlink()
    elif damage == "truncated_weights":
        data = (bad / WEIGHTS).read_bytes()
        (bad / WEIGHTS).write_bytes(data[:len(data) // 3])
    elif damage == "other_kind":
        (bad / "config.json").write_text(json.dumps({"_config_class": "DiffusionConfig"}))
    elif damage == "no_config":
        (bad / "config.json").unlink()
    elif damage == "model_json_other_size":
        model = json.loads((bad / "model.json").read_text())
        model["config"]["hidden_dim"] = 32
        (bad / "model.json").write_text(json.dumps(model))
    elif damage == "config_missing_stats":
        del config["_feature_std"]
        (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(kind) as err:
        load_feature_model(bad)
    assert words in one_line(err) and str(bad) in str(err.value)


def test_denoiser_config_round_trip():
    net = FeatureDenoiser(feature_dim=12, num_classes=4, hidden_dim=32, blocks=2,
                          embedding_dims=8, dropout=0.1, name="net")
    rng = np.random.default_rng(0)
    net.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") for w in net.get_weights()])
    twin = FeatureDenoiser.from_config(net.get_config())
    twin.set_weights(net.get_weights())
    inputs = [rng.normal(size=(5, 12)).astype("float32"),
              rng.uniform(0, 1, (5, 1)).astype("float32"), np.array([0, 1, 2, 3, 4], "int32")]
    out = np.asarray(net(inputs))
    assert out.shape == (5, 12) and np.abs(out).max() > 0
    np.testing.assert_allclose(np.asarray(twin(inputs)), out, atol=1e-6)
    assert twin.get_config() == net.get_config()
    # the label and the noise level both change the output
    assert np.abs(np.asarray(net([inputs[0], inputs[1], inputs[2][::-1]])) - out).max() > 1e-4
    assert np.abs(np.asarray(net([inputs[0], inputs[1] * 0.1, inputs[2]])) - out).max() > 1e-4


def test_bad_training_data_and_requests_are_one_line_errors(trained, tmp_path):
    model, _ = trained
    x, y, _ = blobs()
    cfg = FeatureDiffusionConfig(**TINY)
    bad_x = x.copy()
    bad_x[3, 2] = np.nan
    for args, words in [((bad_x, y, NAMES), "non-finite"), ((x, y + 1, NAMES), "labels must"),
                        ((x, y[:-1], NAMES), "one label per"), ((x[0], y, NAMES), "(N, D)"),
                        ((x, y, ["a", "a", "b"]), "distinct")]:
        with pytest.raises(ValueError) as err:
            train_feature_model(*args, cfg, tmp_path / "never", progress=False)
        assert words in one_line(err)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError) as err:
        model.generate({"unicorn": 2}, seed=0)
    assert "unicorn" in one_line(err)
    with pytest.raises(ValueError):
        model.generate({"rare": -1}, seed=0)
    blind_to_null = model.with_generation_settings(model.cfg)
    blind_to_null.cfg.label_dropout = 0.0
    with pytest.raises(ValueError) as err:
        blind_to_null.generate({"rare": 1}, seed=0, guidance_scale=2.0)
    assert "label_dropout" in one_line(err)


def test_feature_quality_numbers():
    x, y, _ = blobs(seed=0)
    fresh, fy, _ = blobs(seed=1, counts=[60, 60, 60])
    names, fresh_names = [NAMES[i] for i in y], [NAMES[i] for i in fy]
    rows = {r["label"]: r for r in feature_quality(x, names, fresh, fresh_names)}
    assert [rows[n]["n_real"] for n in NAMES] == COUNTS
    assert all(rows[n]["n_fake"] == 60 for n in NAMES)
    for n in NAMES:  # fresh samples of the same blobs: few flagged, KID near the baseline
        assert rows[n]["memorised_share"] < 0.3
        assert abs(rows[n]["kid"]) < 0.5 and np.isfinite(rows[n]["kid_real_baseline"])
    copies = feature_quality(x, names, x[:50], names[:50])
    assert copies[0]["label"] == "wide" and copies[0]["memorised_share"] == 1.0
    assert np.isnan(copies[1]["memorised_share"]) and copies[1]["n_fake"] == 0
    # generated vectors of a blob shifted away score a far larger KID
    shifted = feature_quality(x, names, fresh + 3.0, fresh_names)
    assert all(s["kid"] > 5 * max(r["kid"], 0.01) for s, r in zip(shifted, rows.values()))
    only_fake = feature_quality(x, names, fresh[:3], ["new"] * 3)[-1]
    assert only_fake["label"] == "new" and only_fake["n_real"] == 0 and np.isnan(only_fake["kid"])


def test_a_dimension_dead_in_the_real_features_does_not_blow_up_the_kid():
    x, y, _ = blobs(seed=0)
    fresh, fy, _ = blobs(seed=1, counts=[60, 60, 60])
    names, fresh_names = [NAMES[i] for i in y], [NAMES[i] for i in fy]
    x, fresh = x.copy(), fresh.copy()
    x[:, 0] = 0.0                       # a ReLU unit the real images never fire
    fresh[:, 0] = 0.0
    fresh[0, 0] = 0.5                   # one generated vector fires it a little
    rows = feature_quality(x, names, fresh, fresh_names)
    assert all(abs(r["kid"]) < 1.0 for r in rows)


def test_stats_round_trip_and_clip_range():
    x, _, _ = blobs()
    stats = FeatureStats.of(x)
    np.testing.assert_allclose(stats.unstandardise(stats.standardise(x)), x, atol=1e-5)
    again = FeatureStats.from_lists(**{k.replace("feature_", "").replace("min", "low")
                                       .replace("max", "high"): v
                                       for k, v in stats.to_lists().items()})
    np.testing.assert_array_equal(again.mean, stats.mean)
    low, high = stats.standardised_range()
    assert (low <= 0).all() and (high >= 0).all()
