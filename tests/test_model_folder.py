"""Model folders of every kind load through the project's real loaders, and each way a folder
can be unusable is one line naming it: config.json not JSON, a folder of another kind,
missing weights, weights of another architecture. Tiny random models (tests/conftest.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cli.flags import ConfigError  # noqa: E402
from conftest import TINY_CLASSES, tiny_model_folder  # noqa: E402
from dataset.scan import DatasetError  # noqa: E402
from model_folder.files import weights_names  # noqa: E402

KINDS = ("ddim", "gan", "classifier", "feature")
FOLDER_KIND = {"ddim": "diffusion", "gan": "diffusion", "classifier": "classifier",
               "feature": "feature"}
# The same kind of model with another architecture (another width, backbone or size).
OTHER_ARCHITECTURE = {"ddim": dict(widths=[16, 32]), "gan": dict(widths=[16, 32]),
                      "classifier": dict(backbone="mobilenetv3small", input_shape=32),
                      "feature": dict(hidden_dim=32)}
# A folder of another kind, and the words the loader says about it.
OTHER_KIND = {"ddim": ("classifier", "is a classifier run folder; this needs a diffusion"),
              "gan": ("feature", "is a feature-model run folder; this needs a diffusion"),
              "classifier": ("ddim", "is a diffusion run folder; this needs a classifier"),
              "feature": ("classifier", "is a classifier run folder; this needs a "
                                        "feature-model")}


def load(kind: str, path: Path):
    """The loaded model's output for fixed inputs, through the loader its users call."""
    if kind in ("ddim", "gan"):
        from diffusion.inference import load_model
        model = load_model(path)[0]
        return model.generate(2, steps=2, seed=1, labels=[0, 2]) if kind == "ddim" \
            else model.generate(2, seed=1, labels=[0, 2])
    if kind == "classifier":
        from classifier.runs import load_run
        x = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
        return np.asarray(load_run(path)[0](x, training=False))
    from feature_diffusion.train import load_feature_model
    return load_feature_model(path).generate({"a": 2, "c": 1}, seed=0)[0]


def one_line_error(kind: str, path: Path) -> str:
    with pytest.raises((DatasetError, ConfigError)) as err:
        load(kind, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    return message


def copy_of(tiny_model_folders, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_folders[kind], tmp_path / kind))


@pytest.mark.parametrize("kind", [pytest.param("ddim", marks=pytest.mark.slow),  # 24 s
                                  "gan", "classifier", "feature"])
def test_a_folder_loads_the_same_model_each_time_from_folder_or_weights_file(
        kind, tiny_model_folders, tmp_path):
    folder = tiny_model_folders[kind]
    first = load(kind, folder)
    np.testing.assert_array_equal(load(kind, folder), first)
    if kind != "feature":  # the feature loader takes the folder only
        best = folder / weights_names(FOLDER_KIND[kind])[0]
        np.testing.assert_array_equal(load(kind, best), first)
    # written again from the same seed, the folder gives the same model
    again = tiny_model_folder(kind, tmp_path / "again")
    np.testing.assert_array_equal(load(kind, again), first)


@pytest.mark.parametrize("kind", KINDS)
def test_config_json_that_is_not_json_is_one_line(kind, tiny_model_folders, tmp_path):
    folder = copy_of(tiny_model_folders, kind, tmp_path)
    (folder / "config.json").write_text("{not json")
    assert "config.json is not valid JSON" in one_line_error(kind, folder)


@pytest.mark.parametrize("kind", KINDS)
def test_a_folder_of_another_kind_is_one_line(kind, tiny_model_folders, tmp_path):
    other, words = OTHER_KIND[kind]
    folder = copy_of(tiny_model_folders, other, tmp_path)
    assert words in one_line_error(kind, folder)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_weights_are_one_line(kind, tiny_model_folders, tmp_path):
    folder = copy_of(tiny_model_folders, kind, tmp_path)
    for name in weights_names(FOLDER_KIND[kind]):
        (folder / name).unlink()
    message = one_line_error(kind, folder)
    assert "has no" in message and "its training did not finish" in message
    assert weights_names(FOLDER_KIND[kind])[0] in message


@pytest.mark.parametrize("kind", KINDS)
def test_weights_of_another_architecture_are_one_line(kind, tiny_model_folders, tmp_path):
    folder = copy_of(tiny_model_folders, kind, tmp_path)
    other = tiny_model_folder(kind, tmp_path / "other", **OTHER_ARCHITECTURE[kind])
    for name in weights_names(FOLDER_KIND[kind]):
        shutil.copyfile(other / name, folder / name)
    message = one_line_error(kind, folder)
    assert "cannot be loaded into the model its config.json describes" in message


def test_settings_reach_the_model_under_their_prefixed_names():
    """No hand mapping: every constructor argument comes from the setting of its name, or
    its prefixed one (unet_dropout, gan_latent_dim), and a new argument without a setting
    is refused rather than silently left at its default."""
    from config import DiffusionConfig
    from diffusion.training import build_model
    from model_folder.build import constructor_arguments
    cfg = DiffusionConfig(image_size=(16, 16), widths=[8, 16], block_depth=1,
                          embedding_dims=8, unet_dropout=0.25, channels="1", groups=4,
                          label_dropout=0.3, min_snr_gamma=3.0, residual_block="lean")
    model = build_model(cfg, num_classes=2)
    assert (model.dropout, model.channels, model.groups, model.num_classes) == (0.25, 1, 4, 2)
    assert (model.label_dropout, model.min_snr_gamma, model.residual_block) == (0.3, 3.0,
                                                                                "lean")
    gan = build_model(DiffusionConfig(model="gan", image_size=(16, 16), widths=[8, 16],
                                      gan_latent_dim=8, gan_learning_rate=1e-3,
                                      channels="3"))
    assert (gan.latent_dim, gan.learning_rate, gan.diffaugment) == (8, 1e-3, True)

    class NewModel:
        def __init__(self, widths, new_argument=1.0):
            pass
    with pytest.raises(TypeError, match="NewModel takes new_argument"):
        constructor_arguments(NewModel, cfg, {})


def test_an_older_stage2_folder_rebuilds_from_config_json(tiny_model_folders, tmp_path):
    """A folder written before model.json (and before the architecture fields it lacks)
    rebuilds from config.json with the architecture of its time."""
    folder = copy_of(tiny_model_folders, "ddim", tmp_path)
    before = load("ddim", folder)
    (folder / "model.json").unlink()
    np.testing.assert_array_equal(load("ddim", folder), before)
    config = json.loads((folder / "config.json").read_text())
    assert config["residual_block"] != "postnorm"  # today's default differs from the legacy
    del config["residual_block"]
    (folder / "config.json").write_text(json.dumps(config))
    from model_folder.folder import ModelFolder
    old = ModelFolder.open(folder, "diffusion")
    assert old.build().residual_block == "postnorm" and old.meta["_class_names"] == TINY_CLASSES
    # the weights are of today's block: they do not fit, and loading says so in one line
    assert "cannot be loaded" in one_line_error("ddim", folder)
