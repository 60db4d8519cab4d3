"""A run folder that describes its own network: `model.json` beside the weights and the
settings (`config.json`).

`model.json` holds `DiffusionModel.get_config()`, the model's own description, so a folder
loads without the command-line settings that trained it (renaming a flag cannot break old
folders) and without any global state: the caller chooses devices and precision before
loading. Folders written before model.json existed load through their config.json
(`diffusion.training.build_model`).

Example:
    >>> save_model_json(model, "models/run1")
    >>> twin = model_from_folder("models/run1")     # same architecture, weights not loaded
"""
from __future__ import annotations

import json
from pathlib import Path

from cli.flags import ConfigError
from config import LEGACY_ARCHITECTURE
from dataset.atomic import atomic_write_text

MODEL_JSON = "model.json"
CONFIG_JSON = "config.json"
# Chosen by whoever loads the model (name and dtype policy), not part of the architecture.
_CALLER_KEYS = ("name", "trainable", "dtype")


def save_model_json(model, run_dir: str | Path) -> Path:
    """Writes run_dir/model.json (atomically) from `model.get_config()`."""
    import keras
    config = {k: v for k, v in model.get_config().items() if k not in _CALLER_KEYS}
    text = json.dumps({"class": type(model).__name__, "keras_version": keras.__version__,
                       "config": config}, indent=2) + "\n"
    return atomic_write_text(Path(run_dir) / MODEL_JSON, text)


def describe_run(model, cfg, run_dir: str | Path, **meta) -> None:
    """Makes run_dir a run folder of `model` (its weights are saved apart): config.json with
    the settings `cfg` and `meta` (label, class_names, precision, ...), and model.json.

    Example:
        >>> describe_run(model, cfg, "models/run1", label="1", class_names=["1"])
        >>> model.save_weights("models/run1/best.weights.h5")
    """
    from cli.flags import save_config_json
    save_config_json(cfg, Path(run_dir) / CONFIG_JSON, **meta)
    save_model_json(model, run_dir)


def _model_classes() -> dict:
    from diffusion_model import DiffusionModel
    from gan_model import ConditionalGan
    return {cls.__name__: cls for cls in (DiffusionModel, ConditionalGan)}


def saved_model_config(run_dir: str | Path) -> tuple[str, dict] | None:
    """(class name, constructor arguments) from run_dir/model.json, or None when the folder
    predates model.json.

    Raises:
        ConfigError: model.json is damaged or names no known model class.
    """
    path = Path(run_dir) / MODEL_JSON
    if not path.is_file():
        return None
    classes = _model_classes()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or data.get("class") not in classes:
            raise ValueError(f"not a description of a {' or '.join(classes)}")
        config = dict(data["config"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is damaged ({err})") from None
    if data["class"] == "DiffusionModel":
        # Written before the block could be chosen: the network then had the original block.
        config.setdefault("residual_block", LEGACY_ARCHITECTURE["residual_block"])
    return data["class"], config


def model_from_folder(run_dir: str | Path):
    """The model (DiffusionModel or ConditionalGan) that run_dir/model.json describes
    (weights not loaded), or None when the folder predates model.json.

    Raises:
        ConfigError: model.json is damaged or describes no buildable model.
    """
    saved = saved_model_config(run_dir)
    if saved is None:
        return None
    name, config = saved
    try:
        return _model_classes()[name](**config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{Path(run_dir) / MODEL_JSON} describes no buildable model ({err})"
                          ) from None
