"""`DiffusionModel`: training, EMA weights, batched DDIM sampling, RePaint inpainting, SDEdit.

The network (`u_net_backbone.build_unet`) sees `signal_rate * image + noise_rate * noise`
and the noise variance (plus label, site and augmentation conditions) and predicts the noise
(`prediction="eps"`, as the keras.io DDIM example) or v (`prediction="v"`); the loss is the
mean absolute error on that target, optionally min-SNR weighted. Sampling always uses the
EMA copy of the weights, through a compiled step function (1.4-2.7x faster per image than
calling the network eagerly, measured in benchmarks/bench_diffusion.py).

Training data yields images, (images, labels) or (images, {"labels", "sites", "augment"}).

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

from diffusion_maths.schedule import (clip_denoised, ddim_step, diffusion_schedule,
                                      guidance_at, guided_output, img2img_times, min_snr_weight,
                                      outputs_to_noise_and_image, renoise, repaint_schedule,
                                      sampling_times, training_target)
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
def _multi_worker(strategy) -> bool:
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # noqa: SLF001


class DiffusionModel(keras.Model):
    """A DDIM diffusion model on images in [0, 1] (1 channel for grey data, or 3).

    Args:
        image_size: (height, width).
        widths, block_depth, embedding_dims, attention_in_bottleneck,
        attention_in_up_down_sample, groups, channels, block_conditioning,
        residual_block, dropout: the U-Net (see
            `u_net_backbone.build_unet`).
        num_classes: 0 for one model per label; > 0 for a class-conditional model.
        num_sites: > 0 conditions on the site id too.
        augment_dims: > 0 conditions on the augmentation each training image went through
            (sampling asks for none).
        min_signal_rate, max_signal_rate: the cosine schedule's ends.
        ema: EMA decay of the sampling weights.
        label_dropout, site_dropout: probability of training without the label / the site
            (each on its own, so guidance works on either).
        prediction: "eps" (noise) or "v".
        loss_weighting: "none" or "min_snr" (min-SNR-gamma, `min_snr_gamma`).
        seed: seed of the training noise.
    """

    def __init__(self, image_size: Sequence[int] = (64, 64),
                 widths: Sequence[int] = (32, 64, 96, 128), block_depth: int = 2,
                 embedding_dims: int = 32, attention_in_bottleneck: bool = False,
                 attention_in_up_down_sample: bool = False, num_classes: int = 0,
                 groups: int = 8, min_signal_rate: float = 0.02, max_signal_rate: float = 0.95,
                 ema: float = 0.999, label_dropout: float = 0.1, seed: int = 0,
                 channels: int = 3, num_sites: int = 0, augment_dims: int = 0,
                 block_conditioning: bool = True, site_dropout: float = 0.1,
                 prediction: str = "eps", loss_weighting: str = "none",
                 min_snr_gamma: float = 5.0, residual_block: str = "prenorm",
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < min_signal_rate < max_signal_rate < 1.0:
            raise ValueError(f"need 0 < min_signal_rate < max_signal_rate < 1, got "
                             f"{min_signal_rate}, {max_signal_rate}")
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        if loss_weighting not in ("none", "min_snr"):
            raise ValueError(f"loss_weighting must be 'none' or 'min_snr', got {loss_weighting!r}")
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
        self.channels = int(channels)
        self.num_sites = int(num_sites)
        self.augment_dims = int(augment_dims)
        self.block_conditioning = bool(block_conditioning)
        self.residual_block = str(residual_block)
        self.dropout = float(dropout)
        self.site_dropout = float(site_dropout)
        self.prediction = str(prediction)
        self.loss_weighting = str(loss_weighting)
        self.min_snr_gamma = float(min_snr_gamma)
        net_args = dict(image_size=self.image_size, widths=self.widths,
                        block_depth=self.block_depth, embedding_dims=self.embedding_dims,
                        attention_in_bottleneck=self.attention_in_bottleneck,
                        attention_in_up_down_sample=self.attention_in_up_down_sample,
                        num_classes=self.num_classes, groups=self.groups,
                        channels=self.channels, num_sites=self.num_sites,
                        augment_dims=self.augment_dims,
                        block_conditioning=self.block_conditioning,
                        residual_block=self.residual_block, dropout=self.dropout)
        self.network = build_unet(**net_args, name="network")
        self.ema_network = build_unet(**net_args, name="ema_network")
        self.ema_network.set_weights(self.network.get_weights())
        # Per-channel statistics of the training images (set by `adapt_normalizer`), saved
        # with the weights so that a loaded model needs no data.
        self.pixel_mean = self.add_weight(shape=(self.channels,), initializer="zeros",
                                          trainable=False, dtype="float32", name="pixel_mean")
        self.pixel_std = self.add_weight(shape=(self.channels,), initializer="ones",
                                         trainable=False, dtype="float32", name="pixel_std")
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
                "label_dropout": self.label_dropout, "seed": self.seed,
                "channels": self.channels, "num_sites": self.num_sites,
                "augment_dims": self.augment_dims,
                "block_conditioning": self.block_conditioning,
                "residual_block": self.residual_block, "dropout": self.dropout,
                "site_dropout": self.site_dropout, "prediction": self.prediction,
                "loss_weighting": self.loss_weighting, "min_snr_gamma": self.min_snr_gamma}

    @property
    def metrics(self):
        return [self.noise_loss_tracker, self.image_loss_tracker]

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def guidable(self) -> bool:
        """Whether classifier-free guidance has a condition to amplify (label or site)."""
        return self.num_classes > 0 or self.num_sites > 0

    # -- normalisation -------------------------------------------------------------------
    def adapt_normalizer(self, data) -> None:
        """Sets the per-channel mean/std from images in [0, 1] (array or tf.data batches)."""
        if isinstance(data, np.ndarray):
            data = [data]
        c = self.channels
        total = np.zeros(c, np.float64)
        total_sq = np.zeros(c, np.float64)
        count = 0
        for batch in data:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = np.asarray(images, np.float64).reshape(-1, c)
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

    # -- conditions ----------------------------------------------------------------------
    def _network_inputs(self, noisy_images, noise_rates, labels=None, sites=None,
                        augment=None, label_noise=None):
        """The network's input list; absent conditions are 'null' (no label/site/augment)."""
        batch = ops.shape(noisy_images)[0]
        inputs = [noisy_images, noise_rates ** 2]
        if self.num_classes > 0:
            inputs.append(ops.cast(labels, "int32") if labels is not None
                          else ops.full((batch,), self.num_classes, "int32"))
            inputs.append(label_noise if label_noise is not None
                          else ops.zeros((batch, self.embedding_dims)))
        if self.num_sites > 0:
            inputs.append(ops.cast(sites, "int32") if sites is not None
                          else ops.full((batch,), self.num_sites, "int32"))
        if self.augment_dims > 0:
            inputs.append(ops.cast(augment, "float32") if augment is not None
                          else ops.zeros((batch, self.augment_dims)))
        return inputs

    def _noisy_batch(self, images, seed):
        batch = ops.shape(images)[0]
        noises = tf.random.stateless_normal(ops.shape(images), seed=seed)
        times = tf.random.stateless_uniform((batch, 1, 1, 1), seed=seed + [0, 1])
        noise_rates, signal_rates = self.schedule(times)
        return noises, noise_rates, signal_rates, signal_rates * images + noise_rates * noises

    @staticmethod
    def _unpack(data):
        """(images, {"labels", "sites", "augment"}) from what the dataset yields."""
        if not isinstance(data, (tuple, list)):
            return data, {}
        images = data[0]
        if len(data) < 2 or data[1] is None:
            return images, {}
        cond = data[1]
        return images, (dict(cond) if isinstance(cond, dict) else {"labels": cond})

    def _check_conditions(self, cond: dict):
        if self.conditional and cond.get("labels") is None:
            raise ValueError("a conditional model (num_classes > 0) trains on (images, labels)")

    def _drop(self, values, null: int, rate: float, seed):
        """Replaces a share `rate` of the ids by the null id (guidance learns the unconditioned)."""
        values = ops.cast(values, "int32")
        drop = tf.random.stateless_uniform(ops.shape(values), seed=seed)
        return ops.where(drop < rate, null, values)

    def _outputs(self, net, inputs, noisy, noise_rates, signal_rates, training: bool):
        out = ops.cast(net(inputs, training=training), "float32")
        return out, *outputs_to_noise_and_image(out, noisy, noise_rates, signal_rates,
                                                self.prediction)

    # -- training ------------------------------------------------------------------------
    def train_step(self, data):
        images, cond = self._unpack(data)
        self._check_conditions(cond)
        images = self.normalize(ops.cast(images, "float32"))
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        n_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Stateless noise keyed on (seed, step, replica): reproducible and needs no
        # random-state variable (which MirroredStrategy could not update per replica).
        step = tf.cast(self.optimizer.iterations, "int32")
        seed = tf.stack([tf.constant(self.seed, "int32"), step * 64 + tf.cast(replica, "int32")])
        noises, noise_rates, signal_rates, noisy = self._noisy_batch(images, seed)
        labels = sites = None
        if self.num_classes > 0:
            labels = self._drop(cond["labels"], self.num_classes, self.label_dropout,
                                seed + [0, 2])
        if self.num_sites > 0 and cond.get("sites") is not None:
            sites = self._drop(cond["sites"], self.num_sites, self.site_dropout, seed + [0, 3])
        inputs = self._network_inputs(noisy, noise_rates, labels, sites, cond.get("augment"))
        target = training_target(noises, images, noise_rates, signal_rates, self.prediction)
        with tf.GradientTape() as tape:
            out, pred_noises, pred_images = self._outputs(
                self.network, inputs, noisy, noise_rates, signal_rates, training=True)
            per_image = ops.mean(ops.abs(target - out), axis=(1, 2, 3))
            if self.loss_weighting == "min_snr":
                weights = min_snr_weight(noise_rates, signal_rates, self.min_snr_gamma,
                                         self.prediction)
                per_image = per_image * ops.reshape(weights, (-1,))
            loss = ops.mean(per_image)
            # Gradients are summed over replicas: scale so the update is the global mean.
            scaled = self.optimizer.scale_loss(loss / n_replicas)
        weights = self.network.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, weights), weights)
        # Tracked as the noise error whatever the target, so runs compare with each other.
        self.noise_loss_tracker.update_state(ops.mean(ops.abs(noises - pred_noises)))
        self.image_loss_tracker.update_state(ops.mean(ops.abs(images - pred_images)))
        self._update_ema()
        return self._logs()

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
        images, cond = self._unpack(data)
        self._check_conditions(cond)
        images = self.normalize(ops.cast(images, "float32"))
        # Noise keyed on the images themselves: the same validation batch gets the same
        # noise every epoch, so val loss changes only when the model does.
        key = ops.cast(ops.sum(images * 1000.0), "int64") % 2147483647
        seed = tf.stack([tf.constant(self.seed + 1, "int32"), tf.cast(key, "int32")])
        noises, noise_rates, signal_rates, noisy = self._noisy_batch(images, seed)
        inputs = self._network_inputs(noisy, noise_rates, cond.get("labels"),
                                      cond.get("sites"), cond.get("augment"))
        _, pred_noises, pred_images = self._outputs(
            self.ema_network, inputs, noisy, noise_rates, signal_rates, training=False)
        self.noise_loss_tracker.update_state(ops.mean(ops.abs(noises - pred_noises)))
        self.image_loss_tracker.update_state(ops.mean(ops.abs(images - pred_images)))
        return self._logs()

    # Keras 3 cannot fit under MultiWorkerMirroredStrategy as it is (keras-team/keras#20585):
    # it averages each worker's logs over axis 0, which scalars lack, and it reduces a first
    # batch across workers eagerly to build the model. Logs of shape [1] and a model built
    # before fit (its layers exist from __init__, the optimizer builds on its first step)
    # get around both; other strategies keep Keras' own path.
    def _logs(self) -> dict:
        logs = {m.name: m.result() for m in self.metrics}
        if _multi_worker(tf.distribute.get_strategy()):
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not _multi_worker(self.distribute_strategy):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # -- sampling ------------------------------------------------------------------------
    def _predict(self, noisy, noise_rates, signal_rates, labels, sites, label_noise,
                 guidance, guided, rescale=0.0):
        """(noise, clean image) predicted by the EMA network, the image clipped into the data
        range; sampling asks for no augmentation."""
        net = self.ema_network
        labels = labels if self.num_classes > 0 else None
        sites = sites if self.num_sites > 0 else None
        if not guided:
            inputs = self._network_inputs(noisy, noise_rates, labels, sites, None, label_noise)
            out = tf.cast(net(inputs, training=False), "float32")
        else:
            # Classifier-free guidance: one batched pass with and without the conditions.
            two = lambda a, b: None if a is None else tf.concat([a, b], 0)  # noqa: E731
            inputs = self._network_inputs(
                tf.concat([noisy, noisy], 0), tf.concat([noise_rates, noise_rates], 0),
                two(labels, tf.fill(tf.shape(noisy)[:1], self.num_classes)),
                two(sites, tf.fill(tf.shape(noisy)[:1], self.num_sites)), None,
                two(label_noise, tf.zeros_like(label_noise)))
            cond, uncond = tf.split(tf.cast(net(inputs, training=False), "float32"), 2, axis=0)
            out = guided_output(cond, uncond, guidance, rescale)
        _, images = outputs_to_noise_and_image(out, noisy, noise_rates, signal_rates,
                                               self.prediction)
        # normalised images of pixel values 0 and 1: the range every clean image lies in
        low = -self.pixel_mean / self.pixel_std
        high = (1.0 - self.pixel_mean) / self.pixel_std
        return clip_denoised(noisy, images, noise_rates, signal_rates, low, high)

    def _step_fn(self, guided: bool):
        """A compiled DDIM step (network + update), cached per guidance mode."""
        if guided not in self._step_fns:
            def step(noisy, t, t_next, eta, noise, labels, sites, label_noise, guidance,
                     rescale):
                batch = tf.shape(noisy)[0]
                noise_rates, signal_rates = self.schedule(tf.fill((batch, 1, 1, 1), t))
                _, next_signal_rates = self.schedule(tf.fill((batch, 1, 1, 1), t_next))
                pred_noises, pred_images = self._predict(
                    noisy, noise_rates, signal_rates, labels, sites, label_noise, guidance,
                    guided, rescale)
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

    def _sites_array(self, sites, n: int) -> np.ndarray:
        """Site ids per image; None = no site (the null id, `num_sites`)."""
        if self.num_sites == 0:
            if sites is not None:
                raise ValueError("sites given but the model is not site-conditioned")
            return np.zeros(n, np.int32)
        if sites is None:
            return np.full(n, self.num_sites, np.int32)
        arr = np.broadcast_to(np.asarray(sites, np.int32), (n,)).copy()
        if arr.min() < 0 or arr.max() > self.num_sites:
            raise ValueError(f"sites must be in 0..{self.num_sites - 1} (or {self.num_sites} = "
                             f"none), got {sorted(set(arr))}")
        return arr

    def _guided(self, guidance_scale: float) -> bool:
        return self.guidable and guidance_scale != 1.0

    def _check_images(self, images, what: str) -> np.ndarray:
        images = np.asarray(images, np.float32)
        h, w = self.image_size
        # RGB into a grey model: its luminance; grey into a colour model: repeated.
        if images.ndim == 4 and images.shape[-1] == 3 and self.channels == 1:
            images = images @ np.array([[0.299], [0.587], [0.114]], np.float32)
        elif images.ndim == 4 and images.shape[-1] == 1 and self.channels == 3:
            images = np.repeat(images, 3, axis=-1)
        if images.ndim != 4 or images.shape[1:] != (h, w, self.channels):
            raise ValueError(f"{what} needs images (N, {h}, {w}, {self.channels}), got "
                             f"{images.shape}")
        return images

    def _sampler(self, n: int, labels, sites, guidance_scale: float,
                 guidance_rescale: float, eta: float, guidance_max_noise: float = 0.0):
        """The step every sampling loop takes: `step(noisy, t, t_next, sl, label_noise, draw)`
        runs the compiled DDIM step for images `sl` of the call, drawing its fresh noise with
        `draw` when eta > 0, and returns (next noisy images, predicted clean images). A step
        that `guidance_max_noise` leaves unguided makes one network pass, not two."""
        labels_all = self._labels_array(labels, n)
        sites_all = self._sites_array(sites, n)
        eta32, rescale = np.float32(eta), np.float32(guidance_rescale)

        def step(noisy, t, t_next, sl, label_noise, draw):
            scale = guidance_at(t, guidance_scale, guidance_max_noise, self.min_signal_rate,
                                self.max_signal_rate)
            noise = draw() if eta > 0 else np.zeros_like(noisy)
            return self._step_fn(self._guided(scale))(
                noisy, np.float32(t), np.float32(t_next), eta32, noise, labels_all[sl],
                sites_all[sl], label_noise, np.float32(scale), rescale)
        return step

    def _batched(self, n: int, batch_size: int, seed, start_index: int, run_batch,
                 progress) -> np.ndarray:
        """The batch loop of every sampling method: `run_batch(sl, draw, rngs)` returns the
        images `sl` of the call, `draw()` one standard normal image per image of the batch
        from that image's own generator (`_image_rngs`), so an image's noise does not
        depend on the batch it lands in."""
        shape = (*self.image_size, self.channels)
        out = np.empty((n, *shape), np.float32)
        for b0 in range(0, n, batch_size):
            sl = slice(b0, min(n, b0 + batch_size))
            rngs = _image_rngs(seed, start_index + sl.start, start_index + sl.stop)
            draw = lambda rngs=rngs: np.stack([r.standard_normal(shape, np.float32)  # noqa: E731
                                               for r in rngs])
            out[sl] = run_batch(sl, draw, rngs)
            if progress is not None:
                progress(sl.stop)
        return out

    def _denoise(self, step, noisy, times, sl, label_noise, draw) -> np.ndarray:
        """DDIM along `times` from `noisy`; the last clean-image prediction, in [0, 1]."""
        pred = None
        for t, t_next in zip(times[:-1], times[1:]):
            noisy, pred = step(noisy, t, t_next, sl, label_noise, draw)
        return ops.convert_to_numpy(self.denormalize(pred))

    def generate(self, n: int, steps: int = 50, eta: float = 0.0, seed: int = 0,
                 labels=None, guidance_scale: float = 1.0, label_noise_std: float = 0.0,
                 batch_size: int = 64, start_index: int = 0, progress=None,
                 sites=None, guidance_rescale: float = 0.0,
                 guidance_max_noise: float = 0.0) -> np.ndarray:
        """Samples `n` images with DDIM, in batches, with the EMA weights.

        Args:
            n: number of images.
            steps: DDIM steps (chosen freely; the network is trained on continuous time).
            eta: 0 deterministic DDIM ... 1 DDPM-like.
            seed: image k uses numpy.random.default_rng([seed, start_index + k]).
            labels: for a conditional model: one label for all or one per image.
            guidance_scale: classifier-free guidance (1 = plain conditional).
            guidance_rescale: 0..1, how far each guided prediction is pulled back to the
                spread of the conditional one (0.7 is the paper's choice; 0 = off).
            guidance_max_noise: guide only the steps whose noise-to-signal ratio is at most
                this (`diffusion_maths.schedule.guidance_at`; 0 = every step).
            label_noise_std: std of Gaussian noise added to the label embedding (diversity).
            batch_size: images per network call.
            start_index: index of the first image (to regenerate image k alone).
            progress: optional callable(done_images) after each batch.
            sites: for a site-conditioned model: one site id for all or one per image
                (None: any site).

        Returns:
            float32 array (n, H, W, channels) in [0, 1].
        """
        step = self._sampler(n, labels, sites, guidance_scale, guidance_rescale, eta,
                             guidance_max_noise)
        times = sampling_times(steps)

        def run_batch(sl, draw, rngs):
            noisy = draw()
            label_noise = np.stack([r.standard_normal(self.embedding_dims, np.float32)
                                    for r in rngs]) * np.float32(label_noise_std)
            return self._denoise(step, noisy, times, sl, label_noise, draw)
        return self._batched(n, batch_size, seed, start_index, run_batch, progress)

    def inpaint(self, images, masks, steps: int = 50, jump_length: int = 10,
                jump_n_sample: int = 10, eta: float = 1.0, seed: int = 0, labels=None,
                guidance_scale: float = 1.0, batch_size: int = 16, progress=None,
                sites=None, guidance_rescale: float = 0.0,
                guidance_max_noise: float = 0.0) -> np.ndarray:
        """RePaint inpainting: regenerates the masked region so that it fits the rest.

        At every step the known region is noised to the current level and pasted in; the
        path jumps back in time (`jump_length` levels, `jump_n_sample - 1` times) to
        resample both regions together. The known pixels of the result are the input's.

        Args:
            images: (N, H, W, channels) floats in [0, 1] at the model's image size.
            masks: (N, H, W) or (N, H, W, 1); 1 (or True) = regenerate, 0 = keep.
            steps, eta, labels, sites, guidance_scale, guidance_rescale, guidance_max_noise,
                batch_size: as in `generate`.
            seed: an int (image k draws from default_rng([seed, k])) or one seed per image
                (image k draws from default_rng([seed[k], 0])).
            jump_length, jump_n_sample: the RePaint resampling schedule.

        Returns:
            float32 array (N, H, W, channels) in [0, 1].
        """
        images = self._check_images(images, "inpaint")
        masks = np.asarray(masks, np.float32)
        if masks.ndim == 3:
            masks = masks[..., None]
        h, w = self.image_size
        if masks.shape[:3] != images.shape[:3]:
            raise ValueError(f"inpaint needs masks (N, {h}, {w}) matching the images; got "
                             f"{masks.shape} for {images.shape}")
        n = len(images)
        keep = 1.0 - np.clip(masks, 0.0, 1.0)
        step = self._sampler(n, labels, sites, guidance_scale, guidance_rescale, eta,
                             guidance_max_noise)
        mean = ops.convert_to_numpy(self.pixel_mean)
        std = ops.convert_to_numpy(self.pixel_std)
        path = repaint_schedule(steps, jump_length, jump_n_sample)
        rate = lambda t: [np.float32(v) for v in self.schedule(np.float64(t))]  # noqa: E731

        def run_batch(sl, draw, rngs):
            known = (images[sl] - mean) / std
            keep_b = keep[sl]
            noisy = draw()
            label_noise = np.zeros((len(rngs), self.embedding_dims), np.float32)
            pred = None
            for cur, nxt in zip(path[:-1], path[1:]):
                t, t_next = cur / steps, nxt / steps
                if nxt < cur:
                    noise_next, signal_next = rate(t_next)
                    known_next = signal_next * known + noise_next * draw()
                    unknown_next, pred = step(noisy, t, t_next, sl, label_noise, draw)
                    noisy = keep_b * known_next + (1.0 - keep_b) * unknown_next.numpy()
                else:
                    noisy = renoise(noisy, rate(t)[1], rate(t_next)[1], draw())
            result = ops.convert_to_numpy(self.denormalize(pred))
            return keep_b * images[sl] + (1.0 - keep_b) * result
        return self._batched(n, batch_size, seed, 0, run_batch, progress)

    def img2img(self, images, strength: float = 0.5, steps: int = 50, eta: float = 0.0,
                seed=0, labels=None, guidance_scale: float = 1.0, batch_size: int = 16,
                progress=None, sites=None, guidance_rescale: float = 0.0,
                guidance_max_noise: float = 0.0) -> np.ndarray:
        """SDEdit image-to-image: noises each image to time `strength`, then DDIM-denoises it.

        Sampling starts exactly at diffusion time `strength` and takes
        `ceil(steps * strength)` equal steps to 0 (`diffusion_maths.schedule.img2img_times`),
        so `strength=1` is a fresh sample of `steps` steps and a small strength keeps the
        layout and changes details.

        Args:
            images: (N, H, W, channels) floats in [0, 1] at the model's image size.
            strength: noise level to start from, in [0, 1]; 0 returns the images unchanged.
            steps, eta, labels, sites, guidance_scale, guidance_rescale, guidance_max_noise,
                batch_size, progress: as in `generate`.
            seed: an int (image k draws from default_rng([seed, k])) or one seed per image
                (image k draws from default_rng([seed[k], 0])), as in `inpaint`.

        Returns:
            float32 array (N, H, W, channels) in [0, 1].

        Example:
            >>> winter = model.img2img(photos, strength=0.4, steps=50, seed=[3, 8])
        """
        images = self._check_images(images, "img2img")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        n = len(images)
        if strength == 0.0:  # no step to take: the input is the answer
            if progress is not None:
                progress(n)
            return images.copy()
        times = img2img_times(steps, strength)
        step = self._sampler(n, labels, sites, guidance_scale, guidance_rescale, eta,
                             guidance_max_noise)
        mean = ops.convert_to_numpy(self.pixel_mean)
        std = ops.convert_to_numpy(self.pixel_std)
        noise_rate, signal_rate = [np.float32(v) for v in self.schedule(np.float64(times[0]))]

        def run_batch(sl, draw, rngs):
            noisy = signal_rate * (images[sl] - mean) / std + noise_rate * draw()
            label_noise = np.zeros((len(rngs), self.embedding_dims), np.float32)
            return self._denoise(step, noisy, times, sl, label_noise, draw)
        return self._batched(n, batch_size, seed, 0, run_batch, progress)
