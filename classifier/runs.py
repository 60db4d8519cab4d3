"""Run folders: making a new one safely, knowing when one has finished, and rebuilding the
saved classifier from `model.json` (its own description: what `build_classifier` takes) +
its weights (`model_folder.ModelFolder`), never a pickle; runs written before model.json rebuild from config.json.

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

from classifier.backbones import build_classifier
from config import ClassifierConfig
from dataset.out_dir import holds_files, remove_stale_temp_files
from dataset.scan import DatasetError
# The classifier's names for its folder's files (its commands and tests use these).
from model_folder.files import BEST_WEIGHTS as WEIGHTS_NAME  # noqa: F401
from model_folder.files import CONFIG_JSON as CONFIG_NAME
from model_folder.files import MODEL_JSON as MODEL_NAME  # noqa: F401
from model_folder.folder import ModelFolder
from runtime.precision import dtype_policy

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
    folder = ModelFolder(run_dir, "classifier")
    return folder.write_description(class_name="Classifier", config=arch)


def saved_architecture(run_dir: Path, cfg, classes: list) -> dict:
    """model.json's description, or (older runs) the one config.json implies."""
    folder = ModelFolder(run_dir, "classifier")
    described = folder.description()
    if described is None:
        return architecture(cfg, len(classes))
    arch = described[1]
    missing = {"backbone", "image_size", "mean", "std", "dropout"} - set(arch)
    problem = (f"no {', '.join(sorted(missing))}" if missing else None)
    if not missing and int(arch.get("num_classes", -1)) != len(classes):
        problem = f"{arch.get('num_classes')} classes, config.json names {len(classes)}"
    if problem:
        raise DatasetError(f"{folder.model_json_path} is damaged ({problem})")
    return arch


def load_run(model_path: str | Path, verbose: bool = False):
    """Rebuilds a saved classifier.

    Args:
        model_path: a run folder, a `.weights.h5` file inside one, or a `.keras` file with
            the run's config.json beside it.

    Returns:
        (model, ClassifierConfig, class_names).

    Raises:
        DatasetError: missing files, a folder of another kind, a config.json without class
            names, or weights of another network (one line naming the folder or file).
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras

    model_path = Path(model_path)
    if not model_path.exists():
        raise DatasetError(f"--model {model_path} does not exist")
    # the kind first: a diffusion folder also has config.json and best.weights.h5
    folder = ModelFolder.open(model_path, "classifier")
    weights = folder.weights()
    classes = folder.config.get("_class_names")
    if not classes:
        raise DatasetError(f"{folder.config_path} has no _class_names: not a classifier run")
    cfg = folder.settings(ClassifierConfig, known_only=True)
    arch = saved_architecture(folder.path, cfg, list(classes))
    # what the network is comes from its own description, whatever config.json says
    cfg = dataclasses.replace(cfg, backbone=arch["backbone"], input_shape=arch["image_size"],
                              mean=arch["mean"], std=arch["std"], dropout=arch["dropout"])

    def build(_folder, _description):
        return build_classifier(**arch, weights=None, verbose=verbose)[0]

    with dtype_policy("float32"):  # evaluation in full precision; the caller's policy stays
        if weights.suffix == ".keras":
            model = keras.saving.load_model(weights, compile=False)
        else:
            model = folder.load(build=build)
    return model, cfg, list(classes)
