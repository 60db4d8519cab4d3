"""Feature-model run folders: train (or resume) on arrays, save, load (layer 3).

A run folder holds
    config.json                  the FeatureDiffusionConfig, class names, feature dim, the
                                 real features' per-dimension mean/std/min/max, training
                                 vectors per label and a fingerprint of the data
    model.json                   the denoiser's own description (FeatureDenoiser.get_config)
    loss.csv                     step, mean training loss of the last `loss_every` steps, wall s
    feature_model.weights.h5     the EMA denoiser; written last, so its presence means done

Resume: a finished folder trained with the same settings on the same data is loaded, not
retrained (its generation settings come from the new cfg). A folder whose training was
interrupted (config.json without weights) is trained again from step 0 into the same
files: training takes seconds to minutes and, keyed on the seed, ends where an
uninterrupted run would. A folder of other settings, data or kind is an error, never
overwritten.

Example:
    >>> model = train_feature_model(feats, labels, ["cat", "dog"], FeatureDiffusionConfig(),
    ...                             "runs/features1")
    >>> model = load_feature_model("runs/features1")
    >>> new_feats, new_labels, seeds = model.generate({"cat": 100}, seed=0)
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli.flags import ConfigError, config_to_dict, validate_config
from config import FeatureDiffusionConfig
from dataset.atomic import atomic_write_text
from feature_diffusion.diffusion import GENERATION_FIELDS, FeatureDiffusion, FeatureTrainer
from feature_diffusion.stats import (FeatureStats, check_training_data, data_fingerprint,
                                     draw_weights)
from model_folder.files import CONFIG_JSON, MODEL_JSON
from model_folder.files import FEATURE_WEIGHTS as WEIGHTS
from model_folder.folder import ModelFolder

LOSS_CSV = "loss.csv"
# Settings that change neither the trained network nor how it samples by default.
_COSMETIC_FIELDS = ("loss_every",)

__all__ = ["FeatureDiffusion", "train_feature_model", "load_feature_model"]


def _training_settings(cfg_dict: dict) -> dict:
    """The settings that decide the trained weights (what a resume must agree on)."""
    skip = set(GENERATION_FIELDS) | set(_COSMETIC_FIELDS) | {"_config_class"}
    return {k: v for k, v in cfg_dict.items() if k not in skip and not k.startswith("_")}


def _open_folder(run_dir: Path) -> ModelFolder:
    """The feature-model folder run_dir, its config.json read and its kind checked.

    Raises:
        ModelFolderError (a DatasetError and a ConfigError): no such folder, no
            config.json, not JSON, or the config of another kind of folder.
    """
    return ModelFolder.open(run_dir, "feature")


def _build_denoiser(_folder, description):
    # why: the denoiser is a Keras model, so importing it loads TensorFlow
    from feature_diffusion.model import FeatureDenoiser
    return FeatureDenoiser(**description[1])


def _model_from_folder(folder: ModelFolder) -> FeatureDiffusion:
    """The FeatureDiffusion that a folder's files describe, weights loaded."""
    cfg, data, run_dir = folder.settings(FeatureDiffusionConfig), folder.config, folder.path
    try:
        names = [str(n) for n in data["_class_names"]]
        stats = FeatureStats.from_lists(data["_feature_mean"], data["_feature_std"],
                                        data["_feature_min"], data["_feature_max"])
        counts = {str(k): int(v) for k, v in data["_label_counts"].items()}
        if stats.dim != int(data["_feature_dim"]):
            raise ValueError(f"_feature_dim {data['_feature_dim']} but {stats.dim} means")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ConfigError(f"{folder.config_path} is damaged ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else 'missing value'})"
                          ) from None
    network = folder.load(build=_build_denoiser)
    try:
        return FeatureDiffusion(network, cfg, names, stats, counts)
    except ValueError as err:
        raise ConfigError(f"{run_dir}: {err}") from None


def load_feature_model(run_dir) -> FeatureDiffusion:
    """Loads a finished feature-model run folder.

    Raises:
        DatasetError / ConfigError: one line naming the folder or file (no folder, no
            config.json, not JSON, another kind of folder, missing or damaged weights).

    Example:
        >>> model = load_feature_model("runs/features1")
    """
    return _model_from_folder(_open_folder(Path(run_dir)))


def _check_resumable(run_dir: Path, meta: dict, cfg) -> bool:
    """Whether run_dir holds a finished run of these settings and data (True), nothing of
    ours yet or an interrupted run of them (False).

    Raises:
        ConfigError: the folder is another kind, or trained with other settings or data.
    """
    if not run_dir.exists():
        return False
    if not (run_dir / CONFIG_JSON).exists():
        ours = [n for n in (MODEL_JSON, LOSS_CSV, WEIGHTS) if (run_dir / n).exists()]
        if ours:
            raise ConfigError(f"{run_dir} holds {ours[0]} but no {CONFIG_JSON}: not a "
                              f"feature-model run folder; choose a new folder")
        return False
    folder = _open_folder(run_dir)
    saved = folder.config
    old, new = _training_settings(saved), _training_settings(config_to_dict(cfg))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise ConfigError(f"{run_dir} was trained with other settings ({', '.join(changed)}); "
                          f"choose a new folder")
    for key in ("data_fingerprint", "class_names"):
        if saved.get(f"_{key}") != meta[key]:
            raise ConfigError(f"{run_dir} was trained on other data ({key} differs); choose "
                              f"a new folder")
    return folder.has_weights()


def train_feature_model(features: np.ndarray, labels: np.ndarray, class_names: list[str],
                        cfg, run_dir, progress: bool = True) -> FeatureDiffusion:
    """Trains a feature generator on (N, D) features with int labels, into run_dir (or
    loads run_dir when it holds this training already; see the module docstring).

    Args:
        features: float (N, D), e.g. a classifier's penultimate activations.
        labels: int (N,), indices into `class_names`.
        class_names: the label names, in label-index order.
        cfg: a FeatureDiffusionConfig.
        run_dir: the run folder (made when missing).
        progress: show a progress bar with the loss.

    Returns:
        The trained FeatureDiffusion (EMA weights), with cfg's generation settings.

    Raises:
        ValueError: bad arrays (one line); ConfigError: run_dir is another run's folder.
    """
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    validate_config(cfg)
    x, y = check_training_data(features, labels, class_names)
    run_dir = Path(run_dir)
    names = [str(n) for n in class_names]
    stats = FeatureStats.of(x)
    counts = {name: int((y == i).sum()) for i, name in enumerate(names)}
    meta = {"class_names": names, "feature_dim": int(x.shape[1]), **stats.to_lists(),
            "label_counts": counts, "data_fingerprint": data_fingerprint(x, y),
            "n_vectors": int(x.shape[0])}
    if _check_resumable(run_dir, meta, cfg):
        return load_feature_model(run_dir).with_generation_settings(cfg)
    for name in (WEIGHTS, MODEL_JSON, LOSS_CSV):  # an interrupted run of ours: start over
        (run_dir / name).unlink(missing_ok=True)
    folder = ModelFolder(run_dir, "feature")
    folder.write_config(cfg, **meta)

    trainer = FeatureTrainer(cfg, x.shape[1], len(names))
    data = tf.constant(stats.standardise(x))
    label_t = tf.constant(y.astype(np.int32))
    cdf = tf.constant(np.cumsum(draw_weights(y, len(names), cfg.label_balance)), "float32")
    rows, start = ["step,loss,wall_s"], time.perf_counter()
    bar = tqdm(total=cfg.train_steps, desc="feature diffusion", unit="step",
               disable=not progress, mininterval=1.0)
    for first in range(0, cfg.train_steps, cfg.loss_every):
        count = min(cfg.loss_every, cfg.train_steps - first)
        loss = trainer.run(data, label_t, cdf, first, count)
        if not np.isfinite(loss):
            raise FloatingPointError(f"feature diffusion loss became {loss} by step "
                                     f"{first + count}; lower --learning_rate")
        rows.append(f"{first + count},{loss:.6g},{time.perf_counter() - start:.2f}")
        bar.update(count)
        bar.set_postfix(loss=f"{loss:.4f}")
    bar.close()
    atomic_write_text(run_dir / LOSS_CSV, "\n".join(rows) + "\n")
    folder.write_description(trainer.ema_network)
    folder.save_weights(trainer.ema_network)  # last: marks the run done
    return FeatureDiffusion(trainer.ema_network, cfg, names, stats, counts)
