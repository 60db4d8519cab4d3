"""One training run: data -> model -> best checkpoint -> metrics, in its own run folder.

    out_dir/<run>/config.json        resolved settings + class names (rebuilds the model)
                  best.weights.h5    weights of the best validation epoch (restored at the end)
                  history.csv        per-epoch training loss and validation metrics
                  metrics.json       validation and test metrics (one scale: fractions)
                  predictions_<test>.csv   per test image: path, label, predicted
                  confusion_<set>.png
                  synthetic_weights.csv, filter_model/   (with --sample_weighting diagen)

Model selection and early stopping use the validation metric `evaluation_type`, computed
with the same code as the final metrics. The best weights are saved to disk when they occur
and loaded back at the end (the original pipeline kept the last weights and called them best).

Example:
    >>> result = train_run(ClassifierConfig(train_dir="data/train", backbone="small_cnn"))
    >>> result.metrics["val"]["macro_f1"]
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from classifier import calibration, longtail, sampling
from classifier.augment import keras_augmenter, make_batch_augmenter
from classifier.backbones import build_classifier
from classifier.data import (Sample, load_images, predict_logits, samples_from_dir,
                             samples_from_manifest, train_dataset)
from classifier.feature_fill import fill_features
from classifier.head import penultimate_features, retrain_head
from classifier.losses import AdjustedCrossEntropy
from classifier.metrics import (classification_metrics, cross_entropy, higher_is_better,
                                monitor_value)
from classifier.report import contact_sheet, plot_confusion, write_csv, write_json
from classifier.runs import (CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, architecture, is_finished,
                             load_run, new_run_dir, save_model_json, saved_architecture)
from classifier.synthetic_filter import in_distribution
from cli.flags import save_config_json
from config import REAL_ONLY_SETTINGS
from dataset.atomic import save_weights_atomic
from dataset.out_dir import check_outside_inputs
from dataset.scan import DatasetError, natural_key
from runtime.divergence import stop_on_non_finite_loss
from runtime.precision import set_precision


@dataclass
class ImageSet:
    """Decoded images with class indices, sample weights and their source samples."""
    images: np.ndarray
    labels: np.ndarray
    samples: list[Sample]
    weights: np.ndarray | None = None

    @property
    def synthetic(self) -> np.ndarray:
        return np.array([s.synthetic for s in self.samples], dtype=bool)


@dataclass
class RunResult:
    run_dir: Path
    model: object
    metrics: dict
    history: list[dict] = field(default_factory=list)


def _to_set(samples: Sequence[Sample], class_names: Sequence[str], cfg, what: str,
            skipped: list[str]) -> ImageSet:
    images, ok, errors = load_images([s.path for s in samples], cfg.input_shape, cfg.grayscale,
                                     workers=cfg.workers, desc=f"loading {what}")
    skipped.extend(errors)
    kept = [samples[i] for i in ok]
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[s.label] for s in kept], dtype=np.int64)
    return ImageSet(images, labels, kept)


def prepare_data(cfg, rng: np.random.Generator, skipped: list[str]):
    """Reads the training source, splits off validation (real images only), applies the
    real:synthetic ratio and loads the pixels.

    Returns:
        (class_names, train ImageSet, val ImageSet)
    """
    if cfg.manifest:
        samples, class_names = samples_from_manifest(cfg.manifest, cfg.real_generators)
    else:
        samples, class_names = samples_from_dir(cfg.train_dir, what="--train_dir",
                                                skipped=skipped)
    if len(class_names) < 2:
        raise DatasetError(f"training data has {len(class_names)} class(es); a classifier "
                           f"needs at least 2")
    index = {c: i for i, c in enumerate(class_names)}
    # Sorted by label and file name: a folder and a manifest of the same real images (in
    # another row order) then give the same validation split for a seed, so the arms of a
    # comparison select their epochs on the same images.
    real = sorted((s for s in samples if not s.synthetic),
                  key=lambda s: (s.label, natural_key(Path(s.path).name), s.path))
    # Weight 0 means the synthetic images carry nothing: leaving them out also keeps them
    # out of the batches and the BatchNorm statistics, so the run is the real-only run.
    synth = [s for s in samples if s.synthetic] if cfg.synthetic_weight > 0 else []
    if cfg.val_dir:
        val_samples, _ = samples_from_dir(cfg.val_dir, class_names, what="--val_dir")
        train_real = real
    else:
        # Validation holds real images only: the metric must say how real images fare.
        tr, va = sampling.stratified_split([index[s.label] for s in real],
                                           cfg.validation_split, rng)
        train_real, val_samples = [real[i] for i in tr], [real[i] for i in va]
    keep = sampling.select_synthetic(len(train_real), [index[s.label] for s in synth],
                                     cfg.synthetic_ratio, rng)
    train_samples = train_real + [synth[i] for i in keep]
    if not val_samples:
        raise DatasetError("no validation images: give --val_dir or at least 2 images per "
                           "label")
    train = _to_set(train_samples, class_names, cfg, "training images", skipped)
    val = _to_set(val_samples, class_names, cfg, "validation images", skipped)
    if len(train.labels) == 0 or len(val.labels) == 0:
        raise DatasetError("no readable training or validation images")
    return class_names, train, val


class BestCheckpoint:
    """Keras callback: validation metrics each epoch, best weights saved to disk when they
    occur, early stopping after `patience` epochs without improvement, and the saved best
    weights loaded back when training ends."""

    def __new__(cls, *args, **kwargs):
        # Subclass keras.callbacks.Callback lazily: no Keras import at module import.
        # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
        import keras

        class _Impl(keras.callbacks.Callback):
            def __init__(self, val: ImageSet, class_names, evaluation_type: str, path: Path,
                         patience: int, min_delta: float, batch_size: int, network=None):
                super().__init__()
                # The network whose weights are judged and saved; default: the fitted model
                # (a SplitBatchNormTrainer fits a wrapper around the network).
                self.network = network
                self.val, self.class_names = val, list(class_names)
                self.evaluation_type, self.path = evaluation_type, Path(path)
                self.patience, self.min_delta, self.batch_size = patience, min_delta, batch_size
                self.higher = higher_is_better(evaluation_type)
                self.best = -np.inf if self.higher else np.inf
                self.best_epoch, self.wait, self.stopped_epoch = 0, 0, 0
                self.best_loss = np.inf
                self.history: list[dict] = []

            def on_epoch_end(self, epoch, logs=None):
                logs = logs if logs is not None else {}
                logits = predict_logits(self.net, self.val.images, self.batch_size)
                m = classification_metrics(self.val.labels, logits.argmax(1), self.class_names)
                m["loss"] = cross_entropy(logits, self.val.labels)
                for key in ("loss", "accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"):
                    logs[f"val_{key}"] = m[key]
                value = monitor_value(m, self.evaluation_type)
                improved = (value > self.best + self.min_delta if self.higher
                            else value < self.best - self.min_delta)
                # Small validation sets tie often (accuracy 1.0 twice): with min_delta 0 a
                # tie is broken by the lower validation loss.
                tie = (self.min_delta == 0 and value == self.best
                       and m["loss"] < self.best_loss)
                if improved or tie or self.best_epoch == 0:
                    improved = True
                    self.best, self.best_epoch, self.wait = value, epoch + 1, 0
                    self.best_loss = m["loss"]
                    save_weights_atomic(self.net, self.path)
                else:
                    self.wait += 1
                    if self.patience and self.wait >= self.patience:
                        self.stopped_epoch = epoch + 1
                        self.model.stop_training = True
                self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
                                     "best": int(improved)})

            def on_train_end(self, logs=None):
                if self.path.is_file():
                    self.net.load_weights(self.path)

            @property
            def net(self):
                return self.network if self.network is not None else self.model

        return _Impl(*args, **kwargs)


def training_plan(cfg, train: ImageSet, rng: np.random.Generator) -> np.ndarray:
    """The sample indices of every batch of every epoch (`sampling.epoch_plan`); with
    --synthetic_replace_prob the plan runs over the real images, whose slots are then given
    to synthetic images of the same label with that probability (DA-Fusion)."""
    if cfg.synthetic_replace_prob is None:
        return sampling.epoch_plan(train.labels, cfg.number_epochs, cfg.batch_size, rng,
                                   class_balanced=cfg.class_balanced,
                                   steps_per_epoch=cfg.steps_per_epoch)
    real = np.flatnonzero(~train.synthetic)
    plan = real[sampling.epoch_plan(train.labels[real], cfg.number_epochs, cfg.batch_size,
                                    rng, class_balanced=cfg.class_balanced,
                                    steps_per_epoch=cfg.steps_per_epoch)]
    return longtail.replace_with_synthetic(plan, train.labels, train.synthetic,
                                           cfg.synthetic_replace_prob, rng)


def loss_weights(cfg, train: ImageSet) -> np.ndarray:
    """Per image: its DIAGen weight (1 without), times --synthetic_weight if synthetic."""
    weights = (np.ones(len(train.labels)) if train.weights is None
               else np.asarray(train.weights, dtype=np.float64).copy())
    weights[train.synthetic] *= cfg.synthetic_weight
    return weights


def fit_model(cfg, class_names: Sequence[str], train: ImageSet, val: ImageSet,
              weights_path: Path, verbose: int = 2, extra_callbacks: Sequence = ()):
    """Builds, trains and returns (model, checkpoint callback, weights_used); the model ends
    with the best validation weights, which are also in `weights_path`."""
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras

    set_precision(cfg.precision, use_gpu=False if cfg.precision == "auto" else None)
    keras.utils.set_random_seed(cfg.seed)
    arch = architecture(cfg, len(class_names))
    model, used = build_classifier(**arch, weights=None if cfg.weights == "none" else cfg.weights)
    save_model_json(weights_path.parent, arch)  # the run folder describes its network
    rng = np.random.default_rng(cfg.seed + 1)
    plan = training_plan(cfg, train, rng)
    weights = loss_weights(cfg, train)
    seen = plan.reshape(-1)
    offsets = (longtail.logit_offsets(longtail.effective_prior(
        train.labels[seen], len(class_names), weights[seen]), cfg.la_tau)
        if cfg.logit_adjusted else None)
    trainer = model
    if cfg.synthetic_bn == "separate":
        # why: SplitBatchNormTrainer subclasses keras.Model, so importing it loads TensorFlow
        from classifier.split_bn import SplitBatchNormTrainer
        trainer = SplitBatchNormTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                    loss=AdjustedCrossEntropy(offsets),
                    jit_compile=False)  # XLA measured slower for these small nets on CPU
    # Built here, its slots exist before the first step: otherwise the first step creates
    # them and TensorFlow traces the whole training step a second time (1-2 s every run).
    trainer.optimizer.build(trainer.trainable_variables)
    smoothing = np.where(train.synthetic, cfg.synthetic_label_smoothing, 0.0)
    targets = longtail.soft_targets(train.labels, len(class_names), smoothing)
    augment = make_batch_augmenter(cfg.augm_type, cfg.augm_probability, seed=cfg.seed,
                                   preset=cfg.albumentations_preset,
                                   strength=cfg.augm_strength, flip=cfg.augm_flip)
    ds = train_dataset(train.images, targets, weights, plan, cfg.batch_size, augment,
                       synthetic=train.synthetic if trainer is not model else None)
    ckpt = BestCheckpoint(val, class_names, cfg.evaluation_type, weights_path,
                          cfg.early_stop_patience, cfg.early_stop_min_delta,
                          max(cfg.batch_size, 64), network=model)
    # after the checkpoint, which adds the validation metrics to the epoch logs
    board = ([keras.callbacks.TensorBoard(log_dir=str(Path(weights_path).parent / "logs"),
                                          write_graph=False, profile_batch=0)]
             if cfg.tensorboard else [])
    trainer.fit(ds, epochs=cfg.number_epochs, steps_per_epoch=plan.shape[1] // cfg.batch_size,
              # first: a NaN/inf loss stops the run before the checkpoint sees the epoch
              callbacks=[stop_on_non_finite_loss(), ckpt, *board, *extra_callbacks],
              verbose=verbose,
              shuffle=False)  # the plan already shuffles, reproducibly
    return model, ckpt, used


def _real_part(train: ImageSet) -> ImageSet:
    real = ~train.synthetic
    return ImageSet(train.images[real], train.labels[real],
                    [s for s, r in zip(train.samples, real) if r])


def real_only_classifier(cfg, run_dir: Path, class_names, train: ImageSet, val: ImageSet,
                         verbose: int, what: str):
    """The classifier that judges synthetic images (DIAGen, --synthetic_filter): the
    finished run --filter_model names, else one trained on the real images alone, once per
    run folder (run_dir/filter_model, reused by both)."""
    fdir = run_dir / "filter_model"
    source = cfg.filter_model or (str(fdir) if (fdir / WEIGHTS_NAME).is_file()
                                  and (fdir / "trained.txt").is_file() else "")
    if source:
        model, _, filter_classes = load_run(source)
        if list(filter_classes) != list(class_names):
            raise DatasetError(f"--filter_model {source} knows classes {filter_classes}, "
                               f"the data has {list(class_names)}")
        if cfg.filter_model and not is_finished(cfg.filter_model):
            raise DatasetError(f"--filter_model {cfg.filter_model} is not a finished run "
                               f"(no metrics.json)")
        return model
    fdir.mkdir(exist_ok=True)
    fcfg = dataclasses.replace(cfg, **REAL_ONLY_SETTINGS, sample_weighting="none",
                               synthetic_ratio=0.0, manifest="",
                               train_dir="(real images of the parent run)",
                               run_name="filter_model", out_dir=str(run_dir))
    save_config_json(fcfg, fdir / CONFIG_NAME, class_names=list(class_names))
    real_set = _real_part(train)
    if verbose:
        print(f"{what}: training the real-only filter classifier on {len(real_set.labels)} "
              f"images")
    model, _, _ = fit_model(fcfg, class_names, real_set, val, fdir / WEIGHTS_NAME, verbose)
    (fdir / "trained.txt").write_text("finished\n")
    return model


def diagen_weights_for(cfg, run_dir: Path, class_names, train: ImageSet, val: ImageSet,
                       verbose: int) -> tuple[np.ndarray, dict]:
    """DIAGen: weights of the training images (1 for real ones) from a temperature-
    calibrated real-only classifier averaged over `diagen_views` augmented views."""
    model = real_only_classifier(cfg, run_dir, class_names, train, val, verbose, "DIAGen")
    temperature = calibration.fit_temperature(predict_logits(model, val.images), val.labels)
    syn = np.flatnonzero(train.synthetic)
    weights = np.ones(len(train.labels))
    p_true = np.zeros(len(syn))
    if len(syn):
        x = train.images[syn].astype(np.float32)
        layer = keras_augmenter("flip", seed=cfg.seed, flip=cfg.augm_flip)
        for v in range(cfg.diagen_views):
            view = x if v == 0 else np.asarray(layer(x, training=True))
            probs = calibration.softmax(predict_logits(model, np.clip(view, 0, 255)), temperature)
            p_true += probs[np.arange(len(syn)), train.labels[syn]] / cfg.diagen_views
        weights[syn] = calibration.diagen_weights(np.clip(p_true, 0, 1), cfg.diagen_threshold)
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    write_csv(run_dir / "synthetic_weights.csv", pd.DataFrame({
        "path": [train.samples[i].path for i in syn],
        "label": [train.samples[i].label for i in syn],
        "p_label_calibrated": p_true, "weight": weights[syn]}))
    info = {"temperature": temperature, "n_synthetic": int(len(syn)),
            "mean_weight_synthetic": float(weights[syn].mean()) if len(syn) else None,
            "threshold": cfg.diagen_threshold,
            # The images that lost weight: the same test as diagen_weights' (p < threshold).
            "n_below_threshold": int((weights[syn] < 1.0).sum())}
    return weights, info


def filter_synthetic(cfg, run_dir: Path, class_names, train: ImageSet, val: ImageSet,
                     verbose: int) -> tuple[ImageSet, dict]:
    """--synthetic_filter in_distribution: drops the synthetic images the real-only
    classifier calls another label or finds farther from their label's real images than
    those are from each other. Writes synthetic_filter.csv (every image, kept or not, and
    why) and synthetic_filter_dropped.png (a contact sheet of the dropped ones).

    Returns:
        (the training set without the dropped images, per-label counts kept / dropped)."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    syn = np.flatnonzero(train.synthetic)
    if not len(syn):
        return train, {"n_synthetic": 0, "per_label": {}}
    model = real_only_classifier(cfg, run_dir, class_names, train, val, verbose,
                                 "--synthetic_filter")
    real = np.flatnonzero(~train.synthetic)
    real_f = penultimate_features(model, train.images[real])
    syn_f = penultimate_features(model, train.images[syn])
    predicted = predict_logits(model, train.images[syn]).argmax(1)
    keep, rows = in_distribution(real_f, train.labels[real], syn_f, train.labels[syn],
                                 predicted, cfg.filter_percentile)
    table = pd.DataFrame(rows)
    table.insert(0, "path", [train.samples[i].path for i in syn])
    table["label"] = [class_names[i] for i in table["label"]]
    table["predicted"] = [class_names[i] for i in table["predicted"]]
    write_csv(run_dir / "synthetic_filter.csv", table)
    per_label = {c: {"kept": int(((table["label"] == c) & table["kept"]).sum()),
                     "dropped": int(((table["label"] == c) & ~table["kept"]).sum())}
                 for c in dict.fromkeys(table["label"])}
    dropped = table[~table["kept"]]
    if len(dropped):
        contact_sheet(train.images[syn[~keep]], [f"{r.label}: {r.reason.split()[0]}"
                                                 for r in dropped.itertuples()],
                      run_dir / "synthetic_filter_dropped.png",
                      "synthetic images the in-distribution filter dropped")
    if verbose:
        print("--synthetic_filter: " + ", ".join(
            f"{c} kept {v['kept']} dropped {v['dropped']}" for c, v in per_label.items()))
    drop = set(syn[~keep].tolist())
    kept = np.array([i for i in range(len(train.labels)) if i not in drop], dtype=np.int64)
    out = ImageSet(train.images[kept], train.labels[kept], [train.samples[i] for i in kept],
                   None if train.weights is None else np.asarray(train.weights)[kept])
    return out, {"n_synthetic": int(len(syn)), "n_dropped": int((~keep).sum()),
                 "percentile": cfg.filter_percentile, "per_label": per_label}


def load_start_run(cfg, class_names):
    """(model, model.json description) of --from_run, checked to know the same classes.

    Raises:
        DatasetError: not a finished classifier run, or one of other classes.
    """
    if not is_finished(cfg.from_run):
        raise DatasetError(f"--from_run {cfg.from_run} is not a finished classifier run (no "
                           f"{METRICS_NAME})")
    model, start_cfg, start_classes = load_run(cfg.from_run)
    if list(start_classes) != list(class_names):
        raise DatasetError(f"--from_run {cfg.from_run} knows classes {start_classes}, the "
                           f"data has {list(class_names)}")
    if (start_cfg.input_shape, start_cfg.grayscale) != (cfg.input_shape, cfg.grayscale):
        raise DatasetError(f"--from_run {cfg.from_run} reads {start_cfg.input_shape} px "
                           f"images (grayscale {start_cfg.grayscale}); this run reads "
                           f"{cfg.input_shape} px (grayscale {cfg.grayscale})")
    return model, saved_architecture(Path(cfg.from_run), start_cfg, start_classes)


def finetune_head(model, cfg, run_dir: Path, class_names, train: ImageSet, val: ImageSet,
                  verbose: int) -> dict:
    """Re-trains the output layer on the real training images' features (cRT: class-
    balanced batches), or with --feature_fill on real + generated features (LDMLR), and
    saves the whole network (encoder unchanged + new head) as the run's best weights."""
    real = _real_part(train)
    features = penultimate_features(model, real.images)
    val_features = penultimate_features(model, val.images)
    labels, weights = real.labels, np.ones(len(real.labels))
    smoothing = np.zeros(len(labels))
    info: dict = {"n_real_features": int(len(labels))}
    if cfg.feature_fill:
        gen, gen_labels, fill_info = fill_features(cfg, run_dir, class_names, features,
                                                   labels, verbose)
        features = np.concatenate([features, gen])
        labels = np.concatenate([labels, gen_labels])
        weights = np.concatenate([weights, np.full(len(gen_labels), cfg.synthetic_weight)])
        smoothing = np.concatenate([smoothing, np.full(len(gen_labels),
                                                       cfg.synthetic_label_smoothing)])
        info.update(fill_info)
    # cRT balances the batches; a feature fill has balanced the data itself.
    result = retrain_head(model, cfg, class_names, features, labels, weights, val_features,
                          val.labels, class_balanced=not cfg.feature_fill, verbose=verbose,
                          smoothing=smoothing)
    save_weights_atomic(model, run_dir / WEIGHTS_NAME)
    return {**info, **result}


def evaluate_folder(model, folder: str | Path, class_names: Sequence[str], cfg,
                    what: str = "--test_dir", batch_size: int = 64,
                    skipped: list[str] | None = None,
                    predictions_path: str | Path | None = None) -> dict:
    """Metrics of `model` on `folder/<label>/...`; a label the model does not know is an
    error (DatasetError), labels missing from the folder simply have no support.

    With `predictions_path`, one CSV row per image (path, label, predicted) is written there:
    the comparison's bootstrap resamples test images and pairs arms image by image."""
    errors = [] if skipped is None else skipped
    # an empty label folder or a stray file is left out like an unreadable image: said
    samples, _ = samples_from_dir(folder, class_names, what=what, skipped=errors)
    test = _to_set(samples, class_names, cfg, f"{Path(folder).name} images", errors)
    if len(test.labels) == 0:
        raise DatasetError(f"{what} {folder}: none of its images could be read")
    logits = predict_logits(model, test.images, batch_size)
    pred = logits.argmax(1)
    m = classification_metrics(test.labels, pred, class_names)
    m["loss"] = cross_entropy(logits, test.labels)
    m["folder"] = str(folder)
    if predictions_path is not None:
        # why: pandas is slow to import and only the tables need it
        import pandas as pd
        write_csv(predictions_path, pd.DataFrame({
            "path": [s.path for s in test.samples],
            "label": [class_names[i] for i in test.labels],
            "predicted": [class_names[i] for i in pred]}))
    return m


def _test_sets(cfg) -> dict[str, str]:
    sets = {"test": cfg.test_dir} if cfg.test_dir else {}
    for d in cfg.ood_test_dirs or []:
        name = Path(d).name or "ood"
        while name in sets:
            name += "_"
        sets[name] = d
    return sets


def plan_text(cfg) -> str:
    """What a run would do, for --dry-run."""
    source = f"manifest {cfg.manifest}" if cfg.manifest else f"folders {cfg.train_dir}"
    val = cfg.val_dir or f"{cfg.validation_split:.0%} of each label's real training images"
    lines = [f"train {cfg.backbone} ({cfg.weights} weights) at {cfg.input_shape} px on {source}",
             f"validation: {val}; best epoch and early stopping by {cfg.evaluation_type} "
             f"(patience {cfg.early_stop_patience})",
             f"augmentation: {cfg.augm_type} at p={cfg.augm_probability}, strength "
             f"{cfg.augm_strength}, flips {cfg.augm_flip}; "
             f"class_balanced={cfg.class_balanced}; synthetic_ratio="
             f"{'all' if cfg.synthetic_ratio is None else cfg.synthetic_ratio}; "
             f"sample_weighting={cfg.sample_weighting}",
             f"up to {cfg.number_epochs} epochs of "
             + (f"{cfg.steps_per_epoch} steps" if cfg.steps_per_epoch
                else "one pass over the training images")
             + f", batch {cfg.batch_size}, lr {cfg.learning_rate}",
             f"tests: {', '.join(f'{k}={v}' for k, v in _test_sets(cfg).items()) or 'none'}",
             f"writes into {Path(cfg.out_dir) / (cfg.run_name or '<backbone>_<time>_<id>')}"]
    return "\n".join(lines)


def train_run(cfg, verbose: int = 2, extra_callbacks: Sequence = ()) -> RunResult:
    """Trains one classifier as `cfg` says and writes its run folder.

    Args:
        cfg: a validated ClassifierConfig.
        verbose: Keras fit verbosity (0 silent, 2 one line per epoch).
        extra_callbacks: more Keras callbacks (tests use one to record weights per epoch).

    Raises:
        DatasetError: a one-line data problem (empty folder, unknown test class, ...).
    """
    t0 = time.time()
    for name, d in [("--train_dir", cfg.train_dir), ("--val_dir", cfg.val_dir),
                    *[("--test_dir", v) for v in _test_sets(cfg).values()]]:
        if d and not Path(d).is_dir():
            raise DatasetError(f"{name} {d} is not a folder")
    rng = np.random.default_rng(cfg.seed)
    skipped: list[str] = []
    check_outside_inputs(cfg)
    class_names, train, val = prepare_data(cfg, rng, skipped)
    if skipped and verbose:
        # Said before training, not only in metrics.json: a left-out label changes the task.
        print(f"left out {len(skipped)} item(s) of the training data:\n  "
              + "\n  ".join(skipped[:10]) + ("\n  ..." if len(skipped) > 10 else ""))
    for name, folder in _test_sets(cfg).items():  # an unknown test class fails before training
        samples_from_dir(folder, class_names,
                         "--test_dir" if name == "test" else "--ood_test_dirs")
    run_dir = new_run_dir(cfg.out_dir, cfg.run_name, cfg.backbone)
    save_config_json(cfg, run_dir / CONFIG_NAME, class_names=class_names)
    diagen_info = filter_info = head_info = None
    if cfg.synthetic_filter == "in_distribution":
        train, filter_info = filter_synthetic(cfg, run_dir, class_names, train, val, verbose)
    if cfg.sample_weighting == "diagen":
        train.weights, diagen_info = diagen_weights_for(cfg, run_dir, class_names, train, val,
                                                        verbose)
    if verbose:
        print(f"{run_dir}: {len(class_names)} classes, {len(train.labels)} training images "
              f"({int(train.synthetic.sum())} synthetic), {len(val.labels)} validation")
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    import pandas as pd
    if cfg.from_run:
        model, arch = load_start_run(cfg, class_names)
        save_model_json(run_dir, arch)
        used, history, best, stopped_early = "from_run", [], (0, math.nan), False
    else:
        model, ckpt, used = fit_model(cfg, class_names, train, val, run_dir / WEIGHTS_NAME,
                                      verbose, extra_callbacks)
        history, best = ckpt.history, (ckpt.best_epoch, float(ckpt.best))
        stopped_early = bool(ckpt.stopped_epoch)
    if cfg.finetune_head_epochs:
        head_info = finetune_head(model, cfg, run_dir, class_names, train, val, verbose)
        history = history + [{**row, "phase": "head"} for row in head_info["history"]]
        best = (len(history) - len(head_info["history"]) + head_info["best_epoch"],
                head_info["best_value"])
    write_csv(run_dir / "history.csv", pd.DataFrame(history))
    # The config is saved again with what the run found out (weights actually loaded).
    save_config_json(cfg, run_dir / CONFIG_NAME, class_names=class_names, weights_used=used,
                     precision_used=keras.config.dtype_policy().name)

    logits = predict_logits(model, val.images)
    val_m = classification_metrics(val.labels, logits.argmax(1), class_names)
    val_m["loss"] = cross_entropy(logits, val.labels)
    plot_confusion(val_m["confusion_matrix"], class_names, run_dir / "confusion_val.png",
                   "validation (best epoch)")
    tests = {}
    for name, folder in _test_sets(cfg).items():
        tests[name] = evaluate_folder(model, folder, class_names, cfg,
                                      "--test_dir" if name == "test" else "--ood_test_dirs",
                                      skipped=skipped,
                                      predictions_path=run_dir / f"predictions_{name}.csv")
        plot_confusion(tests[name]["confusion_matrix"], class_names,
                       run_dir / f"confusion_{name}.png", f"{name}: {folder}")
    if skipped and verbose:
        print(f"left out {len(skipped)} item(s) in all (metrics.json lists them), e.g. "
              f"{skipped[0]}")
    counts = np.bincount(train.labels, minlength=len(class_names))
    metrics = {
        "run": run_dir.name, "class_names": class_names, "evaluation_type": cfg.evaluation_type,
        "best_epoch": best[0], "best_value": best[1],
        "epochs_run": len(history), "stopped_early": stopped_early,
        "n_train": int(len(train.labels)), "n_train_synthetic": int(train.synthetic.sum()),
        "n_val": int(len(val.labels)),
        "train_counts": {c: int(n) for c, n in zip(class_names, counts)},
        "weights_used": used, "diagen": diagen_info, "synthetic_filter": filter_info,
        "from_run": cfg.from_run or None,
        "head": None if head_info is None else {k: v for k, v in head_info.items()
                                                if k != "history"},
        "skipped": skipped,
        "seconds": round(time.time() - t0, 1), "val": val_m, "tests": tests}
    write_json(run_dir / METRICS_NAME, metrics)  # last: marks the run finished
    return RunResult(run_dir, model, metrics, history)
