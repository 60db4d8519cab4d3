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
"""
from __future__ import annotations

import argparse
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
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best one counts)")
    p.add_argument("--runs", type=int, default=10, help="runs sharing the decoded images "
                   "(a comparison of 5 arms x 2 seeds)")
    args = p.parse_args(argv)
    if args.quick:
        args.backbone, args.input_shape, args.epochs, args.classes = "small_cnn", 64, 3, 4
        args.repeats = 2
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


if __name__ == "__main__":
    main()
