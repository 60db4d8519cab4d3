"""Feature-space diffusion (feature_diffusion/): speed, and what sampling settings give.

speed (default)
    Training optimizer steps/s and generated vectors/s for two sizes (64-D features with a
    256-wide, 2-block denoiser; 512-D with the default 512-wide, 4-block one), each against
    a baseline in the same process: the same training step and the same DDIM step with the
    network called eagerly instead of compiled.

--quality
    Real features: a small ReLU + global-average-pool CNN trained on Fashion-MNIST made
    long-tailed (imbalance 100, 500 down to 5 images per class; Debian's
    dataset-fashion-mnist or a download). The feature model trains on the training
    features; each sampling setting (clipping mode, guidance scale, eta) generates 200
    vectors per class, judged against held-out real features of the same class (validation
    images from Fashion-MNIST's training split, never its test split; KID, in
    units of the real features' std), by the CNN's own head (accuracy on generated
    vectors: are they recognisably their class?), by the share of negative values (a ReLU
    feature never is) and by the memorisation share against the training vectors.

Usage:
    python3 benchmarks/bench_feature_diffusion.py             # speed, about 2 minutes
    python3 benchmarks/bench_feature_diffusion.py --quality   # settings, about 10 minutes
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SIZES = {"64-D, 256x2": dict(dim=64, hidden_dim=256, blocks=2),
         "512-D, 512x4": dict(dim=512, hidden_dim=512, blocks=4)}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(quick: bool) -> None:
    import tensorflow as tf
    from config import FeatureDiffusionConfig
    from feature_diffusion.diffusion import FeatureDiffusion, FeatureTrainer
    from feature_diffusion.stats import FeatureStats
    print(f"{'size':<14} {'what':<32} {'compiled':>10} {'eager':>10} {'speed-up':>9}")
    for name, size in SIZES.items():
        rng = np.random.default_rng(0)
        n, classes = 2000, 10
        x = np.maximum(rng.normal(0.5, 1.0, (n, size["dim"])), 0).astype("float32")
        y = rng.integers(0, classes, n)
        cfg = FeatureDiffusionConfig(hidden_dim=size["hidden_dim"], blocks=size["blocks"],
                                     batch_size=256)
        stats = FeatureStats.of(x)
        trainer = FeatureTrainer(cfg, size["dim"], classes)
        data, labels = tf.constant(stats.standardise(x)), tf.constant(y.astype("int32"))
        cdf = tf.constant(np.linspace(1.0 / n, 1.0, n), "float32")
        compile_s = _timed(lambda: trainer.run(data, labels, cdf, 0, 1))
        steps, eager_steps = (50, 3) if quick else (300, 10)
        trainer.run(data, labels, cdf, 1, 1, compiled=False)        # eager warm-up
        compiled = steps / _timed(lambda: trainer.run(data, labels, cdf, 2, steps))
        eager = eager_steps / _timed(lambda: trainer.run(data, labels, cdf, 2, eager_steps,
                                                         compiled=False))
        print(f"{name:<14} {'training steps/s (batch 256)':<32} {compiled:>10.1f} "
              f"{eager:>10.1f} {compiled / eager:>8.1f}x   (first compiled call "
              f"{compile_s:.1f} s)")
        model = FeatureDiffusion(trainer.ema_network, cfg, [str(i) for i in range(classes)],
                                 stats)
        m = 64 if quick else 256    # one batch of m vectors, both ways
        names, seeds = [str(i % classes) for i in range(m)], list(range(m))
        for guidance in (1.0, 1.5):
            kw = dict(steps=50, guidance_scale=guidance, batch_size=m)
            model.generate_from_seeds(names[:8], seeds[:8], **kw)   # trace
            compiled = m / _timed(lambda: model.generate_from_seeds(names, seeds, **kw))
            eager = m / _timed(lambda: model.generate_from_seeds(names, seeds, compiled=False,
                                                                 **kw))
            what = f"vectors/s, 50 steps, guidance {guidance}"
            print(f"{name:<14} {what:<32} {compiled:>10.0f} {eager:>10.0f} "
                  f"{compiled / eager:>8.1f}x")


# -- quality of the sampling settings ------------------------------------------------------
def long_tail_fmnist(per_class_max=500, imbalance=100, held_out_per_class=300, seed=0):
    """Fashion-MNIST, class i keeping per_class_max * imbalance ** (-i / 9) training images,
    and `held_out_per_class` other images of each class from the training split: the
    validation features the sampling settings are chosen on (the test split stays unseen).
    """
    from sample_data.fashion_mnist import load_fashion_mnist
    rng = np.random.default_rng(seed)
    xs, ys = load_fashion_mnist("train")
    keep, held = [], []
    for c in range(10):
        pool = rng.permutation(np.flatnonzero(ys == c))
        n = max(2, round(per_class_max * imbalance ** (-c / 9)))
        keep += list(pool[:n])
        held += list(pool[n:n + held_out_per_class])
    prep = lambda a: (a[..., None] / 255.0).astype("float32")  # noqa: E731
    return prep(xs[keep]), ys[keep], prep(xs[held]), ys[held]


def train_encoder(x, y, epochs=15, seed=0):
    """A small ReLU CNN, global-average-pooled to 64 features, then a Dense head."""
    import keras
    from keras import layers
    keras.utils.set_random_seed(seed)
    inp = keras.Input((28, 28, 1))
    h = inp
    for width in (32, 64, 64):
        h = layers.Conv2D(width, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D()(h)
    feats = layers.GlobalAveragePooling2D(name="features")(h)
    out = layers.Dense(10, name="head")(feats)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    encoder = keras.Model(inp, feats)
    return encoder, model.get_layer("head")


def quality(train_steps: int) -> None:
    from config import FeatureDiffusionConfig
    from feature_diffusion.quality import feature_quality
    from feature_diffusion.train import train_feature_model
    x, y, xv, yv = long_tail_fmnist()
    t = time.perf_counter()
    encoder, head = train_encoder(x, y)
    f_train = encoder.predict(x, verbose=0, batch_size=256)
    f_val = encoder.predict(xv, verbose=0, batch_size=256)
    print(f"encoder trained and features extracted in {time.perf_counter() - t:.0f} s; "
          f"{len(x)} training images, counts {np.bincount(y).tolist()}, "
          f"{f_train.shape[1]}-D, {np.mean(f_train == 0):.0%} of values exactly 0")
    head_acc = lambda f, lab: float(np.mean(  # noqa: E731
        np.argmax(np.asarray(head(f)), 1) == lab))
    print(f"real-only head: accuracy on held-out features {head_acc(f_val, yv):.3f}")
    names = [str(c) for c in range(10)]
    cfg = FeatureDiffusionConfig(train_steps=train_steps)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = train_feature_model(f_train, y, names, cfg, Path(tmp) / "run", progress=False)
    print(f"feature diffusion: {train_steps} steps in {time.perf_counter() - t:.0f} s")
    val_names = [str(c) for c in yv]
    ref = {r["label"]: r for r in feature_quality(f_val, val_names, f_train,
                                                  [str(c) for c in y])}
    tail = names[5:]
    mem = feature_quality(f_train, [str(c) for c in y], f_val, val_names)
    print(f"real training features vs held-out: KID tail (classes 5-9) "
          f"{np.mean([ref[c]['kid'] for c in tail]):.3f}; held-out real features flagged as "
          f"memorised against the training ones: "
          f"{np.nanmean([r['memorised_share'] for r in mem]):.1%}")
    print(f"{'clip':<11} {'guid':>4} {'eta':>4} {'KID all':>8} {'KID tail':>9} "
          f"{'head acc':>9} {'acc tail':>9} {'neg share':>10} {'memorised':>10} {'s':>5}")
    settings = [(c, g, 1.0) for g in (1.0, 1.5) for c in ("none", "final", "every_step")]
    settings += [("every_step", 3.0, 1.0), ("every_step", 1.0, 0.0)]
    for clip, guidance, eta in settings:
        t = time.perf_counter()
        feats, labels, _ = model.generate({n: 200 for n in names}, seed=1, clip=clip,
                                          guidance_scale=guidance, eta=eta)
        secs = time.perf_counter() - t
        lab = np.array([int(n) for n in labels])
        rows = {r["label"]: r for r in feature_quality(f_val, val_names, feats, labels)}
        mem = feature_quality(f_train, [str(c) for c in y], feats, labels)
        print(f"{clip:<11} {guidance:>4} {eta:>4} "
              f"{np.mean([rows[c]['kid'] for c in names]):>8.3f} "
              f"{np.mean([rows[c]['kid'] for c in tail]):>9.3f} "
              f"{head_acc(feats, lab):>9.3f} {head_acc(feats[lab >= 5], lab[lab >= 5]):>9.3f} "
              f"{np.mean(feats < 0):>10.1%} "
              f"{np.nanmean([r['memorised_share'] for r in mem]):>10.1%} {secs:>5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", action="store_true", help="measure sampling settings")
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
    parser.add_argument("--train_steps", type=int, default=3000)
    args = parser.parse_args()
    if args.quality:
        quality(300 if args.quick else args.train_steps)
    else:
        speed(args.quick)


if __name__ == "__main__":
    main()
