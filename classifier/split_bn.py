"""Training with the BatchNorm statistics of synthetic images kept apart (--synthetic_bn
separate).

Generated images differ from real ones in low-level statistics (contrast, noise, sharpness).
When both share a batch, every BatchNorm layer normalises the real images with statistics
that the synthetic ones shifted, and its moving averages, which are all that test time uses,
describe a mixture no test image comes from. Here each batch is split: the real images pass
first and alone update the moving averages; the synthetic images pass second, normalised by
their own batch statistics, and leave no trace in the moving averages. One loss over both
parts, one optimiser step (the per-domain BatchNorm of "Diversify, don't fine-tune", and of
domain-specific BN in domain adaptation).

Example:
    >>> trainer = SplitBatchNormTrainer(network)   # network: any Keras model with BatchNorm
    >>> trainer.compile(optimizer="adam", loss=loss)
    >>> trainer.fit(dataset)  # batches ((pixels, is_synthetic), targets, sample_weight)
"""
from __future__ import annotations

import keras
import tensorflow as tf


def batch_norm_layers(model) -> list:
    """Every BatchNormalization layer of `model`, nested models included.

    Example:
        >>> len(batch_norm_layers(build_classifier("small_cnn", 3, 32)[0]))
        3
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += batch_norm_layers(layer)
    return found


class SplitBatchNormTrainer(keras.Model):
    """Trains `network` (shared, not copied) on batches whose synthetic images get their own
    BatchNorm batch statistics; prediction is the network's own.

    Args:
        network: a Keras model with at least one BatchNormalization layer.

    Raises:
        ValueError: the network has no BatchNormalization layer.
    """

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self._moving = [v for bn in batch_norm_layers(network)
                        for v in (bn.moving_mean, bn.moving_variance)]
        if not self._moving:
            raise ValueError(f"{network.name} has no BatchNormalization layer: "
                             f"--synthetic_bn separate has nothing to keep apart")

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def _pass(self, images, keep_averages: bool):
        """Logits of `images` in training mode; an empty part is skipped (a network called
        on no images fails, and its batch statistics would be NaN). With `keep_averages`,
        the moving averages are put back to their values before the pass."""
        def run():
            before = [tf.identity(v.value) for v in self._moving] if keep_averages else []
            logits = tf.cast(self.network(images, training=True), tf.float32)
            for var, old in zip(self._moving, before):
                var.assign(old)
            return logits

        def nothing():
            return tf.zeros((0, self.network.output_shape[-1]), tf.float32)

        return tf.cond(tf.shape(images)[0] > 0, run, nothing)

    def train_step(self, data):
        (images, synthetic), targets, weights = data
        synthetic = tf.reshape(tf.cast(synthetic, tf.bool), [-1])
        real = tf.logical_not(synthetic)
        parts = [(tf.boolean_mask(t, real), tf.boolean_mask(t, synthetic))
                 for t in (images, targets, weights)]
        (x_real, x_syn), (y_real, y_syn), (w_real, w_syn) = parts
        with tf.GradientTape() as tape:
            logits_real = self._pass(x_real, keep_averages=False)
            logits_syn = self._pass(x_syn, keep_averages=True)
            y = tf.concat([y_real, y_syn], 0)
            logits = tf.concat([logits_real, logits_syn], 0)
            w = tf.concat([w_real, w_syn], 0)
            loss = self.compute_loss(x=images, y=y, y_pred=logits, sample_weight=w,
                                     training=True)
            # As Keras' own train_step does: the epoch logs' "loss" (which the NaN guard
            # reads) comes from this tracker.
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(images)[0])
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self.compute_metrics(images, y, logits, sample_weight=w)
