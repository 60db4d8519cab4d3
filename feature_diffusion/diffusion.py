"""Training steps and DDIM sampling of a `FeatureDenoiser` on standardised feature vectors
(layer 2: no files; the run folder is `feature_diffusion/train.py`).

The noise schedule, targets, guidance and the DDIM step are the project's own
(`diffusion_maths/schedule.py`), on vectors (B, D) instead of images. Both the training
step and the sampling step are compiled `tf.function`s: called eagerly the network is
several times slower (benchmarks/bench_feature_diffusion.py).

Randomness is per vector: vector k of label L in `generate(..., seed=s)` draws all its
noise from `numpy.random.default_rng(sample_seed(s, L, k))`, so it can be regenerated alone
(`generate_from_seeds`) and does not depend on the batch it lands in.

Example:
    >>> trainer = FeatureTrainer(cfg, feature_dim=64, num_classes=3)
    >>> loss = trainer.run(z, labels, draw_cdf, start=0, count=100)   # z: standardised
    >>> model = FeatureDiffusion(trainer.ema_network, cfg, ["a", "b", "c"], stats, counts)
    >>> feats, labels, seeds = model.generate({"a": 10, "c": 5}, seed=1)
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from diffusion_maths.schedule import (clip_denoised, ddim_step, diffusion_schedule,
                                      guided_output, outputs_to_noise_and_image,
                                      sampling_times, training_target)
from feature_diffusion.stats import FeatureStats, sample_seed

# How generated vectors are kept inside the real features' per-dimension range:
#   none        as the network makes them (LDMLR)
#   final       the finished vectors clipped (ReLU features stay >= 0)
#   every_step  each step's predicted clean vector clipped, as DDPM's clip_denoised
CLIP_MODES = ("none", "final", "every_step")


def build_denoiser(cfg, feature_dim: int, num_classes: int, name: str = "denoiser"):
    """The `FeatureDenoiser` that `cfg` (a FeatureDiffusionConfig) describes."""
    # why: the denoiser is a Keras model, so importing it loads TensorFlow
    from feature_diffusion.model import FeatureDenoiser
    return FeatureDenoiser(feature_dim=feature_dim, num_classes=num_classes,
                           hidden_dim=cfg.hidden_dim, blocks=cfg.blocks,
                           embedding_dims=cfg.embedding_dims, dropout=cfg.dropout,
                           seed=cfg.seed, name=name)


class FeatureTrainer:
    """The online and EMA denoisers, the AdamW optimizer and one compiled training step.

    Args:
        cfg: a FeatureDiffusionConfig (architecture, schedule, optimiser, label dropout,
            EMA, seed).
        feature_dim, num_classes: the data's.
    """

    def __init__(self, cfg, feature_dim: int, num_classes: int):
        # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
        import keras
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.network = build_denoiser(cfg, feature_dim, num_classes, "network")
        self.ema_network = build_denoiser(cfg, feature_dim, num_classes, "ema_network")
        self.ema_network.set_weights(self.network.get_weights())
        self.optimizer = keras.optimizers.AdamW(cfg.learning_rate,
                                                weight_decay=cfg.weight_decay)
        self.optimizer.build(self.network.trainable_variables)
        self._compiled = None

    def train_step(self, data, labels, cdf, step):
        """One optimizer step on a batch drawn from `data` (standardised (N, D) tensor) by
        the cumulative draw probabilities `cdf`; returns the batch's mean squared error.
        Noise, times, the draw and label dropout are stateless, keyed on (seed, step)."""
        # why: TensorFlow takes seconds to import; --help and --dry-run never need it
        import tensorflow as tf
        from keras import ops
        cfg = self.cfg
        seed = tf.stack([tf.constant(cfg.seed, "int32"), tf.cast(step, "int32")])
        u = tf.random.stateless_uniform((cfg.batch_size,), seed=seed + [0, 1], dtype="float32")
        # Inverse-CDF draw with replacement: O(B log N), any per-vector weights.
        idx = tf.minimum(tf.searchsorted(cdf, u, side="right"), tf.shape(data)[0] - 1)
        x = tf.gather(data, idx)
        y = tf.gather(labels, idx)
        drop = tf.random.stateless_uniform((cfg.batch_size,), seed=seed + [0, 2])
        y = tf.where(drop < cfg.label_dropout, self.num_classes, y)
        noises = tf.random.stateless_normal(tf.shape(x), seed=seed + [0, 3])
        times = tf.random.stateless_uniform((cfg.batch_size, 1), seed=seed + [0, 4])
        noise_rates, signal_rates = diffusion_schedule(times, cfg.min_signal_rate,
                                                       cfg.max_signal_rate)
        noisy = signal_rates * x + noise_rates * noises
        target = training_target(noises, x, noise_rates, signal_rates, cfg.prediction)
        weights = self.network.trainable_variables
        with tf.GradientTape() as tape:
            out = self.network([noisy, noise_rates ** 2, y], training=True)
            loss = ops.mean(ops.square(target - out))
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        # EMA with warm-up (as DiffusionModel): short runs sample trained weights.
        it = tf.cast(step, "float32")
        decay = tf.minimum(cfg.ema, (1.0 + it) / (10.0 + it))
        for e, w in zip(self.ema_network.weights, self.network.weights):
            e.assign(decay * e + (1.0 - decay) * w)
        return loss

    def run(self, data, labels, cdf, start: int, count: int, compiled: bool = True) -> float:
        """Runs optimizer steps start..start+count-1 and returns their mean loss.

        Compiled (the default), the steps run in one graph loop: one Python call per
        `count` steps, not per step. `compiled=False` calls `train_step` eagerly, step by
        step: the benchmark's baseline.
        """
        # why: TensorFlow takes seconds to import; --help and --dry-run never need it
        import tensorflow as tf
        if not compiled:
            return float(tf.reduce_mean([self.train_step(data, labels, cdf, tf.constant(s))
                                         for s in range(start, start + count)]))
        if self._compiled is None:
            def many(data, labels, cdf, start, count):
                total = tf.constant(0.0)
                for s in tf.range(start, start + count):
                    total += self.train_step(data, labels, cdf, s)
                return total / tf.cast(count, "float32")
            self._compiled = tf.function(many)
        return float(self._compiled(data, labels, cdf, tf.constant(start, "int32"),
                                    tf.constant(count, "int32")))


class FeatureDiffusion:
    """A trained feature generator: the (EMA) denoiser, its settings, the class names and
    the standardisation of the real features.

    Args:
        network: a trained `FeatureDenoiser`.
        cfg: its FeatureDiffusionConfig (schedule, prediction and generation defaults).
        class_names: label i's name.
        stats: the real features' `FeatureStats`.
        label_counts: training vectors per label name (a label without any cannot be
            generated); None = unknown, every label allowed.
    """

    def __init__(self, network, cfg, class_names: Sequence[str], stats: FeatureStats,
                 label_counts: Mapping[str, int] | None = None):
        if network.feature_dim != stats.dim or network.num_classes != len(class_names):
            raise ValueError(f"the network ({network.feature_dim} dims, {network.num_classes} "
                             f"labels) does not match the data ({stats.dim} dims, "
                             f"{len(class_names)} labels)")
        self.network = network
        self.cfg = cfg
        self.class_names = list(class_names)
        self.stats = stats
        self.label_counts = dict(label_counts) if label_counts is not None else None
        self._step_fns = {}

    @property
    def feature_dim(self) -> int:
        return self.stats.dim

    def with_generation_settings(self, cfg) -> "FeatureDiffusion":
        """The same model with the generation defaults (steps, eta, guidance, clipping) of
        `cfg`; training settings stay the model's own."""
        keep = {k: getattr(cfg, k) for k in GENERATION_FIELDS}
        return FeatureDiffusion(self.network, dataclasses.replace(self.cfg, **keep),
                                self.class_names, self.stats, self.label_counts)

    # -- sampling --------------------------------------------------------------------
    def _step_fn(self, guided: bool, clip: bool, compiled: bool = True):
        """A compiled DDIM step (network + update), cached per guidance and clip mode;
        `compiled=False` gives the same step run eagerly (the benchmark's baseline)."""
        key = (guided, clip, compiled)
        if key in self._step_fns:
            return self._step_fns[key]
        # why: TensorFlow takes seconds to import; --help and --dry-run never need it
        import tensorflow as tf
        cfg = self.cfg
        low, high = (tf.constant(a) for a in self.stats.standardised_range())
        null = self.network.num_classes

        def step(noisy, t, t_next, eta, noise, labels, guidance):
            batch = tf.shape(noisy)[0]
            noise_rates, signal_rates = diffusion_schedule(
                tf.fill((batch, 1), t), cfg.min_signal_rate, cfg.max_signal_rate)
            _, next_signal_rates = diffusion_schedule(
                tf.fill((batch, 1), t_next), cfg.min_signal_rate, cfg.max_signal_rate)
            if guided:
                # One batched pass with and without the label.
                out = self.network([tf.concat([noisy, noisy], 0),
                                    tf.concat([noise_rates, noise_rates], 0) ** 2,
                                    tf.concat([labels, tf.fill((batch,), null)], 0)],
                                   training=False)
                cond, uncond = tf.split(out, 2, axis=0)
                # guided_output takes image-shaped (B, H, W, C) outputs: a vector is (1, 1, D).
                out = tf.reshape(guided_output(cond[:, None, None], uncond[:, None, None],
                                               guidance), tf.shape(noisy))
            else:
                out = self.network([noisy, noise_rates ** 2, labels], training=False)
            pred_noises, pred_x = outputs_to_noise_and_image(out, noisy, noise_rates,
                                                             signal_rates, cfg.prediction)
            if clip:
                pred_noises, pred_x = clip_denoised(noisy, pred_x, noise_rates, signal_rates,
                                                    low, high)
            next_noisy = ddim_step(pred_x, pred_noises, signal_rates, next_signal_rates, eta,
                                   noise)
            return next_noisy, pred_x

        # One graph with an unknown batch size from the first call on: a graph traced for
        # one batch size may pick other kernels than a relaxed one, and the same seed must
        # give the same vectors whatever was generated before.
        vec, scalar = tf.TensorSpec((None, self.feature_dim), "float32"), tf.TensorSpec((), "float32")
        if not compiled:
            self._step_fns[key] = step
            return step
        self._step_fns[key] = tf.function(step, input_signature=[
            vec, scalar, scalar, scalar, vec, tf.TensorSpec((None,), "int32"), scalar])
        return self._step_fns[key]

    def _label_ids(self, labels: Sequence[str]) -> np.ndarray:
        unknown = sorted(set(labels) - set(self.class_names))
        if unknown:
            raise ValueError(f"unknown label(s) {', '.join(map(str, unknown))}; the model "
                             f"knows {', '.join(self.class_names)}")
        if self.label_counts is not None:
            empty = sorted({lab for lab in labels if self.label_counts.get(lab, 0) == 0})
            if empty:
                raise ValueError(f"label(s) {', '.join(empty)} had no training vectors: "
                                 f"the model cannot generate them")
        index = {name: i for i, name in enumerate(self.class_names)}
        return np.array([index[lab] for lab in labels], np.int32)

    def generate_from_seeds(self, labels: Sequence[str], seeds: Sequence[int],
                            guidance_scale: float | None = None, steps: int | None = None,
                            eta: float | None = None, batch_size: int = 1024,
                            clip: str | None = None, compiled: bool = True) -> np.ndarray:
        """One feature vector per (label, seed) pair, in the original feature scale.

        Row i draws its noise from `numpy.random.default_rng(seeds[i])` only, so any row can
        be regenerated alone. Settings left None are the model's (cfg); `compiled=False`
        runs the network eagerly (only to measure what compiling gains).

        Returns:
            float32 (len(labels), D).
        """
        cfg = self.cfg
        guidance_scale = cfg.guidance_scale if guidance_scale is None else guidance_scale
        steps = cfg.generate_steps if steps is None else int(steps)
        eta = cfg.eta if eta is None else float(eta)
        clip = cfg.clip_features if clip is None else clip
        if clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {CLIP_MODES}, got {clip!r}")
        if len(labels) != len(seeds):
            raise ValueError(f"one seed per label is needed: {len(seeds)} for {len(labels)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if guidance_scale != 1.0 and cfg.label_dropout == 0.0:
            raise ValueError(f"guidance_scale {guidance_scale} needs a model trained with "
                             f"label_dropout > 0 (this one never saw the null label); use "
                             f"guidance_scale 1")
        ids = self._label_ids(labels)
        times = sampling_times(steps)
        fn = self._step_fn(guidance_scale != 1.0, clip == "every_step", compiled)
        d = self.feature_dim
        out = np.empty((len(ids), d), np.float32)
        draws = len(times) if eta > 0 else 1    # the start, then one noise per step
        for b0 in range(0, len(ids), batch_size):
            sl = slice(b0, min(len(ids), b0 + batch_size))
            # All of a row's draws at once: the same numbers, in the same order, as one
            # draw per step (numpy fills them sequentially), without a Python call per
            # row and step, which was most of the sampling time.
            noise = np.stack([np.random.default_rng(int(s)).standard_normal((draws, d),
                                                                           np.float32)
                              for s in seeds[sl]], axis=1)
            noisy = noise[0]
            zeros = np.zeros_like(noisy)
            pred = noisy
            for k, (t, t_next) in enumerate(zip(times[:-1], times[1:]), 1):
                noisy, pred = fn(noisy, np.float32(t), np.float32(t_next), np.float32(eta),
                                 noise[k] if eta > 0 else zeros, ids[sl],
                                 np.float32(guidance_scale))
            out[sl] = self.stats.unstandardise(np.asarray(pred))
        if clip != "none":
            out = np.clip(out, self.stats.low, self.stats.high)
        return out

    def generate(self, label_counts: Mapping[str, int], seed: int,
                 guidance_scale: float | None = None, steps: int | None = None,
                 eta: float | None = None, batch_size: int = 1024,
                 clip: str | None = None) -> tuple[np.ndarray, list[str], list[int]]:
        """`label_counts[L]` new feature vectors of each label L.

        Args:
            label_counts: {label name: how many}; 0 is allowed.
            seed: vector k of label L uses `sample_seed(seed, L, k)`.
            guidance_scale, steps, eta, clip: None = the model's settings (cfg).
            batch_size: vectors per network call.

        Returns:
            (features (M, D) float32 in the original scale, label per row, seed per row),
            rows in the order of `label_counts`, k = 0.. within each label.

        Example:
            >>> feats, labels, seeds = model.generate({"cat": 3}, seed=7)
            >>> again = model.generate_from_seeds(["cat"], seeds[2:3])   # row 2 alone
        """
        labels, seeds = [], []
        for label, n in label_counts.items():
            if int(n) != n or n < 0:
                raise ValueError(f"count of label {label} must be a whole number >= 0, got {n}")
            labels += [label] * int(n)
            seeds += [sample_seed(seed, label, k) for k in range(int(n))]
        if not labels:
            return np.zeros((0, self.feature_dim), np.float32), [], []
        feats = self.generate_from_seeds(labels, seeds, guidance_scale, steps, eta, batch_size,
                                         clip)
        return feats, labels, seeds


# Settings that only change how an already trained model samples.
GENERATION_FIELDS = ("generate_steps", "eta", "guidance_scale", "clip_features")
