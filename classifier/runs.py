"""Run folders: making a new one safely, knowing when one has finished, and rebuilding the
saved classifier from `config.json` + `best.weights.h5` (never a pickle).

Example:
    >>> run_dir = new_run_dir("classifier_runs", "", "small_cnn")
    >>> model, cfg, classes = load_run(run_dir)
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from dataset.atomic import load_weights_checked
from dataset.scan import DatasetError

CONFIG_NAME = "config.json"
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
    if run.exists() and any(run.iterdir()):
        if is_finished(run):
            raise DatasetError(f"run folder {run} holds a finished run: choose another "
                               f"--run_name (nothing changed)")
        cfg_path = run / CONFIG_NAME
        saved = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        if saved.get("_config_class") not in _OUR_CLASSES:
            raise DatasetError(f"run folder {run} already holds files not written by the "
                               f"classifier: choose another --run_name or --out_dir")
    run.mkdir(parents=True, exist_ok=True)
    return run


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

    model_path = Path(model_path)
    if not model_path.exists():
        raise DatasetError(f"--model {model_path} does not exist")
    cfg_path, weights = _resolve(model_path)
    if not cfg_path.is_file():
        raise DatasetError(f"no {CONFIG_NAME} beside {model_path}: a saved classifier is a "
                           f"run folder with config.json + {WEIGHTS_NAME}")
    if not weights.is_file():
        raise DatasetError(f"{weights} does not exist (an unfinished run?)")
    data = json.loads(cfg_path.read_text())
    classes = data.get("_class_names")
    if not classes:
        raise DatasetError(f"{cfg_path} has no _class_names: not a classifier run")
    known = {k: v for k, v in data.items()
             if k in ClassifierConfig.__dataclass_fields__ or k.startswith("_")}
    try:
        cfg = config_from_dict(ClassifierConfig, known)
    except ConfigError as err:
        raise DatasetError(f"{cfg_path}: {err}") from None
    keras.config.set_dtype_policy("float32")
    if weights.suffix == ".keras":
        model = keras.saving.load_model(weights, compile=False)
    else:
        model, _ = build_classifier(cfg.backbone, len(classes), cfg.input_shape, weights=None,
                                    mean=cfg.mean, std=cfg.std, dropout=cfg.dropout,
                                    verbose=verbose)
        load_weights_checked(model, weights)
    return model, cfg, list(classes)
