"""`DiffusionModel`: training, EMA weights, batched DDIM sampling, RePaint inpainting, SDEdit.

The network (`u_net_backbone.build_unet`) predicts the noise of `signal_rate * image +
noise_rate * noise` given the noise variance; the loss is the mean absolute error on the
noise (as in the keras.io DDIM example). Sampling always uses the EMA copy of the weights,
through a compiled step function (3-4x faster than calling the network eagerly).

Randomness is per image: image k of `generate(n, seed=s)` draws all its noise from
`numpy.random.default_rng([s, k])`, so it can be regenerated alone (`start_index=k`).

Example:
    >>> model = DiffusionModel(image_size=(64, 64), widths=[32, 64, 96, 128], block_depth=2)
    >>> model.adapt_normalizer(train_ds)
    >>> model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    >>> model.fit(train_ds, validation_data=val_ds, epochs=10)
    >>> images = model.generate(16, steps=50, eta=0.0, seed=1)   # floats in [0, 1]
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from diffusion.schedule import (ddim_step, diffusion_schedule, renoise, repaint_schedule,
                                sampling_times)
from u_net_backbone import build_unet


def _image_rngs(seed, start: int, stop: int) -> list[np.random.Generator]:
    """The random generators of images start..stop-1 of a call.

    An int `seed` gives image k `default_rng([seed, k])`; a sequence gives one seed per image
    and image k `default_rng([seed[k], 0])`, the same noise as a call with that image alone
    and `seed=seed[k]` (so a batch of unrelated images, each with its own seed, can be
    regenerated one by one).
    """
    if np.ndim(seed) == 0:
        return [np.random.default_rng([int(seed), k]) for k in range(start, stop)]
    return [np.random.default_rng([int(seed[k]), 0]) for k in range(start, stop)]


@keras.saving.register_keras_serializable(package="diffusion")
class DiffusionModel(keras.Model):
    """A DDIM diffusion model on RGB images in [0, 1].

    Args:
        image_size: (height, width).
        widths, block_depth, embedding_dims, attention_in_bottleneck,
        attention_in_up_down_sample, groups: the U-Net (see `u_net_backbone.build_unet`).
        num_classes: 0 for one model per label; > 0 for a class-conditional model whose
            training data yields (images, labels).
        min_signal_rate, max_signal_rate: the cosine schedule's ends.
        ema: EMA decay of the sampling weights.
        label_dropout: probability of training a conditional model without its label
            (enables classifier-free guidance).
        seed: seed of the training noise.
    """

    def __init__(self, image_size: Sequence[int] = (64, 64),
                 widths: Sequence[int] = (32, 64, 96, 128), block_depth: int = 2,
                 embedding_dims: int = 32, attention_in_bottleneck: bool = False,
                 attention_in_up_down_sample: bool = False, num_classes: int = 0,
                 groups: int = 8, min_signal_rate: float = 0.02, max_signal_rate: float = 0.95,
                 ema: float = 0.999, label_dropout: float = 0.1, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_signal_rate < max_signal_rate < 1.0:
            raise ValueError(f"need 0 < min_signal_rate < max_signal_rate < 1, got "
                             f"{min_signal_rate}, {max_signal_rate}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.widths = [int(w) for w in widths]
        self.block_depth = int(block_depth)
        self.embedding_dims = int(embedding_dims)
        self.attention_in_bottleneck = bool(attention_in_bottleneck)
        self.attention_in_up_down_sample = bool(attention_in_up_down_sample)
        self.num_classes = int(num_classes)
        self.groups = int(groups)
        self.min_signal_rate = float(min_signal_rate)
        self.max_signal_rate = float(max_signal_rate)
        self.ema = float(ema)
        self.label_dropout = float(label_dropout)
        self.seed = int(seed)
        net_args = dict(image_size=self.image_size, widths=self.widths,
                        block_depth=self.block_depth, embedding_dims=self.embedding_dims,
                        attention_in_bottleneck=self.attention_in_bottleneck,
                        attention_in_up_down_sample=self.attention_in_up_down_sample,
                        num_classes=self.num_classes, groups=self.groups)
        self.network = build_unet(**net_args, name="network")
        self.ema_network = build_unet(**net_args, name="ema_network")
        self.ema_network.set_weights(self.network.get_weights())
        # Per-channel statistics of the training images (set by `adapt_normalizer`), saved
        # with the weights so that a loaded model needs no data.
        self.pixel_mean = self.add_weight(shape=(3,), initializer="zeros", trainable=False,
                                          dtype="float32", name="pixel_mean")
        self.pixel_std = self.add_weight(shape=(3,), initializer="ones", trainable=False,
                                         dtype="float32", name="pixel_std")
        self.noise_loss_tracker = keras.metrics.Mean(name="n_loss")
        self.image_loss_tracker = keras.metrics.Mean(name="i_loss")
        self._step_fns = {}
        self.built = True  # every variable exists: load_weights works before any call

    def get_config(self):
        return {**super().get_config(), "image_size": list(self.image_size),
                "widths": list(self.widths), "block_depth": self.block_depth,
                "embedding_dims": self.embedding_dims,
                "attention_in_bottleneck": self.attention_in_bottleneck,
                "attention_in_up_down_sample": self.attention_in_up_down_sample,
                "num_classes": self.num_classes, "groups": self.groups,
                "min_signal_rate": self.min_signal_rate,
                "max_signal_rate": self.max_signal_rate, "ema": self.ema,
                "label_dropout": self.label_dropout, "seed": self.seed}

    @property
    def metrics(self):
        return [self.noise_loss_tracker, self.image_loss_tracker]

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    # -- normalisation -------------------------------------------------------------------
    def adapt_normalizer(self, data) -> None:
        """Sets the per-channel mean/std from images in [0, 1] (array or tf.data batches)."""
        if isinstance(data, np.ndarray):
            data = [data]
        total = np.zeros(3, np.float64)
        total_sq = np.zeros(3, np.float64)
        count = 0
        for batch in data:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = np.asarray(images, np.float64).reshape(-1, 3)
            total += images.sum(0)
            total_sq += (images ** 2).sum(0)
            count += images.shape[0]
        if count == 0:
            raise ValueError("adapt_normalizer got no images")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        self.pixel_mean.assign(mean.astype(np.float32))
        self.pixel_std.assign(np.maximum(std, 1e-3).astype(np.float32))

    def normalize(self, images):
        return (images - self.pixel_mean) / self.pixel_std

    def denormalize(self, images):
        return ops.clip(self.pixel_mean + images * self.pixel_std, 0.0, 1.0)

    def schedule(self, diffusion_times):
        """(noise_rates, signal_rates) of this model's cosine schedule."""
        return diffusion_schedule(diffusion_times, self.min_signal_rate, self.max_signal_rate)

    # -- training ------------------------------------------------------------------------
    def _network_inputs(self, noisy_images, noise_rates, labels):
        inputs = [noisy_images, noise_rates ** 2]
        if self.conditional:
            batch = ops.shape(noisy_images)[0]
            inputs += [ops.cast(labels, "int32"), ops.zeros((batch, self.embedding_dims))]
        return inputs

    def _noisy_batch(self, images, seed):
        batch = ops.shape(images)[0]
        noises = tf.random.stateless_normal(ops.shape(images), seed=seed)
        times = tf.random.stateless_uniform((batch, 1, 1, 1), seed=seed + [0, 1])
        noise_rates, signal_rates = self.schedule(times)
        return noises, noise_rates, signal_rates, signal_rates * images + noise_rates * noises

    @staticmethod
    def _unpack(data):
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else None)
        return data, None

    def _check_labels(self, labels):
        if self.conditional and labels is None:
            raise ValueError("a conditional model (num_classes > 0) trains on (images, labels)")

    def train_step(self, data):
        images, labels = self._unpack(data)
        self._check_labels(labels)
        images = self.normalize(ops.cast(images, "float32"))
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        n_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Stateless noise keyed on (seed, step, replica): reproducible and needs no
        # random-state variable (which MirroredStrategy could not update per replica).
        step = tf.cast(self.optimizer.iterations, "int32")
        seed = tf.stack([tf.constant(self.seed, "int32"), step * 64 + tf.cast(replica, "int32")])
        noises, noise_rates, signal_rates, noisy = self._noisy_batch(images, seed)
        if self.conditional:
            drop = tf.random.stateless_uniform(ops.shape(labels), seed=seed + [0, 2])
            labels = ops.where(drop < self.label_dropout, self.num_classes,
                               ops.cast(labels, "int32"))
        with tf.GradientTape() as tape:
            pred_noises = ops.cast(self.network(
                self._network_inputs(noisy, noise_rates, labels), training=True), "float32")
            noise_loss = ops.mean(ops.abs(noises - pred_noises))
            # Gradients are summed over replicas: scale so the update is the global mean.
            scaled = self.optimizer.scale_loss(noise_loss / n_replicas)
        weights = self.network.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        pred_images = (noisy - noise_rates * pred_noises) / signal_rates
        self.noise_loss_tracker.update_state(noise_loss)
        self.image_loss_tracker.update_state(ops.mean(ops.abs(images - pred_images)))
        self._update_ema()
        return {m.name: m.result() for m in self.metrics}

    def _update_ema(self):
        # Warm-up (as tf.train.ExponentialMovingAverage's num_updates): early on the EMA
        # follows the weights closely, so short runs and first epochs sample from trained
        # weights rather than from the random initialisation; `ema` is reached later.
        step = ops.cast(self.optimizer.iterations, "float32")
        decay = ops.minimum(self.ema, (1.0 + step) / (10.0 + step))
        pairs = [(e.value, w.value) for e, w in zip(self.ema_network.weights,
                                                    self.network.weights)]

        def update(distribution, pairs):
            for ema_var, var in pairs:
                distribution.extended.update(
                    ema_var, lambda e, w: e.assign(decay * e + (1.0 - decay) * w),
                    args=(var,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            update, tf.distribute.get_strategy(), pairs)

    def test_step(self, data):
        images, labels = self._unpack(data)
        self._check_labels(labels)
        images = self.normalize(ops.cast(images, "float32"))
        # Noise keyed on the images themselves: the same validation batch gets the same
        # noise every epoch, so val loss changes only when the model does.
        key = ops.cast(ops.sum(images * 1000.0), "int64") % 2147483647
        seed = tf.stack([tf.constant(self.seed + 1, "int32"), tf.cast(key, "int32")])
        noises, noise_rates, signal_rates, noisy = self._noisy_batch(images, seed)
        if self.conditional:
            labels = ops.cast(labels, "int32")
        pred_noises = ops.cast(self.ema_network(
            self._network_inputs(noisy, noise_rates, labels), training=False), "float32")
        pred_images = (noisy - noise_rates * pred_noises) / signal_rates
        self.noise_loss_tracker.update_state(ops.mean(ops.abs(noises - pred_noises)))
        self.image_loss_tracker.update_state(ops.mean(ops.abs(images - pred_images)))
        return {m.name: m.result() for m in self.metrics}

    # -- sampling ------------------------------------------------------------------------
    def _predict(self, noisy, noise_rates, signal_rates, labels, label_noise, guidance, guided):
        net = self.ema_network
        if not self.conditional:
            pred_noises = net([noisy, noise_rates ** 2], training=False)
        elif not guided:
            pred_noises = net([noisy, noise_rates ** 2, labels, label_noise], training=False)
        else:
            # Classifier-free guidance: one batched pass with and without the label.
            null = tf.fill(tf.shape(labels), self.num_classes)
            both = net([tf.concat([noisy, noisy], 0),
                        tf.concat([noise_rates ** 2, noise_rates ** 2], 0),
                        tf.concat([labels, null], 0),
                        tf.concat([label_noise, tf.zeros_like(label_noise)], 0)],
                       training=False)
            cond, uncond = tf.split(tf.cast(both, "float32"), 2, axis=0)
            pred_noises = uncond + guidance * (cond - uncond)
        pred_noises = tf.cast(pred_noises, "float32")
        return pred_noises, (noisy - noise_rates * pred_noises) / signal_rates

    def _step_fn(self, guided: bool):
        """A compiled DDIM step (network + update), cached per guidance mode."""
        if guided not in self._step_fns:
            def step(noisy, t, t_next, eta, noise, labels, label_noise, guidance):
                batch = tf.shape(noisy)[0]
                noise_rates, signal_rates = self.schedule(tf.fill((batch, 1, 1, 1), t))
                _, next_signal_rates = self.schedule(tf.fill((batch, 1, 1, 1), t_next))
                pred_noises, pred_images = self._predict(
                    noisy, noise_rates, signal_rates, labels, label_noise, guidance, guided)
                next_noisy = ddim_step(pred_images, pred_noises, signal_rates,
                                       next_signal_rates, eta, noise)
                return next_noisy, pred_images
            self._step_fns[guided] = tf.function(step, reduce_retracing=True)
        return self._step_fns[guided]

    def _labels_array(self, labels, n: int) -> np.ndarray:
        if not self.conditional:
            if labels is not None:
                raise ValueError("labels given but the model is not conditional")
            return np.zeros(n, np.int32)
        if labels is None:
            raise ValueError(f"a conditional model needs labels (0..{self.num_classes - 1})")
        arr = np.broadcast_to(np.asarray(labels, np.int32), (n,)).copy()
        if arr.min() < 0 or arr.max() >= self.num_classes:
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}, got {sorted(set(arr))}")
        return arr

    def generate(self, n: int, steps: int = 50, eta: float = 0.0, seed: int = 0,
                 labels=None, guidance_scale: float = 1.0, label_noise_std: float = 0.0,
                 batch_size: int = 64, start_index: int = 0, progress=None) -> np.ndarray:
        """Samples `n` images with DDIM, in batches, with the EMA weights.

        Args:
            n: number of images.
            steps: DDIM steps (chosen freely; the network is trained on continuous time).
            eta: 0 deterministic DDIM ... 1 DDPM-like.
            seed: image k uses numpy.random.default_rng([seed, start_index + k]).
            labels: for a conditional model: one label for all or one per image.
            guidance_scale: classifier-free guidance (1 = plain conditional).
            label_noise_std: std of Gaussian noise added to the label embedding (diversity).
            batch_size: images per network call.
            start_index: index of the first image (to regenerate image k alone).
            progress: optional callable(done_images) after each batch.

        Returns:
            float32 array (n, H, W, 3) in [0, 1].
        """
        labels_all = self._labels_array(labels, n)
        guided = self.conditional and guidance_scale != 1.0
        fn = self._step_fn(guided)
        times = sampling_times(steps)
        h, w = self.image_size
        out = np.empty((n, h, w, 3), np.float32)
        for b0 in range(0, n, batch_size):
            idx = range(b0, min(n, b0 + batch_size))
            rngs = [np.random.default_rng([seed, start_index + k]) for k in idx]
            noisy = np.stack([r.standard_normal((h, w, 3), np.float32) for r in rngs])
            label_noise = np.stack([r.standard_normal(self.embedding_dims, np.float32)
                                    for r in rngs]) * np.float32(label_noise_std)
            labels_b = labels_all[b0:b0 + len(rngs)]
            pred = None
            for t, t_next in zip(times[:-1], times[1:]):
                noise = (np.stack([r.standard_normal((h, w, 3), np.float32) for r in rngs])
                         if eta > 0 else np.zeros_like(noisy))
                noisy, pred = fn(noisy, np.float32(t), np.float32(t_next), np.float32(eta),
                                 noise, labels_b, label_noise, np.float32(guidance_scale))
            out[b0:b0 + len(rngs)] = ops.convert_to_numpy(self.denormalize(pred))
            if progress is not None:
                progress(b0 + len(rngs))
        return out

    def inpaint(self, images, masks, steps: int = 50, jump_length: int = 10,
                jump_n_sample: int = 10, eta: float = 1.0, seed: int = 0, labels=None,
                guidance_scale: float = 1.0, batch_size: int = 16, progress=None) -> np.ndarray:
        """RePaint inpainting: regenerates the masked region so that it fits the rest.

        At every step the known region is noised to the current level and pasted in; the
        path jumps back in time (`jump_length` levels, `jump_n_sample - 1` times) to
        resample both regions together. The known pixels of the result are the input's.

        Args:
            images: (N, H, W, 3) floats in [0, 1] at the model's image size.
            masks: (N, H, W) or (N, H, W, 1); 1 (or True) = regenerate, 0 = keep.
            steps, eta, labels, guidance_scale, batch_size: as in `generate`.
            seed: an int (image k draws from default_rng([seed, k])) or one seed per image
                (image k draws from default_rng([seed[k], 0])).
            jump_length, jump_n_sample: the RePaint resampling schedule.

        Returns:
            float32 array (N, H, W, 3) in [0, 1].
        """
        images = np.asarray(images, np.float32)
        masks = np.asarray(masks, np.float32)
        if masks.ndim == 3:
            masks = masks[..., None]
        h, w = self.image_size
        if images.shape[1:] != (h, w, 3) or masks.shape[:3] != images.shape[:3]:
            raise ValueError(f"inpaint needs images (N, {h}, {w}, 3) and masks (N, {h}, {w}); "
                             f"got {images.shape} and {masks.shape}")
        n = len(images)
        keep = 1.0 - np.clip(masks, 0.0, 1.0)
        labels_all = self._labels_array(labels, n)
        guided = self.conditional and guidance_scale != 1.0
        fn = self._step_fn(guided)
        mean = ops.convert_to_numpy(self.pixel_mean)
        std = ops.convert_to_numpy(self.pixel_std)
        path = repaint_schedule(steps, jump_length, jump_n_sample)
        rate = lambda t: [np.float32(v) for v in self.schedule(np.float64(t))]  # noqa: E731
        out = np.empty_like(images)
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            known = (images[sl] - mean) / std
            keep_b = keep[sl]
            rngs = _image_rngs(seed, sl.start, sl.stop)
            draw = lambda: np.stack([r.standard_normal((h, w, 3), np.float32)  # noqa: E731
                                     for r in rngs])
            noisy = draw()
            label_noise = np.zeros((len(rngs), self.embedding_dims), np.float32)
            pred = None
            for cur, nxt in zip(path[:-1], path[1:]):
                t, t_next = cur / steps, nxt / steps
                if nxt < cur:
                    noise_next, signal_next = rate(t_next)
                    known_next = signal_next * known + noise_next * draw()
                    step_noise = draw() if eta > 0 else np.zeros_like(noisy)
                    unknown_next, pred = fn(noisy, np.float32(t), np.float32(t_next),
                                            np.float32(eta), step_noise, labels_all[sl],
                                            label_noise, np.float32(guidance_scale))
                    noisy = keep_b * known_next + (1.0 - keep_b) * unknown_next.numpy()
                else:
                    noisy = renoise(noisy, rate(t)[1], rate(t_next)[1], draw())
            result = ops.convert_to_numpy(self.denormalize(pred))
            out[sl] = keep_b * images[sl] + (1.0 - keep_b) * result
            if progress is not None:
                progress(sl.stop)
        return out

    def img2img(self, images, strength: float = 0.5, steps: int = 50, eta: float = 0.0,
                seed=0, labels=None, guidance_scale: float = 1.0, batch_size: int = 16,
                progress=None) -> np.ndarray:
        """SDEdit image-to-image: noises each image to time `strength`, then DDIM-denoises it.

        The time grid is the one of `generate(steps=steps)`; sampling starts at its level
        `int(steps * (1 - strength))` (as KerasHub's image-to-image does), so `strength=1`
        is a fresh sample and a small strength keeps the layout and changes details.

        Args:
            images: (N, H, W, 3) floats in [0, 1] at the model's image size.
            strength: noise level to start from, in [0, 1]; 0 returns the images unchanged.
            steps, eta, labels, guidance_scale, batch_size, progress: as in `generate`.
            seed: an int (image k draws from default_rng([seed, k])) or one seed per image
                (image k draws from default_rng([seed[k], 0])), as in `inpaint`.

        Returns:
            float32 array (N, H, W, 3) in [0, 1].

        Example:
            >>> winter = model.img2img(photos, strength=0.4, steps=50, seed=[3, 8])
        """
        images = np.asarray(images, np.float32)
        h, w = self.image_size
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"img2img needs images (N, {h}, {w}, 3), got {images.shape}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        times = sampling_times(steps)
        start = int(steps * (1.0 - strength))
        n = len(images)
        if start >= steps:  # no step to take: the input is the answer
            if progress is not None:
                progress(n)
            return images.copy()
        times = times[start:]
        labels_all = self._labels_array(labels, n)
        guided = self.conditional and guidance_scale != 1.0
        fn = self._step_fn(guided)
        mean = ops.convert_to_numpy(self.pixel_mean)
        std = ops.convert_to_numpy(self.pixel_std)
        noise_rate, signal_rate = [np.float32(v) for v in self.schedule(np.float64(times[0]))]
        out = np.empty_like(images)
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            rngs = _image_rngs(seed, sl.start, sl.stop)
            draw = lambda: np.stack([r.standard_normal((h, w, 3), np.float32)  # noqa: E731
                                     for r in rngs])
            noisy = signal_rate * (images[sl] - mean) / std + noise_rate * draw()
            label_noise = np.zeros((len(rngs), self.embedding_dims), np.float32)
            pred = None
            for t, t_next in zip(times[:-1], times[1:]):
                step_noise = draw() if eta > 0 else np.zeros_like(noisy)
                noisy, pred = fn(noisy, np.float32(t), np.float32(t_next), np.float32(eta),
                                 step_noise, labels_all[sl], label_noise,
                                 np.float32(guidance_scale))
            out[sl] = ops.convert_to_numpy(self.denormalize(pred))
            if progress is not None:
                progress(sl.stop)
        return out
