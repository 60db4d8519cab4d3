"""A small class-conditional GAN for small data: the other generator family (FibreAug).

Generator: noise (and the label's embedding) -> dense -> nearest upsampling + 3x3 convs
with GroupNorm (no running statistics, so the EMA generator needs none) -> tanh. Discriminator: strided 3x3 convs -> global sum -> a score plus the projection of the
label's embedding (Miyato & Koyama's projection discriminator). Trained with the
non-saturating logistic loss, R1 gradient penalty on real images, and DiffAugment (the same
random colour, translation and cutout on real and generated images before the
discriminator, so it cannot memorise a few hundred photos and the generator does not learn
the augmentations). Sampling uses an EMA of the generator's weights.

It has the interface the diffusion pipeline trains and samples through (`fit` with the
same datasets, `generate(n, seed=..., labels=...)` with per-image seeds, `get_config`,
`n_loss` as its generator loss), so `train_all.py --model gan` writes the same run folder
and stage 3 samples it with the same plan and manifest.

Example:
    >>> gan = ConditionalGan(image_size=(32, 32), channels=1, num_classes=6)
    >>> gan.compile()
    >>> gan.fit(dataset_of_images_and_labels, epochs=50)
    >>> boots = gan.generate(16, seed=1, labels=5)
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

_LEAK = 0.2


def diff_augment(images, seed):
    """DiffAugment (Zhao et al. 2020): per-image brightness, saturation, contrast, a shift of
    up to 1/8 of the side (zeros come in) and a cutout of half the side; differentiable, so
    the generator learns through it. Images in [-1, 1], NHWC."""
    b = ops.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    seeds = [tf.stack([seed[0], seed[1] + k]) for k in range(5)]
    rand = lambda k: tf.random.stateless_uniform((b, 1, 1, 1), seed=seeds[k])  # noqa: E731
    x = images + (rand(0) - 0.5)
    mean = ops.mean(x, axis=-1, keepdims=True)
    x = (x - mean) * (rand(1) * 2.0) + mean
    mean = ops.mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * (rand(2) + 0.5) + mean
    # translation: gather shifted rows and columns, zeros where the shift leaves the image
    shift = tf.cast(tf.round((tf.random.stateless_uniform((b, 2), seed=seeds[3]) * 2 - 1)
                             * [h / 8, w / 8]), "int32")
    rows = tf.range(h)[None] + shift[:, :1]
    cols = tf.range(w)[None] + shift[:, 1:]
    x = tf.gather(x, tf.clip_by_value(rows, 0, h - 1), axis=1, batch_dims=1)
    x = tf.gather(x, tf.clip_by_value(cols, 0, w - 1), axis=2, batch_dims=1)
    inside = (tf.cast((rows >= 0) & (rows < h), x.dtype)[:, :, None, None]
              * tf.cast((cols >= 0) & (cols < w), x.dtype)[:, None, :, None])
    x = x * inside
    # cutout: a square of half the side at a random place is zeroed
    centre = tf.random.stateless_uniform((b, 2), seed=seeds[4]) * [h, w]
    ys = tf.cast(tf.range(h), x.dtype)[None, :, None]
    xs = tf.cast(tf.range(w), x.dtype)[None, None, :]
    cut = (tf.abs(ys - centre[:, :1, None]) < h / 4) & (tf.abs(xs - centre[:, 1:, None]) < w / 4)
    return x * (1.0 - tf.cast(cut, x.dtype)[..., None])


def build_generator(image_size: Sequence[int], channels: int, widths: Sequence[int],
                    latent_dim: int, num_classes: int, name: str = "generator") -> keras.Model:
    """noise (and label) -> image in [-1, 1]; the smallest grid is image_size / 2**(levels-1)."""
    levels = len(widths)
    h, w = image_size[0] // 2 ** (levels - 1), image_size[1] // 2 ** (levels - 1)
    noise = keras.Input((latent_dim,), name="noise")
    inputs, x = [noise], noise
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        x = layers.Concatenate()([x, layers.Embedding(num_classes, latent_dim)(label)])
    x = layers.Dense(h * w * widths[-1])(x)
    x = layers.Reshape((h, w, widths[-1]))(x)
    for width in reversed(widths[:-1]):
        x = layers.UpSampling2D(2, interpolation="nearest")(x)
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same")(x)
            # no running statistics: they would not match the EMA generator's weights
            x = layers.GroupNormalization(groups=min(8, width))(x)
            x = layers.LeakyReLU(_LEAK)(x)
    out = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32")(x)
    return keras.Model(inputs, out, name=name)


def build_discriminator(image_size: Sequence[int], channels: int, widths: Sequence[int],
                        num_classes: int) -> keras.Model:
    """image (and label) -> one score per image (projection discriminator)."""
    image = keras.Input((*image_size, channels), name="image")
    inputs, x = [image], image
    for k, width in enumerate(widths):
        x = layers.Conv2D(width, 3, padding="same")(x)
        x = layers.LeakyReLU(_LEAK)(x)
        if k < len(widths) - 1:
            x = layers.Conv2D(width, 4, strides=2, padding="same")(x)
            x = layers.LeakyReLU(_LEAK)(x)
    # minibatch standard deviation (StyleGAN): a batch of near-identical images is easy to
    # tell apart from a real one, which discourages mode collapse
    spread = ops.mean(ops.sqrt(ops.var(x, axis=0) + 1e-8))
    x = layers.Concatenate()([x, ops.ones_like(x[..., :1]) * spread])
    x = layers.Conv2D(widths[-1], 3, padding="same")(x)
    x = layers.LeakyReLU(_LEAK)(x)
    features = layers.GlobalAveragePooling2D()(x)
    score = layers.Dense(1, dtype="float32")(features)
    if num_classes:
        label = keras.Input((), dtype="int32", name="label")
        inputs.append(label)
        embedded = layers.Embedding(num_classes, widths[-1])(label)
        projection = ops.sum(embedded * ops.cast(features, embedded.dtype), axis=-1,
                             keepdims=True)
        score = layers.Add(dtype="float32")([score, projection])
    return keras.Model(inputs, score, name="discriminator")


class ConditionalGan(keras.Model):
    """A (class-conditional) GAN with DiffAugment, R1 and an EMA generator.

    Args:
        image_size: (height, width), divisible by 2**(len(widths) - 1).
        channels: 1 (grey) or 3.
        num_classes: 0 for one model per label; > 0 for a class-conditional model.
        widths: channels per level, from the image resolution down.
        latent_dim: size of the noise vector.
        r1_gamma: weight of the R1 penalty on real images.
        diffaugment: augment real and generated images alike before the discriminator.
        learning_rate: Adam's rate for both networks (betas 0.0 / 0.99).
        ema: EMA decay of the sampling generator.
        seed: seed of the training noise.
    """

    def __init__(self, image_size: Sequence[int] = (32, 32), channels: int = 3,
                 num_classes: int = 0, widths: Sequence[int] = (32, 64, 128),
                 latent_dim: int = 64, r1_gamma: float = 0.1, diffaugment: bool = True,
                 learning_rate: float = 2e-4, ema: float = 0.999, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        step = 2 ** (len(widths) - 1)
        if self.image_size[0] % step or self.image_size[1] % step:
            raise ValueError(f"image_size {self.image_size} must divide by {step} "
                             f"({len(widths)} levels)")
        self.channels, self.num_classes = int(channels), int(num_classes)
        self.widths, self.latent_dim = [int(w) for w in widths], int(latent_dim)
        self.r1_gamma, self.diffaugment = float(r1_gamma), bool(diffaugment)
        self.learning_rate, self.ema, self.seed = float(learning_rate), float(ema), int(seed)
        args = (self.image_size, self.channels, self.widths, self.latent_dim, self.num_classes)
        self.network = build_generator(*args, name="generator")
        self.ema_network = build_generator(*args, name="ema_generator")
        self.ema_network.set_weights(self.network.get_weights())
        self.discriminator = build_discriminator(self.image_size, self.channels, self.widths,
                                                 self.num_classes)
        self.g_loss_tracker = keras.metrics.Mean(name="n_loss")   # the generator's loss
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.r1_tracker = keras.metrics.Mean(name="r1")
        self.d_optimizer = None
        self.built = True

    def get_config(self):
        return {**super().get_config(), "image_size": list(self.image_size),
                "channels": self.channels, "num_classes": self.num_classes,
                "widths": list(self.widths), "latent_dim": self.latent_dim,
                "r1_gamma": self.r1_gamma, "diffaugment": self.diffaugment,
                "learning_rate": self.learning_rate, "ema": self.ema, "seed": self.seed}

    @property
    def metrics(self):
        return [self.g_loss_tracker, self.d_loss_tracker, self.r1_tracker]

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def compile(self, optimizer=None, **kwargs):
        """Adam for both networks (a given optimizer is replaced: GANs want beta_1 = 0),
        built at once so that saved weights load with their optimizer state."""
        def adam():
            return keras.optimizers.Adam(self.learning_rate, beta_1=0.0, beta_2=0.99)
        super().compile(optimizer=adam(), **kwargs)
        self.d_optimizer = adam()
        self.optimizer.build(self.network.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def adapt_normalizer(self, data) -> None:
        """Nothing to adapt: images are scaled to [-1, 1]."""

    def _inputs(self, x, labels):
        return [x, labels] if self.num_classes else [x]

    def _unpack(self, data):
        """(images, int32 labels or None) from what the dataset yields."""
        images = data[0] if isinstance(data, (tuple, list)) else data
        cond = data[1] if isinstance(data, (tuple, list)) and len(data) > 1 else None
        labels = cond.get("labels") if isinstance(cond, dict) else cond
        if self.num_classes and labels is None:
            raise ValueError("a conditional GAN trains on (images, labels)")
        return images, None if labels is None else ops.cast(labels, "int32")

    def _noise(self, batch, seed):
        return tf.random.stateless_normal((batch, self.latent_dim), seed=seed)

    def train_step(self, data):
        images, labels = self._unpack(data)
        real = ops.cast(images, "float32") * 2.0 - 1.0
        batch = ops.shape(real)[0]
        # the step's noise and augmentations: from the seed and the step count (saved with
        # the optimizer, so a resumed run goes on as an uninterrupted one would)
        step = ops.cast(self.d_optimizer.iterations, "int32")
        seed = tf.stack([tf.constant(self.seed, "int32"), step])
        aug = (lambda x, k: diff_augment(x, seed + [k, 11])) if self.diffaugment \
            else (lambda x, k: x)
        fake = self.network(self._inputs(self._noise(batch, seed + [0, 1]), labels),
                            training=True)
        with tf.GradientTape() as tape:
            with tf.GradientTape() as r1_tape:
                r1_tape.watch(real)
                real_aug = aug(real, 100)
                real_score = self.discriminator(self._inputs(real_aug, labels), training=True)
                real_total = ops.sum(real_score)
            grad = r1_tape.gradient(real_total, real)
            r1 = ops.mean(ops.sum(ops.square(grad), axis=[1, 2, 3]))
            fake_score = self.discriminator(self._inputs(aug(fake, 200), labels),
                                            training=True)
            d_loss = ops.mean(ops.softplus(fake_score) + ops.softplus(-real_score))
            total = d_loss + 0.5 * self.r1_gamma * r1
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(total, d_vars), d_vars))
        with tf.GradientTape() as tape:
            fake = self.network(self._inputs(self._noise(batch, seed + [0, 2]), labels),
                                training=True)
            score = self.discriminator(self._inputs(aug(fake, 300), labels), training=True)
            g_loss = ops.mean(ops.softplus(-score))
        g_vars = self.network.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(g_loss, g_vars), g_vars))
        # EMA warm-up (as the diffusion model's): early on the EMA follows the weights, so a
        # short run does not sample from its random initialisation
        step = ops.cast(self.optimizer.iterations, "float32")
        decay = ops.minimum(self.ema, (1.0 + step) / (10.0 + step))
        for e, w in zip(self.ema_network.weights, self.network.weights):
            e.assign(decay * e + (1.0 - decay) * w)
        self.g_loss_tracker.update_state(g_loss)
        self.d_loss_tracker.update_state(d_loss)
        self.r1_tracker.update_state(r1)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """The generator's loss against the current discriminator on validation labels."""
        images, labels = self._unpack(data)
        batch = ops.shape(images)[0]
        fake = self.ema_network(self._inputs(self._noise(batch, tf.constant([7, 7])), labels),
                                training=False)
        score = self.discriminator(self._inputs(fake, labels), training=False)
        self.g_loss_tracker.update_state(ops.mean(ops.softplus(-score)))
        return {"n_loss": self.g_loss_tracker.result()}

    def generate(self, n: int, steps: int = 0, eta: float = 0.0, seed: int = 0, labels=None,
                 guidance_scale: float = 1.0, batch_size: int = 64, start_index: int = 0,
                 progress=None, **unused) -> np.ndarray:
        """`n` images from the EMA generator; image k's noise comes from
        numpy.random.default_rng([seed, start_index + k]) alone (the DDIM model's rule).
        `steps`, `eta`, `guidance_scale` and the other sampling settings of diffusion models
        have no meaning here and are ignored.

        Returns:
            float32 (n, H, W, channels) in [0, 1].
        """
        if self.num_classes and labels is None:
            raise ValueError("a conditional GAN needs labels to generate")
        ids = None if labels is None else np.broadcast_to(np.asarray(labels, np.int32), (n,))
        out = np.empty((n, *self.image_size, self.channels), np.float32)
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            z = np.stack([np.random.default_rng([seed, start_index + k]).standard_normal(
                self.latent_dim).astype(np.float32) for k in range(sl.start, sl.stop)])
            inputs = self._inputs(z, None if ids is None else ids[sl])
            images = ops.convert_to_numpy(self.ema_network(inputs, training=False))
            out[sl] = np.clip((images.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)
            if progress is not None:
                progress(sl.stop)
        return out
