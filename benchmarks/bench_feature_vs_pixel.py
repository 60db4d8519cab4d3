"""Feature-space against pixel-space generation: stages 2 + 3 wall time on the same data.

Issue 35's speed check, measured in one process on Fashion-MNIST-LT (the images of
`python3 -m sample_data --arrangement fmnist_lt --imbalance 100`, drawn in memory with the
same functions and seed): a 20% stratified validation split (classifier/sampling.py), then
the stage-3 plan of every label filled up to the largest (classifier/longtail.py
fill_counts: 36,087 samples at imbalance 100). Both sides make that same fill.

feature side (classifier/feature_fill.py's work)
    1  extraction   a small_cnn classifier (untrained weights: the cost is the same)
                    computes the penultimate features of all training images
                    (classifier/head.py penultimate_features), one call, trace included
    2f training     FeatureTrainer with the default FeatureDiffusionConfig (256x2 denoiser,
                    batch 256) on the training split's features, in loss_every chunks as
                    feature_diffusion/train.py runs it; the full 3000 steps (first compiled
                    call, with its trace, included), or with --quick 300 steps: the first
                    call once plus the rest at the steady rate
    3f generation   FeatureDiffusion.generate_from_seeds of the whole plan (one vector per
                    (label, seed), 50 steps, the config's guidance), or with --quick a
                    share of it extrapolated
pixel side (the long-tail generator recipe of benchmarks/bench_evidence.py settings)
    2p training     conditional DDIM at 32x32, 1 channel (grey images: channels auto),
                    widths [32, 64, 96], block_depth 2, embedding 32, batch 32: steps/s
                    over a few dozen fit steps after a warm-up (bench_diffusion.step_times),
                    extrapolated to 3000 steps; compile, KID and sample sheets not counted
    3p generation   images/s of stage-3 sampling (50 DDIM steps, AugmentationConfig's
                    guidance 3, eta and batch 32; bench_diffusion.sample_rate),
                    extrapolated to the same fill count

Training and generation run in interleaved rounds (a slice of each side in turn), so a busy
machine slows both alike. The pixel figures leave out costs the feature side pays (trace,
compile): the ratios are lower bounds.

Usage:
    python3 benchmarks/bench_feature_vs_pixel.py            # about 6 minutes on 2 cores
    python3 benchmarks/bench_feature_vs_pixel.py --quick    # a smoke run, about 2 minutes
                                                            # (most of it the U-Net compile)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))      # bench_diffusion's helpers
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# the pixel recipe (benchmarks/bench_evidence.py settings, not quick)
PIXEL = dict(image_size=(32, 32), widths=[32, 64, 96], block_depth=2, embedding_dims=32,
             batch_size=32, train_steps=3000, learning_rate=1e-3)
SAMPLE_STEPS = 50
VAL_FRACTION = 0.2


def cpu_model() -> str:
    """The CPU's model name as lscpu gives it (else /proc/cpuinfo), with the core count."""
    name = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.strip().lower().startswith("model name")), "")
    except (OSError, subprocess.SubprocessError):
        pass
    if not name:
        try:
            with open("/proc/cpuinfo") as fh:
                name = next((ln.split(":", 1)[1].strip() for ln in fh
                             if ln.lower().startswith("model name")), "")
        except OSError:
            pass
    return f"{name or 'unknown CPU'}, {os.cpu_count()} logical CPU(s)"


def fill_plan(labels, val_fraction: float = VAL_FRACTION, seed: int = 0
              ) -> tuple[np.ndarray, dict[int, int]]:
    """(training indices, {class: samples to generate}) of a stage-3-like plan: the
    classifier's stratified validation split, then every class filled up to the largest.

    Example:
        >>> train, need = fill_plan([0] * 10 + [1] * 5)
        >>> len(train), need
        (12, {0: 0, 1: 4})
    """
    from classifier.longtail import fill_counts
    from classifier.sampling import stratified_split
    labels = np.asarray(labels, dtype=int)
    train, _ = stratified_split(labels, val_fraction, np.random.default_rng(seed))
    counts = np.bincount(labels[train])
    need = fill_counts({c: int(n) for c, n in enumerate(counts) if n})
    return train, {int(c): int(n) for c, n in need.items()}


def extrapolate(seconds: float, measured: float, target: float) -> float:
    """Wall time of `target` units at the rate of `measured` units in `seconds`.

    Example:
        >>> extrapolate(2.0, 40, 3000)
        150.0
    """
    if measured <= 0:
        raise ValueError(f"nothing measured ({measured} units)")
    return seconds * target / measured


def split_even(total: int, parts: int) -> list[int]:
    """`total` as `parts` whole numbers differing by at most one.

    Example:
        >>> split_even(10, 4)
        [3, 3, 2, 2]
    """
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def load_fmnist_lt(imbalance: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The training split of sample_data's fmnist_lt arrangement: uint8 (N, 28, 28), labels."""
    from sample_data.fashion_mnist import load_fashion_mnist
    from sample_data.fmnist_lt import draw_indices, longtail_counts
    images, classes = load_fashion_mnist("train")
    picks = draw_indices(classes, longtail_counts(imbalance), seed)
    rows = np.concatenate(picks)
    return images[rows], np.repeat(np.arange(len(picks)), [len(p) for p in picks])


def build_pixel_model(num_classes: int):
    import keras
    from config import DiffusionConfig
    from diffusion.training import build_model
    keras.utils.set_random_seed(0)
    cfg = DiffusionConfig(conditional=True, channels="1", **PIXEL)
    model = build_model(cfg, num_classes)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=cfg.learning_rate,
                                                   weight_decay=cfg.weight_decay))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="short measurements (smoke run)")
    parser.add_argument("--imbalance", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--pixel_train_steps", type=int, default=10,
                        help="pixel training steps measured per round")
    parser.add_argument("--pixel_images", type=int, default=32,
                        help="pixel images generated per round")
    args = parser.parse_args(argv)

    import tensorflow as tf
    from bench_diffusion import sample_rate, step_times
    from classifier.backbones import build_classifier
    from classifier.head import penultimate_features
    from config import AugmentationConfig, FeatureDiffusionConfig
    from feature_diffusion.diffusion import FeatureDiffusion, FeatureTrainer
    from feature_diffusion.stats import FeatureStats, draw_weights

    rounds = 2 if args.quick else args.rounds
    px_steps = 4 if args.quick else args.pixel_train_steps
    px_images = 16 if args.quick else args.pixel_images
    aug = AugmentationConfig()
    t_start = time.perf_counter()

    x, y = load_fmnist_lt(args.imbalance)
    train, need = fill_plan(y)
    fill_total = sum(need.values())
    print(f"CPU: {cpu_model()}; TensorFlow {tf.__version__}")
    print(f"Fashion-MNIST-LT, imbalance {args.imbalance:g}: {len(x)} training images, "
          f"{len(train)} after the {VAL_FRACTION:.0%} validation split, counts "
          f"{np.bincount(y[train]).tolist()}; fill to the largest: {fill_total} samples")

    # -- 1: feature extraction (all training images, one call, trace included) ------------
    classifier, _ = build_classifier("small_cnn", 10, 28, verbose=False)
    rgb = np.repeat(x[..., None], 3, axis=-1)
    n_extract = 2000 if args.quick else len(rgb)
    t = time.perf_counter()
    feats = penultimate_features(classifier, rgb[:n_extract])
    extract_s = time.perf_counter() - t
    if n_extract < len(rgb):
        feats = np.concatenate([feats, penultimate_features(classifier, rgb[n_extract:])])
    print(f"1 extraction: {n_extract} images in {extract_s:.1f} s, {feats.shape[1]}-D",
          flush=True)

    # -- set-up of both stage-2 trainings (untimed: built once per run either way) --------
    fcfg = FeatureDiffusionConfig()
    f_train, y_train = feats[train], y[train]
    stats = FeatureStats.of(f_train)
    trainer = FeatureTrainer(fcfg, f_train.shape[1], 10)
    data = tf.constant(stats.standardise(f_train))
    label_t = tf.constant(y_train.astype(np.int32))
    cdf = tf.constant(np.cumsum(draw_weights(y_train, 10, fcfg.label_balance)), "float32")
    f_steps = 300 if args.quick else fcfg.train_steps
    f_slices = split_even(f_steps, rounds)

    pixel = build_pixel_model(10)
    images32 = tf.image.resize(x[train][..., None].astype("float32") / 255.0, (32, 32)).numpy()
    images32 = np.clip(images32, 0.0, 1.0)
    ds = (tf.data.Dataset.from_tensor_slices((images32, y_train.astype("int32")))
          .shuffle(4096, seed=0).repeat().batch(PIXEL["batch_size"], drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE))
    pixel.adapt_normalizer(tf.data.Dataset.from_tensor_slices(images32).batch(256))
    t = time.perf_counter()
    step_times(pixel, ds, 3)                                   # compile + warm-up, untimed
    px_compile_s = time.perf_counter() - t

    # -- 2: training, interleaved rounds --------------------------------------------------
    f_train_s, f_first_s, px_times, done = 0.0, 0.0, [], 0
    for r in range(rounds):
        px_times += step_times(pixel, ds, px_steps)
        end = done + f_slices[r]
        while done < end:                      # in loss_every chunks, as train.py runs it
            count = min(fcfg.loss_every, end - done)
            t = time.perf_counter()
            trainer.run(data, label_t, cdf, done, count)
            if done == 0:                      # the first call traces the step loop
                f_first_s, first_steps = time.perf_counter() - t, count
            else:
                f_train_s += time.perf_counter() - t
            done += count
        print(f"2 round {r + 1}/{rounds}: pixel {len(px_times)} steps, feature {done} steps",
              flush=True)
    # the full budget: the first call (trace included) once, the rest at the steady rate
    f_train_full = f_first_s + extrapolate(f_train_s, f_steps - first_steps,
                                           fcfg.train_steps - first_steps)
    px_train_s = float(np.sum(px_times))
    px_train_full = extrapolate(px_train_s, len(px_times), PIXEL["train_steps"])

    # -- 3: generation, interleaved rounds ------------------------------------------------
    model = FeatureDiffusion(trainer.ema_network, fcfg, [str(c) for c in range(10)], stats)
    plan_labels, plan_seeds = [], []
    for c, n in need.items():
        plan_labels += [str(c)] * n
        plan_seeds += [c * 1_000_000 + k for k in range(n)]
    f_gen_n = min(fill_total, 3000) if args.quick else fill_total
    g_slices = split_even(f_gen_n, rounds)
    tail = [c for c, n in sorted(need.items(), key=lambda kv: -kv[1]) if n]
    f_gen_s, px_gen_s, px_gen_n, g0 = 0.0, 0.0, 0, 0
    for r in range(rounds):
        # one label per call (as stage 3 samples label by label), rotating over the fill
        rate = sample_rate(pixel, px_images, SAMPLE_STEPS, aug.batch_size,
                           labels=tail[r % len(tail)], guidance_scale=aug.guidance_scale,
                           eta=aug.eta)
        px_gen_s += px_images / rate
        px_gen_n += px_images
        t = time.perf_counter()
        sl = slice(g0, g0 + g_slices[r])
        model.generate_from_seeds(plan_labels[sl], plan_seeds[sl])
        f_gen_s += time.perf_counter() - t
        g0 = sl.stop
        print(f"3 round {r + 1}/{rounds}: pixel {px_gen_n} images, feature {g0} vectors",
              flush=True)
    f_gen_full = extrapolate(f_gen_s, f_gen_n, fill_total)
    px_gen_full = extrapolate(px_gen_s, px_gen_n, fill_total)
    extract_full = extrapolate(extract_s, n_extract, len(x))

    # -- table ----------------------------------------------------------------------------
    how = lambda measured, full: ("measured" if measured >= full  # noqa: E731
                                  else f"extrapolated from {measured:,}")
    rows = [
        ("1 feature extraction (small_cnn, all training images)", f"{n_extract:,} images",
         f"{n_extract / extract_s:,.0f} images/s", f"{len(x):,} images "
         f"({how(n_extract, len(x))})", extract_full),
        (f"2 feature diffusion training ({fcfg.hidden_dim}x{fcfg.blocks}, batch "
         f"{fcfg.batch_size})", f"{f_steps:,} steps (the first {first_steps} with the "
         f"trace: {f_first_s:.1f} s)", f"{(f_steps - first_steps) / f_train_s:,.1f} steps/s",
         f"{fcfg.train_steps:,} steps ({how(f_steps, fcfg.train_steps)})", f_train_full),
        (f"3 feature generation ({fcfg.generate_steps} steps, guidance "
         f"{fcfg.guidance_scale:g})", f"{f_gen_n:,} vectors",
         f"{f_gen_n / f_gen_s:,.0f} vectors/s",
         f"{fill_total:,} vectors ({how(f_gen_n, fill_total)})", f_gen_full),
        ("2 pixel DDIM training (32x32x1, [32, 64, 96], depth 2, batch 32)",
         f"{len(px_times)} steps", f"{len(px_times) / px_train_s:.2f} steps/s",
         f"{PIXEL['train_steps']:,} steps (extrapolated)", px_train_full),
        (f"3 pixel DDIM generation ({SAMPLE_STEPS} steps, guidance {aug.guidance_scale:g}, "
         f"batch {aug.batch_size})", f"{px_gen_n} images", f"{px_gen_n / px_gen_s:.2f} images/s",
         f"{fill_total:,} images (extrapolated)", px_gen_full),
    ]
    print()
    print(f"CPU: {cpu_model()}. Wall time of each stage for the full plan (Fashion-MNIST-LT "
          f"IF {args.imbalance:g}):")
    print("| stage | measured | rate | full plan | wall s (full plan) |")
    print("|---|---|---|---|---|")
    for stage, measured, rate, full, secs in rows:
        print(f"| {stage} | {measured} | {rate} | {full} | {secs:,.1f} |")
    print()
    f23 = f_train_full + f_gen_full
    p23 = px_train_full + px_gen_full
    print("| pixel / feature | pixel s | feature s | ratio |")
    print("|---|---|---|---|")
    print(f"| stage 2 (training) | {px_train_full:,.0f} | {f_train_full:,.1f} | "
          f"{px_train_full / f_train_full:,.0f}x |")
    print(f"| stage 3 (generation) | {px_gen_full:,.0f} | {f_gen_full:,.1f} | "
          f"{px_gen_full / f_gen_full:,.0f}x |")
    print(f"| stage 2 + 3 | {p23:,.0f} | {f23:,.1f} | {p23 / f23:,.0f}x |")
    print(f"| stage 2 + 3, feature extraction counted on the feature side | {p23:,.0f} | "
          f"{f23 + extract_full:,.1f} | {p23 / (f23 + extract_full):,.0f}x |")
    ratio = p23 / (f23 + extract_full)
    print()
    print(f"target (feature-space stage 2 + 3 at least 10x faster): "
          f"{'met' if ratio >= 10 else 'NOT met'} ({ratio:,.0f}x with extraction counted); "
          f"pixel compile + warm-up {px_compile_s:.0f} s not counted; benchmark wall "
          f"{time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
