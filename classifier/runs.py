"""Run folders: making a new one safely, knowing when one has finished, and rebuilding the
saved classifier from `model.json` (its own description: what `build_classifier` takes) +
`best.weights.h5`, never a pickle; runs written before model.json rebuild from config.json.

Example:
    >>> run_dir = new_run_dir("classifier_runs", "", "small_cnn")
    >>> model, cfg, classes = load_run(run_dir)
"""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

from dataset.atomic import load_weights_checked
from dataset.out_dir import holds_files, remove_stale_temp_files
from dataset.run_folders import read_run_config
from dataset.scan import DatasetError

CONFIG_NAME = "config.json"
MODEL_NAME = "model.json"
WEIGHTS_NAME = "best.weights.h5"
METRICS_NAME = "metrics.json"
_OUR_CLASSES = ("ClassifierConfig", "GridSearchConfig", "CompareConfig")


def is_finished(run_dir: str | Path) -> bool:
    """A run has finished when its metrics.json exists (it is written last, atomically)."""
    return (Path(run_dir) / METRICS_NAME).is_file()


def new_run_dir(out_dir: str | Path, run_name: str, backbone: str) -> Path:
    """Creates `out_dir/<run_name>` (default `<backbone>_<date>-<time>_<id>`).

    An existing folder is reused only when it is an unfinished run of ours (config.json of
    a classifier config, no metrics.json): a crashed run restarts in place.

    Raises:
        DatasetError: the folder holds anything else, or a finished run.
    """
    name = run_name or f"{backbone}_{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:4]}"
    run = Path(out_dir) / name
    if holds_files(run):
        if is_finished(run):
            raise DatasetError(f"run folder {run} holds a finished run: choose another "
                               f"--run_name (nothing changed)")
        cfg_path = run / CONFIG_NAME
        saved = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        if saved.get("_config_class") not in _OUR_CLASSES:
            raise DatasetError(f"run folder {run} already holds files not written by the "
                               f"classifier: choose another --run_name or --out_dir")
    remove_stale_temp_files(run)  # what a crashed run left half-written
    run.mkdir(parents=True, exist_ok=True)
    return run


def architecture(cfg, num_classes: int) -> dict:
    """The arguments `build_classifier` rebuilds a run's network from (weights aside)."""
    return {"backbone": cfg.backbone, "num_classes": int(num_classes),
            "image_size": int(cfg.input_shape), "mean": [float(v) for v in cfg.mean],
            "std": [float(v) for v in cfg.std], "dropout": float(cfg.dropout)}


def save_model_json(run_dir: str | Path, arch: dict) -> Path:
    """Writes run_dir/model.json (atomically): the network, independent of the flags that
    chose it, so a renamed setting cannot break a saved run."""
    import keras

    from dataset.atomic import atomic_write_text
    text = json.dumps({"class": "Classifier", "keras_version": keras.__version__,
                       "config": arch}, indent=2) + "\n"
    return atomic_write_text(Path(run_dir) / MODEL_NAME, text)


def saved_architecture(run_dir: Path, cfg, classes: list) -> dict:
    """model.json's description, or (older runs) the one config.json implies."""
    path = run_dir / MODEL_NAME
    if not path.is_file():
        return architecture(cfg, len(classes))
    try:
        saved = json.loads(path.read_text())
        if saved.get("class", "Classifier") != "Classifier":
            raise ValueError(f"it describes a {saved['class']}, not a classifier")
        arch = saved["config"]
        missing = {"backbone", "image_size", "mean", "std", "dropout"} - set(arch)
        if missing:
            raise ValueError(f"no {', '.join(sorted(missing))}")
        if int(arch["num_classes"]) != len(classes):
            raise ValueError(f"{arch['num_classes']} classes, config.json names {len(classes)}")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is damaged ({err})") from None
    return arch


def _resolve(model_path: Path) -> tuple[Path, Path]:
    """(config.json, weights or .keras file) for a run folder or a file inside one."""
    if model_path.is_dir():
        return model_path / CONFIG_NAME, model_path / WEIGHTS_NAME
    return model_path.parent / CONFIG_NAME, model_path


def load_run(model_path: str | Path, verbose: bool = False):
    """Rebuilds a saved classifier.

    Args:
        model_path: a run folder, a `.weights.h5` file inside one, or a `.keras` file with
            the run's config.json beside it.

    Returns:
        (model, ClassifierConfig, class_names).

    Raises:
        DatasetError: missing files, or a config.json without class names.
    """
    import keras

    from classifier.backbones import build_classifier
    from cli.flags import ConfigError, config_from_dict
    from config import ClassifierConfig
    from runtime.precision import dtype_policy

    model_path = Path(model_path)
    if not model_path.exists():
        raise DatasetError(f"--model {model_path} does not exist")
    cfg_path, weights = _resolve(model_path)
    if not cfg_path.is_file():
        raise DatasetError(f"no {CONFIG_NAME} beside {model_path}: a saved classifier is a "
                           f"run folder with config.json + {WEIGHTS_NAME}")
    # the kind first: a diffusion folder also has config.json and best.weights.h5
    data = read_run_config(cfg_path.parent, "classifier")
    if not weights.is_file():
        raise DatasetError(f"{weights} does not exist (an unfinished run?)")
    classes = data.get("_class_names")
    if not classes:
        raise DatasetError(f"{cfg_path} has no _class_names: not a classifier run")
    known = {k: v for k, v in data.items()
             if k in ClassifierConfig.__dataclass_fields__ or k.startswith("_")}
    try:
        cfg = config_from_dict(ClassifierConfig, known)
    except ConfigError as err:
        raise DatasetError(f"{cfg_path}: {err}") from None
    arch = saved_architecture(cfg_path.parent, cfg, list(classes))
    # what the network is comes from its own description, whatever config.json says
    cfg = dataclasses.replace(cfg, backbone=arch["backbone"], input_shape=arch["image_size"],
                              mean=arch["mean"], std=arch["std"], dropout=arch["dropout"])
    with dtype_policy("float32"):  # evaluation in full precision; the caller's policy stays
        if weights.suffix == ".keras":
            model = keras.saving.load_model(weights, compile=False)
        else:
            model, _ = build_classifier(**arch, weights=None, verbose=verbose)
            load_weights_checked(model, weights)
    return model, cfg, list(classes)
