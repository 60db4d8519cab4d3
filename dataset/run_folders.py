"""What kind of run folder a path is, from its config.json, in one line when it is not the
kind a command needs.

Every command that loads a model reads a run folder: a diffusion run (run_diffusion.py,
train_all.py) or a classifier run (python3 -m classifier.train, grid_search, compare). Their
config.json names the settings class that wrote it (`_config_class`), so a folder of the
other kind, or a config.json that is not JSON, is told apart before anything else is read.

Example:
    >>> data = read_run_config("models/L2_20250101-120000_ab12", "diffusion")
    >>> data["_config_class"]
    'DiffusionConfig'
"""
from __future__ import annotations

import json
from pathlib import Path

from dataset.scan import DatasetError

CONFIG_JSON = "config.json"
# The settings classes whose config.json makes a folder a run of each kind.
RUN_KINDS = {"DiffusionConfig": "diffusion", "TrainAllConfig": "diffusion",
             "ClassifierConfig": "classifier", "GridSearchConfig": "classifier",
             "CompareConfig": "classifier"}
MADE_BY = {"diffusion": "run_diffusion.py or train_all.py",
           "classifier": "python3 -m classifier.train"}


def read_config_json(path: str | Path) -> dict:
    """A run folder's config.json as a dict.

    Raises:
        DatasetError: missing, not UTF-8, not JSON, or not a JSON object (naming the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as err:   # JSONDecodeError is a ValueError
        raise DatasetError(f"{path} is not valid JSON ({err}): the run folder is "
                           f"damaged") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds no JSON object: the run folder is damaged")
    return data


def run_kind(data: dict) -> str | None:
    """'diffusion', 'classifier', or None (another folder, or one written before
    `_config_class`), from a config.json's contents.

    Example:
        >>> run_kind({"_config_class": "CompareConfig"})
        'classifier'
    """
    return RUN_KINDS.get(str(data.get("_config_class")))


def read_run_config(folder: str | Path, kind: str) -> dict:
    """The config.json of `folder`, checked to be a run folder of `kind`.

    A config.json without `_config_class` passes (hand-written or old); one of another
    settings class is refused, naming what the folder is and what makes the needed kind.

    Raises:
        DatasetError: no config.json, not JSON, or a folder of another kind.

    Example:
        >>> read_run_config("models/L2_x", "classifier")
        Traceback (most recent call last):
        DatasetError: models/L2_x is a diffusion run folder; this needs a classifier run folder (python3 -m classifier.train makes one)
    """
    folder = Path(folder)
    data = read_config_json(folder / CONFIG_JSON)
    found = data.get("_config_class")
    if found is not None and run_kind(data) != kind:
        what = (f"a {run_kind(data)} run folder" if run_kind(data)
                else f"not a run folder (its config.json is a {found})")
        raise DatasetError(f"{folder} is {what}; this needs a {kind} run folder "
                           f"({MADE_BY[kind]} makes one)")
    return data
