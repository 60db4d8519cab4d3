"""The keras.io "Denoising Diffusion Implicit Models" recipe, re-implemented as the baseline
that `bench_diffusion.py` measures our model against (speed per step and time to quality).

Written from the example's published description (keras.io, examples/generative/ddim.py),
kept here only as a yardstick, not used by the product:
    network   sinusoidal embedding of the noise variance (16 log-spaced frequencies from 1 to
              1000), repeated over the image and concatenated to a 1x1 convolution of the
              input; a U-Net of residual blocks (parameter-free BatchNorm, 3x3 conv with swish,
              3x3 conv, plus a 1x1-projected skip), average-pool down, bilinear up,
              concatenated skips; a zero-initialised 1x1 output convolution.
    training  per-channel normalisation of the images; cosine schedule with signal rates
              from 0.95 to 0.02; the network predicts the noise; mean absolute error;
              AdamW (1e-3, weight decay 1e-4); an EMA copy (0.999) of every network weight.
    sampling  DDIM (eta 0) with the EMA network, a batch at a time, the network called
              eagerly at each step.

Example:
    >>> model = KerasIoDDIM((32, 32), widths=[32, 64, 96, 128], block_depth=2)
    >>> model.adapt_normalizer(images)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    >>> model.fit(dataset, epochs=1, steps_per_epoch=100)
    >>> samples = model.generate(16, steps=20)          # floats in [0, 1]
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

MIN_SIGNAL_RATE, MAX_SIGNAL_RATE = 0.02, 0.95


def _embedding(variances, dims: int = 32, max_frequency: float = 1000.0):
    freqs = ops.exp(ops.linspace(0.0, math.log(max_frequency), dims // 2))
    angular = 2.0 * math.pi * freqs
    return ops.concatenate([ops.sin(angular * variances), ops.cos(angular * variances)], axis=3)


def _block(x, width: int):
    residual = x if x.shape[3] == width else layers.Conv2D(width, 1)(x)
    x = layers.BatchNormalization(center=False, scale=False)(x)
    x = layers.Conv2D(width, 3, padding="same", activation="swish")(x)
    x = layers.Conv2D(width, 3, padding="same")(x)
    return layers.Add()([x, residual])


def build_network(image_size, widths, block_depth: int, channels: int = 3,
                  embedding_dims: int = 32) -> keras.Model:
    """The example's U-Net: inputs (noisy images, noise variances), output the noise."""
    h, w = image_size
    noisy = keras.Input((h, w, channels))
    variances = keras.Input((1, 1, 1))
    e = layers.Lambda(lambda v: _embedding(v, embedding_dims),
                      output_shape=(1, 1, embedding_dims), dtype="float32")(variances)
    e = layers.UpSampling2D(size=(h, w), interpolation="nearest")(e)
    x = layers.Concatenate()([layers.Conv2D(widths[0], 1)(noisy), e])
    skips = []
    for width in widths[:-1]:
        for _ in range(block_depth):
            x = _block(x, width)
            skips.append(x)
        x = layers.AveragePooling2D(2)(x)
    for _ in range(block_depth):
        x = _block(x, widths[-1])
    for width in reversed(widths[:-1]):
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        for _ in range(block_depth):
            x = _block(layers.Concatenate()([x, skips.pop()]), width)
    out = layers.Conv2D(channels, 1, kernel_initializer="zeros", dtype="float32")(x)
    return keras.Model([noisy, variances], out)


class KerasIoDDIM(keras.Model):
    """The example's diffusion model: train_step, EMA network, DDIM sampling."""

    def __init__(self, image_size, widths, block_depth: int, channels: int = 3,
                 ema: float = 0.999, ema_warmup: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.image_size = tuple(image_size)
        self.channels = channels
        self.ema = ema
        # Not in the example: the decay ramps up as min(ema, (1 + step) / (10 + step)), as
        # ours does, to tell how much of our early quality comes from that alone.
        self.ema_warmup = ema_warmup
        self.normalizer = layers.Normalization(dtype="float32")
        self.network = build_network(image_size, widths, block_depth, channels)
        self.ema_network = build_network(image_size, widths, block_depth, channels)
        self.ema_network.set_weights(self.network.get_weights())
        self.noise_loss_tracker = keras.metrics.Mean(name="n_loss")

    @property
    def metrics(self):
        return [self.noise_loss_tracker]

    def schedule(self, times):
        start, end = math.acos(MAX_SIGNAL_RATE), math.acos(MIN_SIGNAL_RATE)
        angles = start + times * (end - start)
        return ops.sin(angles), ops.cos(angles)         # noise rates, signal rates

    def denoise(self, noisy, noise_rates, signal_rates, training: bool):
        net = self.network if training else self.ema_network
        pred_noises = ops.cast(net([noisy, noise_rates ** 2], training=training), "float32")
        return pred_noises, (noisy - noise_rates * pred_noises) / signal_rates

    def train_step(self, images):
        images = self.normalizer(images, training=True)
        noises = tf.random.normal(tf.shape(images))
        times = tf.random.uniform((tf.shape(images)[0], 1, 1, 1))
        noise_rates, signal_rates = self.schedule(times)
        noisy = signal_rates * images + noise_rates * noises
        with tf.GradientTape() as tape:
            pred_noises, _ = self.denoise(noisy, noise_rates, signal_rates, training=True)
            loss = ops.mean(ops.abs(noises - pred_noises))
            scaled = self.optimizer.scale_loss(loss)
        weights = self.network.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        self.noise_loss_tracker.update_state(loss)
        decay = self.ema
        if self.ema_warmup:
            step = ops.cast(self.optimizer.iterations, "float32")
            decay = ops.minimum(self.ema, (1.0 + step) / (10.0 + step))
        for ema_w, w in zip(self.ema_network.weights, self.network.weights):
            ema_w.assign(decay * ema_w + (1.0 - decay) * w)
        return {"n_loss": self.noise_loss_tracker.result()}

    def adapt_normalizer(self, images) -> None:
        """The per-channel statistics of the training images (our model's call, so the
        benchmarks treat both models alike)."""
        self.normalizer.adapt(images)

    def generate(self, n: int, steps: int = 20, seed: int = 0, batch_size: int | None = None):
        """`n` images in [0, 1], `batch_size` at a time (default: all at once)."""
        batch_size = batch_size or n
        return np.concatenate([self._generate_batch(min(batch_size, n - start), steps,
                                                    seed + start)
                               for start in range(0, n, batch_size)])

    def _generate_batch(self, n: int, steps: int, seed: int):
        noisy = tf.random.normal((n, *self.image_size, self.channels), seed=seed)
        step = 1.0 / steps
        for k in range(steps):
            times = tf.ones((n, 1, 1, 1)) - k * step
            noise_rates, signal_rates = self.schedule(times)
            pred_noises, pred_images = self.denoise(noisy, noise_rates, signal_rates, False)
            next_noise, next_signal = self.schedule(times - step)
            noisy = next_signal * pred_images + next_noise * pred_noises
        mean = ops.reshape(self.normalizer.mean, (1, 1, 1, -1))
        std = ops.sqrt(ops.reshape(self.normalizer.variance, (1, 1, 1, -1)))
        return ops.convert_to_numpy(ops.clip(pred_images * std + mean, 0.0, 1.0))
