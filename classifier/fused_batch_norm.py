"""BatchNormalization computed by TensorFlow's fused kernel.

Keras 3 computes a training-mode BatchNorm from separate ops (moments, subtract, rsqrt,
multiply, add) and differentiates each of them; TensorFlow's FusedBatchNormV3 does the
forward pass and its gradient in one kernel each. On this project's small CNN at 28 px that
is more than half of a training step on a 2-core CPU (benchmarks/bench_batch_norm.py).
The maths, the variables and their names are Keras' own, and so is the class name: Keras
keys a weights file by the snake-cased class names of its layers, so a folder trained with
either layer loads into the other.

Example:
    >>> from classifier import fused_batch_norm
    >>> x = fused_batch_norm.BatchNormalization(momentum=0.9, name="bn0")(x)
"""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="diffaug")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization whose pass over NHWC images (training and inference)
    is one fused TensorFlow kernel; every other case (masks, other backends or ranks,
    renorm, synchronized) is the parent's code."""

    def _fusable(self, inputs, mask) -> bool:
        return (mask is None and not self.renorm and not self.synchronized
                and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        # why: only the TensorFlow backend reaches this line
        import tensorflow as tf
        x = tf.cast(inputs, tf.float32)   # as the parent: statistics in float32
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        training = bool(training) and self.trainable
        # Inference normalises with the moving averages (an empty mean/variance asks the
        # training kernel for the batch's own).
        y, mean, sample_var, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta,
            mean=tf.zeros([0]) if training else tf.cast(self.moving_mean, tf.float32),
            variance=(tf.zeros([0]) if training
                      else tf.cast(self.moving_variance, tf.float32)),
            epsilon=self.epsilon, data_format="NHWC", is_training=training)
        if training:
            # The kernel returns the unbiased (n - 1) variance for the running average;
            # Keras averages the biased one (which both use to normalise the batch).
            n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            variance = sample_var * (n - 1.0) / tf.maximum(n, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(tf.cast(self.moving_mean, tf.float32) * momentum
                                    + tf.stop_gradient(mean) * (1.0 - momentum))
            self.moving_variance.assign(tf.cast(self.moving_variance, tf.float32) * momentum
                                        + tf.stop_gradient(variance) * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)
