"""model.json: a model's own description (its class and constructor arguments), written
beside the weights so a folder loads without the command-line settings that trained it
(renaming a flag cannot break old folders), and the rules for folders written before it.

Example:
    >>> write_model_json("models/run1", "DiffusionModel", model.get_config())
    >>> read_model_json("models/run1", ("DiffusionModel", "ConditionalGan"))
    ('DiffusionModel', {'image_size': [64, 64], ...})
"""
from __future__ import annotations

import json
from pathlib import Path

from config import LEGACY_ARCHITECTURE
from dataset.atomic import atomic_write_text
from model_folder.files import MODEL_JSON

# Chosen by whoever loads the model (name and dtype policy), not part of the architecture.
CALLER_KEYS = ("name", "trainable", "dtype")
# The augmentation vector of a stage-2 network written before model.json: the stage-1 and
# flip entries only (the online-augmentation entries came with model.json).
LEGACY_AUGMENT_DIMS = 4


def write_model_json(folder: str | Path, class_name: str, config: dict) -> Path:
    """Writes folder/model.json (atomically): {"class", "keras_version", "config"}, where
    `config` is what the class is built from (a Keras model's `get_config()`, caller keys
    left out)."""
    # why: Keras loads TensorFlow (seconds); only writers need its version
    import keras
    config = {k: v for k, v in config.items() if k not in CALLER_KEYS}
    text = json.dumps({"class": class_name, "keras_version": keras.__version__,
                       "config": config}, indent=2) + "\n"
    return atomic_write_text(Path(folder) / MODEL_JSON, text)


def read_model_json(folder: str | Path, classes: tuple[str, ...]) -> tuple[str, dict] | None:
    """(class name, constructor arguments) from folder/model.json, or None when there is no
    model.json. Folders written before a DiffusionModel argument existed get the value
    their network had then.

    Raises:
        ValueError: model.json is not JSON or names none of `classes` (the caller says
            which folder in its one-line error).
    """
    path = Path(folder) / MODEL_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(str(err)) from None
    if not isinstance(data, dict) or data.get("class", "Classifier") not in classes:
        found = data.get("class") if isinstance(data, dict) else None
        raise ValueError(f"it describes a {found}, not a {' or '.join(classes)}" if found
                         else f"not a description of a {' or '.join(classes)}")
    if not isinstance(data.get("config"), dict):
        raise ValueError("no config object")
    name, config = data.get("class", "Classifier"), dict(data["config"])
    if name == "DiffusionModel":
        # Written before the block could be chosen: the network then had the original block.
        config.setdefault("residual_block", LEGACY_ARCHITECTURE["residual_block"])
    return name, config
