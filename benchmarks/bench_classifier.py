"""Benchmark of the classifier's hot path: training images/s of the tf.data input pipeline
(images decoded once into memory, batches gathered + augmented + prefetched while the model
trains) against a plain Python loop that loads, resizes and feeds every batch eagerly from
disk (`train_on_batch`), with the same model, batch size and data, in the same run.

Uses ../shared/data/custom_coco/train (beside the repository) when present (first --classes label folders),
otherwise writes random JPEGs to a temp folder.

    python3 benchmarks/bench_classifier.py [--quick] [--backbone mobilenetv3small]
        [--input_shape 96] [--batch_size 32] [--epochs 2] [--augm_type flip] [--runs 10]

A second table times a comparison's decoding: every run (arm x seed) decoding its images,
against one cache the runs of the process share.

    python3 benchmarks/bench_classifier.py --loop [--quick] [--repeats 3]

--loop (issue 36's yardstick) instead times the project's training loop,
`classifier.training.fit_model` (what `classifier.train` runs: the epoch plan, the tf.data
pipeline, AdjustedCrossEntropy on one-hot targets with sample weights, the NaN-stop callback,
BestCheckpoint's validation and weight saving every epoch), against a plain Keras
`model.fit` of the same network on the same in-memory images (uint8 held as float32), the
same batch size and number of steps, sparse categorical cross-entropy, no callbacks. Both
start from scratch each time (build + compile + fit), as a run does. Two settings:
small_cnn at 28 px on Fashion-MNIST-LT IF 100 (built with `python3 -m sample_data
--arrangement fmnist_lt` in --work_dir) and MobileNetV3Small at 96 px on custom_coco (weights
none). A third variant, the loop with its validation forward pass stubbed out (zeros logits),
says what validation every epoch costs. Interleaved repeats (a, a without validation, b, ...),
medians. Then the wall time of one `classifier.compare` of 3 arms (original, rebalanced,
logit_adjusted) x 5 seeds on Fashion-MNIST-LT IF 100, 2 epochs x 20 steps of 128, per arm x
seed.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier import sampling  # noqa: E402
from classifier.data import load_images, resize_square, samples_from_dir  # noqa: E402
from dataset.images import load_rgb, save_rgb  # noqa: E402

# The project's shared real dataset, beside the repository (never copied into it).
COCO = ROOT.parent / "shared" / "data" / "custom_coco" / "train"


def dataset(classes: int, tmp: Path) -> tuple[list[str], np.ndarray]:
    if COCO.is_dir():
        samples, names = samples_from_dir(COCO)
        keep = names[:classes]
        samples = [s for s in samples if s.label in keep]
    else:
        rng = np.random.default_rng(0)
        for c in range(classes):
            for i in range(40):
                save_rgb(tmp / f"c{c}" / f"{i}.jpg",
                         rng.integers(0, 256, (160, 200, 3), dtype=np.uint8))
        samples, keep = samples_from_dir(tmp)
    index = {c: i for i, c in enumerate(keep)}
    return [s.path for s in samples], np.array([index[s.label] for s in samples])


def build(args, n_classes):
    import keras

    from classifier.backbones import build_classifier
    keras.utils.set_random_seed(0)
    model, _ = build_classifier(args.backbone, n_classes, args.input_shape, weights=None,
                                verbose=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    return model


def make_pipeline(args, paths, labels, plan):
    """The project's tf.data path: decode once, then a `fit` call per measurement.
    Returns (decode seconds, timed function)."""
    from classifier.augment import make_batch_augmenter
    from classifier.data import train_dataset
    t0 = time.perf_counter()
    images, ok, _ = load_images(paths, args.input_shape, desc=None)
    t_load = time.perf_counter() - t0
    model = build(args, labels.max() + 1)
    aug = make_batch_augmenter(args.augm_type, 0.5, seed=0)
    steps = plan.shape[1] // args.batch_size

    # Built (and its map function traced) once, as in a training run; each fit call
    # iterates it afresh.
    ds = train_dataset(images, labels[ok], np.ones(len(ok)), plan, args.batch_size, aug)

    def timed() -> float:
        t0 = time.perf_counter()
        model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, verbose=0, shuffle=False)
        return time.perf_counter() - t0
    return t_load, timed


def make_plain_loop(args, paths, labels, plan):
    """The plain loop: each batch loaded from disk and resized, augmented eagerly, then one
    `train_on_batch` step. Returns the timed function."""
    from classifier.augment import keras_augmenter
    model = build(args, labels.max() + 1)
    layer = keras_augmenter(args.augm_type, 0) if args.augm_type != "base" else None

    def timed() -> float:
        t0 = time.perf_counter()
        for e in range(args.epochs):
            for b in range(plan.shape[1] // args.batch_size):
                idx = plan[e, b * args.batch_size:(b + 1) * args.batch_size]
                x = np.stack([resize_square(load_rgb(paths[i]), args.input_shape)
                              for i in idx]).astype(np.float32)
                if layer is not None:
                    x = np.clip(np.asarray(layer(x, training=True)), 0, 255)
                model.train_on_batch(x, labels[idx])
        return time.perf_counter() - t0
    return timed


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="small_cnn at 64 px, 3 epochs, 4 classes")
    p.add_argument("--backbone", default="mobilenetv3small")
    p.add_argument("--input_shape", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--augm_type", default="flip")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats (best one counts; default 3, --quick 2; --loop: "
                        "medians, default 3 for small_cnn and 2 for mobilenetv3small)")
    p.add_argument("--runs", type=int, default=10, help="runs sharing the decoded images "
                   "(a comparison of 5 arms x 2 seeds)")
    p.add_argument("--loop", action="store_true",
                   help="fit_model (classifier.train's loop) against a plain model.fit, and "
                        "one compare's wall time (issue 36)")
    p.add_argument("--work_dir", default="/tmp/bench_classifier_loop",
                   help="--loop: where Fashion-MNIST-LT and the compare runs go")
    args = p.parse_args(argv)
    if args.loop:
        loop_benchmark(args)
        return
    if args.quick:
        args.backbone, args.input_shape, args.epochs, args.classes = "small_cnn", 64, 3, 4
        args.repeats = 2
    args.repeats = args.repeats or 3
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = dataset(args.classes, Path(tmp))
        plan = sampling.epoch_plan(labels, args.epochs, args.batch_size,
                                   np.random.default_rng(0))
        n_images = plan.size
        t_load, pipe = make_pipeline(args, paths, labels, plan)
        loop = make_plain_loop(args, paths, labels, plan)
        pipe(), loop()  # warm-up: compiles both training functions
        # Interleaved repeats, best of each: the CPU may be shared with other jobs.
        times = {"pipe": [], "loop": []}
        for _ in range(args.repeats):
            times["loop"].append(loop())
            times["pipe"].append(pipe())
        t_pipe, t_loop = min(times["pipe"]), min(times["loop"])
    print(f"\n{args.backbone} at {args.input_shape} px, batch {args.batch_size}, "
          f"{len(paths)} images x {args.epochs} epoch(s) = {n_images} training images, "
          f"augm_type {args.augm_type}")
    print(f"best of {args.repeats} interleaved repeats; ratio = plain-loop time / time")
    print(f"{'path':<44} {'seconds':>8} {'images/s':>9} {'ratio':>6}")
    rows = [("plain loop (load+resize per batch, eager)", t_loop),
            ("tf.data in-memory + prefetch (training)", t_pipe),
            ("tf.data incl. one-time decode", t_pipe + t_load)]
    for name, t in rows:
        print(f"{name:<44} {t:8.2f} {n_images / t:9.1f} {t_loop / t:6.2f}")
    decode_table(args, paths)


def decode_table(args, paths) -> None:
    """A comparison's decoding: every run (arm x seed) decoding its images itself, against
    one process cache shared by the runs (classifier.data.DecodedCache)."""
    from classifier.data import DecodedCache
    runs = args.runs
    times = {"per run": [], "shared": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(runs):
            load_images(paths, args.input_shape, desc=None, cache=None)
        times["per run"].append(time.perf_counter() - t0)
        cache = DecodedCache()
        t0 = time.perf_counter()
        for _ in range(runs):
            load_images(paths, args.input_shape, desc=None, cache=cache)
        times["shared"].append(time.perf_counter() - t0)
    n = runs * len(paths)
    base = min(times["per run"])
    print(f"\ndecoding for {runs} runs (arms x seeds) of {len(paths)} images at "
          f"{args.input_shape} px; best of {args.repeats}; ratio = per-run time / time")
    print(f"{'decoding':<44} {'seconds':>8} {'images/s':>9} {'ratio':>6}")
    for name in ("per run", "shared"):
        t = min(times[name])
        print(f"{name + ' decode':<44} {t:8.2f} {n / t:9.1f} {base / t:6.2f}")


# --loop: classifier.training.fit_model against a plain model.fit (issue 36) ---------------

# small_cnn: bench_longtail's classifier (28 px, batch 128, lr 3e-3); MobileNetV3Small: a
# custom_coco run at 96 px. Epochs of one pass over the training split (93 steps on
# Fashion-MNIST-LT IF 100, near bench_longtail's 100): a plain fit over arrays cannot run
# more steps per epoch than the arrays hold.
LOOP_SETTINGS = (
    {"name": "small_cnn 28 px, Fashion-MNIST-LT IF 100", "data": "fmnist_lt",
     "backbone": "small_cnn", "input_shape": 28, "batch_size": 128, "learning_rate": 3e-3,
     "number_epochs": 2, "steps_per_epoch": None, "repeats": 3},
    {"name": "mobilenetv3small 96 px, custom_coco", "data": "coco",
     "backbone": "mobilenetv3small", "input_shape": 96, "batch_size": 32,
     "learning_rate": 1e-3, "number_epochs": 2, "steps_per_epoch": None, "repeats": 2},
)
LOOP_QUICK = {"number_epochs": 2, "steps_per_epoch": 5}
COMPARE_ARMS = ("original", "rebalanced", "logit_adjusted")


def fmnist_lt(work: Path) -> Path:
    """Fashion-MNIST-LT IF 100 in work/ (built once; sample_data reuses a finished folder)."""
    from sample_data.__main__ import build
    data = work / "fmnist_lt_if100"
    build(data, None, 0, "fmnist_lt", 100)
    return data


def loop_config(setting: dict, train_dir: Path, out: Path, **over):
    from cli.flags import config_from_dict, validate_config
    from config import ClassifierConfig
    keys = ("backbone", "input_shape", "batch_size", "learning_rate", "number_epochs",
            "steps_per_epoch")
    cfg = config_from_dict(ClassifierConfig, {
        **{k: setting[k] for k in keys}, "train_dir": str(train_dir), "out_dir": str(out),
        "weights": "none", "evaluation_type": "balanced_accuracy",
        # never stops early: both sides train the same number of steps
        "early_stop_patience": 0, "tensorboard": False, "seed": 0, **over})
    validate_config(cfg)
    return cfg


class _Clock:
    """Seconds spent in the patched functions of classifier.training during one call."""

    def __init__(self):
        self.spent: dict[str, float] = {}

    def wrap(self, name, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0
        return timed


@contextlib.contextmanager
def _patched(module, **fns):
    old = {k: getattr(module, k) for k in fns}
    for k, v in fns.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            setattr(module, k, v)


def run_fit_model(cfg, class_names, train, val, run_dir: Path, validation: bool = True
                  ) -> dict:
    """One classifier.training.fit_model call from scratch; seconds in all and by part."""
    import keras

    from classifier import training
    from model_folder.folder import ModelFolder
    clock = _Clock()
    marks: dict[str, float] = {}

    class Marks(keras.callbacks.Callback):  # after the NaN stop and the checkpoint
        def on_train_begin(self, logs=None):
            marks["fit"] = time.perf_counter()

    predict = (clock.wrap("validation", training.predict_logits) if validation
               else clock.wrap("validation", lambda m, x, b=64: np.zeros(
                   (len(x), len(class_names)), np.float32)))
    with _patched(training, predict_logits=predict,
                  classification_metrics=clock.wrap("validation",
                                                    training.classification_metrics),
                  save_weights_atomic=clock.wrap("saving", training.save_weights_atomic)):
        t0 = time.perf_counter()
        training.fit_model(cfg, class_names, train, val, ModelFolder(run_dir, "classifier").weights_path(),
                           verbose=0, extra_callbacks=[Marks()])
        total = time.perf_counter() - t0
    return {"total": total, "setup": marks["fit"] - t0, **clock.spent}


def run_plain_fit(cfg, n_classes: int, x: np.ndarray, y: np.ndarray, steps: int) -> dict:
    """A plain Keras model.fit from scratch: same network, batch size and steps."""
    import keras

    from classifier.backbones import build_classifier
    from classifier.runs import architecture
    t0 = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    model, _ = build_classifier(**architecture(cfg, n_classes), weights=None)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    t1 = time.perf_counter()
    # Exactly `steps` batches per pass, so each epoch is one pass of `steps` steps (Keras
    # keeps a partly used array iterator across epochs and would run out in the next).
    n = steps * cfg.batch_size
    model.fit(x[:n], y[:n], batch_size=cfg.batch_size, epochs=cfg.number_epochs, verbose=0)
    return {"total": time.perf_counter() - t0, "setup": t1 - t0}


def loop_setting(setting: dict, args, work: Path) -> list[dict]:
    """Interleaved repeats of fit_model, fit_model without validation and plain fit at one
    setting; one row per variant with medians."""
    import dataclasses

    from classifier.training import prepare_data, training_plan
    train_dir = fmnist_lt(work) / "train" if setting["data"] == "fmnist_lt" else COCO
    if not train_dir.is_dir():
        print(f"[bench_classifier] {setting['name']}: no {train_dir}, skipped", flush=True)
        return []
    over = LOOP_QUICK if args.quick else {}
    cfg = loop_config({**setting, **over}, train_dir, work / "runs")
    class_names, train, val = prepare_data(cfg, np.random.default_rng(cfg.seed), [])
    plan = training_plan(cfg, train, np.random.default_rng(cfg.seed + 1))
    steps = plan.shape[1] // cfg.batch_size
    n_images = cfg.number_epochs * steps * cfg.batch_size
    x = train.images.astype(np.float32)  # the plain side holds its images as float32
    run_dir = work / "runs" / "fit_model"
    run_dir.mkdir(parents=True, exist_ok=True)
    # Warm-up of both (TensorFlow's one-time costs), tiny.
    small = dataclasses.replace(cfg, number_epochs=1, steps_per_epoch=2)
    run_fit_model(small, class_names, train, val, run_dir)
    run_plain_fit(small, len(class_names), x, train.labels, 2)
    variants = {
        "(a) fit_model (classifier.train's loop)":
            lambda: run_fit_model(cfg, class_names, train, val, run_dir),
        "(a') fit_model, validation predict stubbed":
            lambda: run_fit_model(cfg, class_names, train, val, run_dir, validation=False),
        "(b) plain model.fit, no callbacks":
            lambda: run_plain_fit(cfg, len(class_names), x, train.labels, steps),
    }
    times: dict[str, list[dict]] = {k: [] for k in variants}
    if args.quick:
        del variants["(a') fit_model, validation predict stubbed"]
    repeats = args.repeats or setting["repeats"]
    for r in range(repeats):
        for name, fn in variants.items():
            times[name].append(fn())
            print(f"  [{setting['name']}] repeat {r + 1}: {name}: "
                  f"{times[name][-1]['total']:.2f} s", flush=True)
    base = statistics.median(t["total"] for t in times["(b) plain model.fit, no callbacks"])
    rows = []
    for name, ts in times.items():
        med = {k: statistics.median(t.get(k, 0.0) for t in ts) for k in ts[0]}
        rows.append({"setting": setting["name"], "variant": name,
                     "runs (s)": " / ".join(f"{t['total']:.1f}" for t in ts),
                     "median s": f"{med['total']:.2f}",
                     "set-up s": f"{med['setup']:.2f}",
                     "validation s": f"{med['validation']:.2f}" if "validation" in med
                     else "-",
                     "saving s": f"{med['saving']:.2f}" if "saving" in med else "-",
                     "images/s": f"{n_images / med['total']:.0f}",
                     "vs (b)": f"{base / med['total']:.2f}x"})
    print(f"\n{setting['name']}: {len(train.labels)} training, {len(val.labels)} validation "
          f"images, {len(class_names)} classes; {cfg.number_epochs} epochs x {steps} steps "
          f"of {cfg.batch_size} = {n_images} training images per run", flush=True)
    return rows


def compare_timing(args, work: Path) -> None:
    """Wall time of one classifier.compare: 3 arms x 5 seeds on Fashion-MNIST-LT IF 100, a
    short budget; per arm x seed from its runs.csv."""
    import shutil

    from benchmarks.bench_longtail import compare_settings, run_times
    from classifier.comparison import run_compare
    from cli.flags import config_from_dict, validate_config
    from cli.tables import format_table
    from config import CompareConfig
    data = fmnist_lt(work)
    out = work / "compare"
    shutil.rmtree(out, ignore_errors=True)  # fresh: compare would skip finished runs
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    budget = {"number_epochs": 1, "steps_per_epoch": 5} if args.quick else {
        "number_epochs": 2, "steps_per_epoch": 20}
    cfg = config_from_dict(CompareConfig, compare_settings(
        data, out, list(COMPARE_ARMS), seeds, False, bootstrap=0, **budget))
    validate_config(cfg)
    t0 = time.perf_counter()
    run_compare(cfg, verbose=0)
    wall = time.perf_counter() - t0
    times = run_times(out / "runs.csv")
    n = len(COMPARE_ARMS) * len(seeds)
    print(f"\none classifier.compare of {len(COMPARE_ARMS)} arms x {len(seeds)} seeds on "
          f"Fashion-MNIST-LT IF 100 (small_cnn 28 px, {cfg.number_epochs} epochs x "
          f"{cfg.steps_per_epoch} steps of {cfg.batch_size}, test 10,000 images, no "
          f"bootstrap): wall {wall:.0f} s, {wall / n:.1f} s per arm x seed")
    print("seconds per arm x seed (the run's own training + evaluation, compare's runs.csv):")
    print(format_table(times, list(dict.fromkeys(k for r in times for k in r))))


def loop_benchmark(args) -> None:
    from cli.tables import format_table
    if args.quick:
        args.repeats = 1
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for setting in LOOP_SETTINGS:
        rows += loop_setting(setting, args, work)
    print(f"\nfit_model against a plain model.fit, from scratch (build + compile + fit); "
          f"interleaved repeats (a, a', b, a, ...), medians; vs (b) = (b)'s median time / "
          f"the row's (the target for (a) is >= 0.9x)"
          + (" -- QUICK: tiny settings, the numbers mean nothing" if args.quick else ""))
    print(format_table(rows, list(rows[0])) if rows else "(no setting ran)")
    compare_timing(args, work)
    print(f"\n[bench_classifier --loop] total {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
