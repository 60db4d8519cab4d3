"""Training pipeline: folders in, one run folder out (or continued, with --load_and_train).

A run folder holds:
    config.json          the resolved DiffusionConfig (+ _label, _class_names, _precision)
    model.json           the network's own description (DiffusionModel.get_config())
    last.weights.h5      weights after the latest epoch (network, EMA network, pixel stats,
                         optimizer state for resuming)
    best.weights.h5      a copy of the weights with the best validation metric
    state.json           epochs done, best metric and epoch
    history.csv          per-epoch losses and KID; curves.png plots them
    samples/             sample grids every --sample_every epochs and at the end
    logs/                TensorBoard logs: losses, KID, sample grids (--no-tensorboard: none)

Example:
    >>> cfg = DiffusionConfig(in_dir="diffusion_data/L2", num_epochs=50)
    >>> result = train(cfg)
    >>> result.run_dir
    PosixPath('results/L2_20250101-120000')
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cli.flags import ConfigError, changed_settings, validate_config
from config import ARCHITECTURE_FIELDS, EXECUTOR_FIELDS, DiffusionConfig
from dataset.out_dir import check_outside_inputs, remove_stale_temp_files
from dataset.scan import DatasetError, natural_key
from diffusion.data import (AUGMENT_DIMS, find_label_images, find_labelled_images,
                            image_conditions, load_training_data, resolve_channels)
from diffusion.kid import KernelInceptionDistance, build_feature_extractor
from diffusion.online_augment import ONLINE_AUGMENT_DIMS
from model_folder.build import build_image_model
from model_folder.files import CONFIG_JSON
from model_folder.folder import ModelFolder
from runtime.divergence import TrainingDiverged, stop_on_non_finite_loss
from runtime.precision import has_gpu, select_devices, set_precision

# With --train_steps, one Keras "epoch" is this share of the budget (at least one pass over
# the data): validation, checkpoints and KID then come at ~20 points of any run.
EPOCHS_PER_BUDGET = 20


@dataclass
class TrainResult:
    """What a training run produced (run_dir None on a non-chief worker: it wrote none)."""
    run_dir: Path | None
    label: str
    epochs_done: int
    monitor: str
    best_value: float | None
    best_epoch: int | None
    n_train: int
    n_val: int
    precision: str


@dataclass
class DataPlan:
    """The images a run trains on (file names only; nothing decoded yet)."""
    paths: list[Path]
    label_ids: list[int] | None
    class_names: list[str]
    label: str


def safe_name(text: str) -> str:
    """A file-name-safe version of a label or run name."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-") or "x"


def plan_data(cfg: DiffusionConfig, labels: list[str] | None = None) -> DataPlan:
    """Lists the training images of `cfg.in_dir` (one label, or all labels if conditional)."""
    if cfg.conditional:
        by_label = find_labelled_images(cfg.in_dir, labels)
        names = list(by_label)
        paths = [p for lab in names for p in by_label[lab]]
        ids = [i for i, lab in enumerate(names) for _ in by_label[lab]]
        return DataPlan(paths, ids, names, "conditional")
    label = Path(cfg.in_dir).resolve().name
    return DataPlan(find_label_images(cfg.in_dir), None, [label], label)


def read_run(model_dir: str | Path) -> tuple[DiffusionConfig, dict]:
    """The config and the `_`-prefixed metadata saved in a run folder's config.json.

    Raises:
        ConfigError: no config.json, a damaged one, or a folder of another kind (one line).
    """
    folder = ModelFolder.open(model_dir, "diffusion")
    cfg = folder.settings(DiffusionConfig, legacy=False)
    try:
        # the architecture and ranges; where it trained from may since have moved
        validate_config(dataclasses.replace(cfg, runtime="inference", model_dir=str(model_dir)))
    except ConfigError as err:
        raise ConfigError(f"{folder.config_path}: {err}") from None
    return folder.settings(DiffusionConfig), folder.meta


def training_conditions(cfg: DiffusionConfig, paths: list[Path],
                        saved_sites: list[str] | None = None):
    """(site names, site id per image, augmentation vectors) a run trains with.

    Sites and augmentations come from the stage-1 manifest beside the images (else the file
    names); each is None when its conditioning is off. A resumed run keeps `saved_sites`;
    a site it never saw trains as "no site".
    """
    if not (cfg.site_conditioning or cfg.augment_conditioning):
        return [], None, None
    sites_of, augment, source = image_conditions(paths)
    site_names, site_ids = [], None
    if cfg.site_conditioning:
        site_names = saved_sites or sorted(set(sites_of), key=natural_key)
        site_ids = [site_names.index(x) if x in site_names else len(site_names)
                    for x in sites_of]
        print(f"sites ({source}): {', '.join(site_names)}")
    return site_names, site_ids, augment if cfg.augment_conditioning else None


def kid_extractor(kind: str, state: dict):
    """The KID feature extractor of a run: a resumed run with `kind` "auto" keeps the features
    it started with, so its KID values (and best KID) stay comparable.

    Raises:
        ConfigError: the run used InceptionV3 features and their weights cannot be had now.
    """
    saved = state.get("kid_features")
    if kind == "auto" and saved in ("inception", "random"):
        kind = saved
    try:
        return build_feature_extractor(kind)
    except RuntimeError as err:
        raise ConfigError(f"{err}; this run's KID so far used {saved} features" if saved
                          else str(err)) from None


def epoch_budget(cfg: DiffusionConfig, n_train: int, batch_size: int) -> tuple[int, int | None]:
    """(epochs, steps per epoch or None for one pass) of a run.

    With `train_steps`, the run takes exactly ceil(train_steps / steps_per_epoch) epochs of
    `steps_per_epoch` steps on repeated data; otherwise `num_epochs` passes.

    Example:
        >>> epoch_budget(DiffusionConfig(train_steps=4000), n_train=190, batch_size=16)
        (20, 200)
    """
    if not cfg.train_steps:
        return cfg.num_epochs, None
    per_pass = max(1, n_train // batch_size)
    steps = max(per_pass, -(-cfg.train_steps // EPOCHS_PER_BUDGET))
    return -(-cfg.train_steps // steps), steps


def learning_rate(cfg: DiffusionConfig, planned_steps: int):
    """The optimizer's learning rate: `cfg.learning_rate`, or with `cfg.lr_decay == "cosine"`
    a cosine from it to 0 over `planned_steps` optimizer steps (counted from the run's first
    step, so a resumed run continues the curve; a resumed run with a larger budget stretches
    it, which raises the rate again).

    Example:
        >>> round(float(learning_rate(DiffusionConfig(lr_decay="cosine"), 100)(50)), 6)
        0.0005
    """
    if cfg.lr_decay == "constant":
        return cfg.learning_rate
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, planned_steps))


def with_architecture_of(cfg: DiffusionConfig, saved: DiffusionConfig,
                         quiet: bool = False) -> DiffusionConfig:
    """`cfg` with the architecture fields of `saved` (a model can only load its own shape)."""
    changed = [f for f in ARCHITECTURE_FIELDS if getattr(cfg, f) != getattr(saved, f)]
    if changed and not quiet:
        print(f"note: using the model's saved {', '.join(changed)} (from its config.json)")
    return dataclasses.replace(cfg, **{f: getattr(saved, f) for f in ARCHITECTURE_FIELDS})


def resume_config(cfg: DiffusionConfig, saved: DiffusionConfig,
                  given: set[str] | None = None) -> DiffusionConfig:
    """The settings of a resumed run.

    Args:
        cfg: the settings of this invocation.
        saved: the run folder's config.json.
        given: names of the flags the user typed; those override the saved values (never
            the architecture). None: every field of `cfg` except the architecture counts.
    """
    keep = {"runtime", "load_and_train", "model_dir"}
    if given is None:
        merged = with_architecture_of(cfg, saved)
    else:
        ignored = sorted(f for f in given if f in ARCHITECTURE_FIELDS
                         and getattr(cfg, f) != getattr(saved, f))
        if ignored:
            print(f"note: a resumed run keeps its architecture (and learning-rate schedule); "
                  f"ignoring --{', --'.join(ignored)}")
        changes = {f: getattr(cfg, f) for f in (set(given) | keep)
                   if f not in ARCHITECTURE_FIELDS and hasattr(cfg, f)}
        merged = dataclasses.replace(saved, **changes)
    if not merged.in_dir:
        merged = dataclasses.replace(merged, in_dir=saved.in_dir)
    return merged


def precision_mode(cfg: DiffusionConfig) -> str:
    if cfg.use_mix_precision is None:
        return "auto"
    if not cfg.use_mix_precision:
        return "float32"
    return "mixed_float16" if has_gpu() else "mixed_bfloat16"


def setup_runtime(cfg: DiffusionConfig):
    """Devices, then the dtype policy (before any layer exists), then the strategy."""
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    mirrored = cfg.distribute == "mirrored"
    if cfg.distribute == "multiworker" and "TF_CONFIG" not in os.environ:
        raise ConfigError("--distribute multiworker needs the TF_CONFIG environment variable "
                          "(the cluster and this worker's index; see docs/cluster.md)")
    if cfg.distribute == "multiworker":
        # First of all: it configures TensorFlow's collectives, starts this worker's server
        # and waits for every worker. It uses all GPUs this process sees.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return set_precision(precision_mode(cfg)), strategy
    devices = select_devices(None if mirrored else cfg.gpu_index,
                             cfg.cpu_devices if mirrored else 1)
    policy = set_precision(precision_mode(cfg))
    strategy = tf.distribute.MirroredStrategy(devices) if mirrored else tf.distribute.get_strategy()
    return policy, strategy


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder: always, except the non-chief workers of
    --distribute multiworker (worker 0 is the chief unless TF_CONFIG names one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    kind, index = resolver.task_type, resolver.task_id
    return kind == "chief" or (kind == "worker" and index == 0
                               and "chief" not in resolver.cluster_spec().as_dict())


def augment_inputs(cfg: DiffusionConfig, run_dir: str | Path | None = None) -> int:
    """The length of the augmentation vector the network takes: 0 without augmentation
    conditioning (and for the GAN, whose DiffAugment already cannot leak); for a new run
    the stage-1/flip entries and the online ones; for an existing run folder what its
    model.json says (folders without one predate the online entries)."""
    if not cfg.augment_conditioning or cfg.model == "gan":
        return 0
    if run_dir is None:
        return AUGMENT_DIMS + ONLINE_AUGMENT_DIMS
    saved = ModelFolder(run_dir, "diffusion").description()
    return int(saved[1].get("augment_dims", AUGMENT_DIMS)) if saved else AUGMENT_DIMS


def build_model(cfg: DiffusionConfig, num_classes: int = 0, num_sites: int = 0,
                augment_dims: int | None = None):
    """A DiffusionModel (or, with `cfg.model == "gan"`, a ConditionalGan) with the
    architecture of `cfg` (policy must already be set).

    `cfg.channels` must be resolved ('1' or '3'); `num_sites` counts when
    `cfg.site_conditioning` is on (DDIM only); `augment_dims` as `augment_inputs` gives
    (default: that of a folder without model.json).
    """
    if augment_dims is None:
        augment_dims = AUGMENT_DIMS if cfg.augment_conditioning else 0
    return build_image_model(cfg, num_classes, num_sites, augment_dims)


def new_run_dir(out_dir: str | Path, label: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(out_dir) / f"{safe_name(label)}_{stamp}_{uuid.uuid4().hex[:4]}"


# Settings that do not change what a run learns: a rerun that differs only in these may
# reuse (or resume) the run.
_RUN_ONLY = frozenset({"runtime", "load_and_train", "model_dir", "out_dir", "gpu_index",
                       "distribute", "cpu_devices", "cache_images", "tensorboard",
                       "num_workers", *EXECUTOR_FIELDS})


def earlier_runs(cfg: DiffusionConfig, label: str, class_names: list[str] | None = None
                 ) -> list[tuple[Path, bool]]:
    """Run folders in `cfg.out_dir` of `label` trained with the same settings, oldest first,
    each with whether it finished; only those with weights to resume from.

    Args:
        cfg: this invocation's settings (channels "auto" matches any resolved value).
        label: the run's label ("conditional" for the one shared model).
        class_names: a conditional run's labels; a run on other labels does not count.

    Example:
        >>> earlier_runs(cfg, "conditional", ["1", "2"])
        [(PosixPath('models/conditional_20261130-145641_31f2'), True)]
    """
    # why: diffusion.callbacks subclasses Keras callbacks, so importing it loads TensorFlow
    from diffusion.callbacks import STATE_JSON
    keys = [f.name for f in dataclasses.fields(cfg) if f.name not in _RUN_ONLY]
    now = dataclasses.replace(cfg, in_dir=str(Path(cfg.in_dir).resolve()))
    found = []
    for config in Path(cfg.out_dir).glob(f"{safe_name(label)}_*/{CONFIG_JSON}"):
        run = config.parent
        try:
            saved = json.loads(config.read_text())
            state = json.loads((run / STATE_JSON).read_text()) \
                if (run / STATE_JSON).is_file() else {}
        except (OSError, ValueError):
            continue  # a damaged folder is not ours to reuse
        saved["in_dir"] = str(Path(str(saved.get("in_dir", ""))).resolve())
        if now.channels == "auto":
            saved["channels"] = "auto"
        same = not changed_settings(saved, now, keys)
        if (saved.get("_label") != label or not same or not ModelFolder(run, "diffusion").has_weights("last")
                or (class_names is not None and saved.get("_class_names") != class_names)):
            continue
        found.append((config.stat().st_mtime, run, bool(state.get("finished"))))
    return [(run, done) for _, run, done in sorted(found)]


def describe_plan(cfg: DiffusionConfig, labels: list[str] | None = None) -> str:
    """What `train(cfg)` would do, for --dry-run (reads file names only)."""
    if cfg.load_and_train:
        saved, meta = read_run(cfg.model_dir)
        state_path = Path(cfg.model_dir) / "state.json"
        done = json.loads(state_path.read_text())["epochs_done"] if state_path.exists() else 0
        return (f"would resume {cfg.model_dir} (label {meta.get('_label', '?')}) from epoch "
                f"{done} to {cfg.num_epochs}")
    plan = plan_data(dataclasses.replace(cfg), labels)
    what = (f"one conditional model for labels {', '.join(plan.class_names)}"
            if cfg.conditional else f"label {plan.label}")
    budget = (f"{cfg.train_steps} optimizer steps" if cfg.train_steps
              else f"up to {cfg.num_epochs} epochs")
    return (f"would train {what} on {len(plan.paths)} images from {cfg.in_dir} at "
            f"{cfg.image_size[0]}x{cfg.image_size[1]} for {budget} "
            f"(validation {cfg.validation_split:.0%}), into a new folder "
            f"{new_run_dir(cfg.out_dir, plan.label).parent}/{safe_name(plan.label)}_<time>/")


def train(cfg: DiffusionConfig, labels: list[str] | None = None, verbose: int | str = "auto",
          strategy=None, policy: str | None = None, given: set[str] | None = None
          ) -> TrainResult:
    """Trains (or resumes) one diffusion model and fills its run folder.

    Args:
        cfg: settings; `cfg.load_and_train` resumes `cfg.model_dir`.
        labels: with `cfg.conditional`, the label folders to use (default: all).
        verbose: Keras fit verbosity (progress bar by default).
        strategy, policy: from `setup_runtime` when the caller already set it up.
        given: when resuming, the flags the user typed (see `resume_config`).

    Raises:
        DatasetError, ConfigError: bad input folders or settings.
    """
    # why: diffusion.callbacks subclasses Keras callbacks, so importing it loads TensorFlow
    from diffusion import callbacks as cb

    meta: dict = {}
    state: dict = {}
    if not cfg.load_and_train:
        check_outside_inputs(cfg)  # or the sample grids become training images next time
    if cfg.load_and_train:
        run_dir = Path(cfg.model_dir)
        saved, meta = read_run(run_dir)
        cfg = resume_config(cfg, saved, given)
        last = ModelFolder(run_dir, "diffusion").weights_path("last")
        if not last.exists():
            raise ConfigError(f"{run_dir} has no {last.name} to resume from")
        if (run_dir / cb.STATE_JSON).exists():
            state = json.loads((run_dir / cb.STATE_JSON).read_text())
    if strategy is None:
        policy, strategy = setup_runtime(cfg)
    plan = plan_data(cfg, labels if labels else (meta.get("_class_names")
                                                 if cfg.conditional and meta else None))
    if cfg.channels == "auto":
        cfg = dataclasses.replace(cfg, channels=str(resolve_channels(cfg.channels, plan.paths)))
    site_names, site_ids, augment = training_conditions(cfg, plan.paths,
                                                        meta.get("_site_names"))
    augment_dims = augment_inputs(cfg, run_dir if cfg.load_and_train else None)
    online = augment_dims > AUGMENT_DIMS
    if cfg.augment_p > 0 and cfg.augment_conditioning and not online:
        print("note: this run folder's network has no inputs for online augmentation "
              "(trained before they existed); it trains on without it (--augment_p ignored)")
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    data = load_training_data(plan.paths, plan.label_ids, cfg.image_size, global_batch,
                              cfg.validation_split, cfg.seed, cfg.flip_augment,
                              cfg.cache_images, strategy.num_replicas_in_sync,
                              channels=int(cfg.channels), sites=site_ids, augment=augment,
                              augment_p=cfg.augment_p if online else None,
                              label_balance=cfg.label_balance if cfg.conditional else 0.0)
    if data.repeats and len(set(data.repeats.values())) > 1:
        print("label balance: training images repeated "
              + ", ".join(f"{plan.class_names[k]} x{r}" for k, r in sorted(data.repeats.items())))
    num_epochs, steps_per_epoch = epoch_budget(cfg, data.n_train, global_batch)
    if cfg.load_and_train:
        if steps_per_epoch and meta.get("_steps_per_epoch"):
            # epochs must keep their length, or the epoch count no longer counts steps
            steps_per_epoch = int(meta["_steps_per_epoch"])
            num_epochs = -(-cfg.train_steps // steps_per_epoch)
        if state.get("epochs_done", 0) >= num_epochs:
            raise ConfigError(f"{run_dir} already has {state['epochs_done']} epochs; give a "
                              f"larger --num_epochs (or --train_steps) to continue")
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable file(s):")
        for reason in data.skipped:
            print(f"  {reason}")
    if not cfg.load_and_train:
        run_dir = new_run_dir(cfg.out_dir, plan.label)
    chief = is_chief(strategy)
    # Every worker of --distribute multiworker runs the same callbacks; only the chief's
    # files make the run folder, the others write into a temporary one.
    write_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="diffusion_worker_"))
    if chief and not cfg.load_and_train:
        run_dir.mkdir(parents=True, exist_ok=False)
    elif chief:
        remove_stale_temp_files(run_dir)  # a weights file whose write a kill cut short
    try:
        return _fit(cfg, plan, data, state, policy, strategy, run_dir, write_dir,
                    site_names, augment_dims, num_epochs, steps_per_epoch, global_batch,
                    verbose)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def diverged_reason(what: str, checkpoint, run_dir: Path, model: str) -> str:
    """The one-line reason of a run stopped by a NaN/inf loss, after marking its state.json
    failed (its last good epoch stays resumable: the NaN epoch saved no weights).

    Example:
        >>> diverged_reason("training loss n_loss became nan in epoch 3 (step 7)", ...)
        'training loss n_loss became nan in epoch 3 (step 7); best weights of epoch 2 kept in ...'
    """
    checkpoint.extra_state["failed"] = what
    done = checkpoint.epochs_done
    if done:
        checkpoint.write_state(done)
    kept = (f"best weights of epoch {checkpoint.best_epoch} kept in {run_dir}"
            if checkpoint.best_epoch else
            f"last weights of epoch {done} kept in {run_dir}" if done else "no weights kept")
    rate = "--gan_learning_rate" if model == "gan" else "--learning_rate"
    return f"{what}; {kept}; try a lower {rate}"


def _fit(cfg, plan, data, state, policy, strategy, run_dir: Path, write_dir: Path,
         site_names, augment_dims: int, num_epochs: int, steps_per_epoch: int | None,
         global_batch: int, verbose) -> TrainResult:
    """The model, its callbacks and fit: the second half of `train`. Reads from run_dir
    (resuming), writes into write_dir (run_dir except on non-chief workers)."""
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    from diffusion import callbacks as cb
    budget = (f"{num_epochs} x {steps_per_epoch} = {num_epochs * steps_per_epoch} steps"
              if steps_per_epoch else f"{num_epochs} epochs")
    print(f"training {plan.label}: {data.n_train} train / {data.n_val} validation images, "
          f"{cfg.channels} channel(s), {budget}, {strategy.num_replicas_in_sync} replica(s), "
          f"precision {policy}, run folder {run_dir}")
    num_classes = len(plan.class_names) if cfg.conditional else 0
    epoch_steps = steps_per_epoch or max(1, data.n_train // global_batch)
    with strategy.scope():
        model = build_model(cfg, num_classes, len(site_names), augment_dims)
        rate = learning_rate(cfg, num_epochs * epoch_steps)
        optimizer = keras.optimizers.AdamW(learning_rate=rate,
                                           weight_decay=cfg.weight_decay)
        model.compile(optimizer=optimizer)
        # Built before the first step: a step that creates the optimizer's slots is traced
        # twice. The .weights.h5 of a resumed run holds them too (they load only when built).
        model.optimizer.build(model.network.trainable_variables)
        if cfg.load_and_train:
            ModelFolder(run_dir, "diffusion").load_weights(model, "last")
        else:
            model.adapt_normalizer(data.train.map(lambda *x: x[0]))
    # the folder describes its settings and its network (old folders too, once resumed)
    ModelFolder(write_dir, "diffusion").describe(model, cfg, label=plan.label, class_names=plan.class_names,
                 precision=policy, num_train=data.n_train, num_val=data.n_val,
                 site_names=site_names, epochs=num_epochs, steps_per_epoch=steps_per_epoch)

    monitor = cfg.checkpoint_monitor
    has_val = data.val is not None
    gan = cfg.model == "gan"
    if gan and monitor != "val_kid":
        # a GAN's losses say nothing about its images: only KID picks its best weights
        print("note: a GAN keeps the weights of its best KID (--kid_every) as best, else the "
              "last; early stopping is off")
        monitor = "val_kid"
    ignored = cfg.ignored_by_gan() if gan else []
    if ignored:
        print(f"note: --model gan trains without the DDIM-only {', '.join(ignored)}")
    if not has_val and monitor == "val_n_loss":
        print("note: no validation images (--validation_split 0): best weights follow the "
              "training loss")
        monitor = "n_loss"
    kid_every = 1 if monitor == "val_kid" else cfg.kid_every
    # one row per label (8 images each, 4 beyond 8 labels, at most 16 rows)
    per_label = 8 if num_classes <= 8 else 4
    sample_labels = (np.repeat(np.arange(min(num_classes, 16)), per_label)
                     if num_classes else None)
    # first: a NaN/inf loss stops the run before KID, checkpoints or grids see its epoch
    callbacks = [stop_on_non_finite_loss()]
    kid = None
    if kid_every:
        real = data.val_images
        if real is None or len(real) < 2:
            raise ConfigError("KID needs at least 2 validation images; raise "
                              "--validation_split or set --kid_every 0")
        kid = KernelInceptionDistance(kid_extractor(cfg.kid_features, state), real)
        kid_labels = None
        if num_classes:
            kid_labels = np.resize(np.asarray(data.val_labels, np.int32), cfg.kid_images)
    # Always present (NaN when off) so every history.csv row has the same columns, also
    # when a resumed run changes --kid_every.
    callbacks.append(cb.KIDCallback(kid, kid_every if kid else 0, cfg.kid_images,
                                    cfg.kid_diffusion_steps, cfg.seed,
                                    kid_labels if kid else None, cfg.generate_batch_size))
    callbacks.append(keras.callbacks.CSVLogger(str(write_dir / cb.HISTORY_CSV),
                                               append=cfg.load_and_train))
    best_value, best_epoch = state.get("best_value"), state.get("best_epoch")
    kid_kind = kid.extractor.kind if kid is not None else state.get("kid_features")
    if monitor == "val_kid" and state.get("kid_features", kid_kind) != kid_kind:
        # a best KID in other features is no yardstick: the best starts again
        print(f"note: KID features changed from {state['kid_features']} to {kid_kind}; the "
              f"best KID so far is forgotten")
        best_value = best_epoch = None
    checkpoint = cb.RunCheckpoint(write_dir, monitor, best_value, best_epoch,
                                  {"precision": policy, "kid_features": kid_kind},
                                  epoch_steps)
    callbacks.append(checkpoint)
    grid = cb.SampleGrid(write_dir, cfg.sample_every,
                         len(sample_labels) if num_classes else 16,
                         min(20, cfg.generate_diffusion_steps), cfg.seed, sample_labels,
                         per_label if num_classes else None, tensorboard=cfg.tensorboard)
    callbacks.append(grid)
    if cfg.tensorboard:  # after KID and the checkpoint, so it logs what they add
        callbacks.append(cb.tensorboard_callback(write_dir))
    if cfg.early_stop_patience and not gan:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=cfg.early_stop_patience,
            min_delta=cfg.early_stop_min_delta, start_from_epoch=cfg.early_stop_start_epoch,
            mode="min"))
    initial_epoch = int(state.get("epochs_done", 0))
    try:
        history = model.fit(data.train.repeat() if steps_per_epoch else data.train,
                            validation_data=data.val, epochs=num_epochs,
                            steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                            callbacks=callbacks, verbose=verbose,
                            shuffle=False)  # tf.data shuffles
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: python3 run_diffusion.py --load_and_train "
              f"--model_dir {run_dir}")
        raise
    except TrainingDiverged as err:
        raise TrainingDiverged(diverged_reason(str(err), checkpoint, run_dir, cfg.model)
                               ) from None
    epochs_done = initial_epoch + len(history.history.get("n_loss", []))
    checkpoint.write_state(epochs_done, finished=True)
    grid.save("final")
    wrote = run_dir if write_dir == run_dir else None
    return TrainResult(wrote, plan.label, epochs_done, monitor, checkpoint.best_value,
                       checkpoint.best_epoch, data.n_train, data.n_val, policy)


__all__ = ["train", "TrainResult", "plan_data", "read_run", "describe_plan", "build_model",
           "setup_runtime", "DatasetError"]
