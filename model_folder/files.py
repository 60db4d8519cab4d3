"""The files of a model folder and the kinds of folder: the one module that names them.

A folder's kind comes from its config.json (`_config_class`, the settings class that wrote
it). Stage-2 folders hold a DiffusionModel or a ConditionalGan (--model gan): the same
files, told apart by model.json's class.

Example:
    >>> kind_of({"_config_class": "CompareConfig"})
    'classifier'
    >>> KINDS["diffusion"].weights
    ('best.weights.h5', 'last.weights.h5')
"""
from __future__ import annotations

from dataclasses import dataclass

CONFIG_JSON = "config.json"
MODEL_JSON = "model.json"
BEST_WEIGHTS = "best.weights.h5"
LAST_WEIGHTS = "last.weights.h5"
FEATURE_WEIGHTS = "feature_model.weights.h5"


@dataclass(frozen=True)
class FolderKind:
    """What makes a folder a model folder of one kind.

    Args:
        name: how messages call it ("a diffusion run folder").
        config_classes: settings classes whose config.json makes a folder this kind.
        model_classes: the classes model.json may name.
        weights: `which` -> file name; the first is what `load()` takes by default.
        made_by: the command that makes one, for messages.
        older_folders: folders of this kind were written before config.json named its
            class (`_config_class`) and before model.json: such folders pass as the kind
            asked for and rebuild from config.json.
    """
    name: str
    config_classes: tuple[str, ...]
    model_classes: tuple[str, ...]
    weights: dict
    made_by: str
    older_folders: bool = True


KINDS = {
    "diffusion": FolderKind("diffusion", ("DiffusionConfig", "TrainAllConfig"),
                            ("DiffusionModel", "ConditionalGan"),
                            {"best": BEST_WEIGHTS, "last": LAST_WEIGHTS},
                            "run_diffusion.py or train_all.py"),
    "classifier": FolderKind("classifier", ("ClassifierConfig", "GridSearchConfig",
                                            "CompareConfig"),
                             ("Classifier",), {"best": BEST_WEIGHTS},
                             "python3 -m classifier.train"),
    "feature": FolderKind("feature-model", ("FeatureDiffusionConfig",), ("FeatureDenoiser",),
                          {"final": FEATURE_WEIGHTS},
                          "the feature_fill arm (feature_diffusion.train_feature_model)",
                          older_folders=False),
}


def kind_of(config: dict) -> str | None:
    """The kind ('diffusion', 'classifier', 'feature') a config.json's contents make a
    folder, or None (another folder, or one written before `_config_class`)."""
    found = str(config.get("_config_class"))
    return next((k for k, spec in KINDS.items() if found in spec.config_classes), None)


def weights_names(kind: str) -> tuple[str, ...]:
    """Every weights file a folder of `kind` may hold, in the order loading prefers them."""
    return tuple(KINDS[kind].weights.values())
