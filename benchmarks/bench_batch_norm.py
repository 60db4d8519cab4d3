"""Benchmark of a classifier training step with Keras' BatchNormalization against the fused
kernel (`classifier.fused_batch_norm`), on the same network, data and batch size.

For each backbone the network is built as the project builds it, and a copy of it with every
BatchNormalization layer swapped for Keras' own (same config, same weights); both train on the
same in-memory batch stream (Adam, sparse cross-entropy). Rounds alternate keras, fused,
keras, ...; the table has the medians of wall and CPU (process) time per step and the ratios
keras / fused. Each thread count runs in its own process (TensorFlow fixes its thread pools
at start-up); one thread is how `--executor ray --task_cpus 1` runs each training.

    python3 benchmarks/bench_batch_norm.py [--quick] [--threads 1 2] [--rounds 5] [--steps 40]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# backbone, image size, batch size: the Fashion-MNIST-LT benchmark's network and the
# custom_coco evidence benchmark's
SETTINGS = [("small_cnn", 28, 128), ("mobilenetv3small", 96, 32)]


def networks(backbone: str, size: int):
    """(name, compiled model) pairs: the network as build_classifier makes it, with every
    BatchNormalization layer (nested ones too) Keras' own, and with every one fused."""
    import keras

    from classifier.backbones import build_classifier
    from classifier.fused_batch_norm import BatchNormalization as Fused
    keras.utils.set_random_seed(0)
    built, _ = build_classifier(backbone, 10, size, weights=None, verbose=False)

    def swap(cls):
        def clone(layer):
            if isinstance(layer, keras.layers.BatchNormalization):
                return cls.from_config(layer.get_config())
            return layer.__class__.from_config(layer.get_config())
        model = keras.models.clone_model(built, clone_function=clone, recursive=True)
        model.set_weights(built.get_weights())
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        return model

    models = [("keras", swap(keras.layers.BatchNormalization)), ("fused", swap(Fused))]
    count = {name: sum(isinstance(v, Fused) for v in m._flatten_layers()) for name, m in models}
    return models, count


def child(args) -> None:
    """One process at one thread count: alternating rounds, medians per network."""
    import numpy as np
    import tensorflow as tf
    rows = []
    for backbone, size, batch in SETTINGS:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (batch * 8, size, size, 3)).astype(np.float32)
        y = rng.integers(0, 10, len(x))
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat().prefetch(2)
        models, count = networks(backbone, size)
        for _, model in models:       # warm-up: traces the training step
            model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
        times = {name: [] for name, _ in models}
        for _ in range(args.rounds):
            for name, model in models:
                c0, t0 = time.process_time(), time.perf_counter()
                model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0)
                times[name].append((time.perf_counter() - t0, time.process_time() - c0))
        med = {name: (statistics.median(w for w, _ in ts) / args.steps * 1e3,
                      statistics.median(c for _, c in ts) / args.steps * 1e3)
               for name, ts in times.items()}
        rows.append({"backbone": f"{backbone} {size} px, batch {batch}",
                     "threads": args.threads,
                     "fused BN layers (keras / fused)": f"{count['keras']} / {count['fused']}",
                     "keras ms/step (wall / CPU)": "%.1f / %.1f" % med["keras"],
                     "fused ms/step (wall / CPU)": "%.1f / %.1f" % med["fused"],
                     "wall keras/fused": "%.2fx" % (med["keras"][0] / med["fused"][0]),
                     "CPU keras/fused": "%.2fx" % (med["keras"][1] / med["fused"][1])})
    print("ROWS " + json.dumps(rows), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="2 rounds of 5 steps (smoke run)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 5
    if args.child:
        args.threads = args.threads[0]
        child(args)
        return
    from cli.tables import format_table
    rows = []
    for threads in args.threads:
        env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
               "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(threads),
                              "--rounds", str(args.rounds), "--steps", str(args.steps)],
                             env=env, capture_output=True, text=True, check=True).stdout
        rows += json.loads(next(ln for ln in out.splitlines() if ln.startswith("ROWS "))[5:])
        print(f"[bench_batch_norm] {threads} thread(s) done", flush=True)
    print(f"\none training step, Keras BatchNormalization against the fused kernel; medians "
          f"of {args.rounds} alternating rounds of {args.steps} steps"
          + (" -- QUICK: the numbers mean little" if args.quick else ""))
    print(format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
