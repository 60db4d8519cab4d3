"""fused_batch_norm.BatchNormalization is Keras' BatchNormalization, computed by one fused
kernel, and reads and writes the same weight files."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from classifier.fused_batch_norm import BatchNormalization as FusedBatchNormalization  # noqa: E402


def _step(layer, x):
    """Output, input/gamma/beta gradients of a non-linear loss, and the moving averages
    after one training call; then the inference output."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.sin(tf.cast(y, tf.float32)))
    params = [v for v in (getattr(layer, "gamma", None), getattr(layer, "beta", None))
              if v is not None]
    grads = tape.gradient(loss, [x, *params])
    return [np.asarray(t, np.float32) for t in (
        y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False))]


@pytest.mark.parametrize("kwargs", [dict(momentum=0.9), dict(center=False, scale=False),
                                    dict(momentum=0.5, epsilon=1e-5)],
                         ids=["small_cnn", "no_affine", "other_momentum_epsilon"])
def test_training_and_inference_match_keras_batch_norm(kwargs):
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (16, 7, 7, 5)), tf.float32)
    gamma = np.random.default_rng(1).normal(1, 0.2, 5).astype(np.float32)
    results = []
    for cls in (keras.layers.BatchNormalization, FusedBatchNormalization):
        layer = cls(**kwargs)
        layer.build(x.shape)
        if layer.scale:
            layer.gamma.assign(gamma)
            layer.beta.assign(gamma - 1)
        results.append(_step(layer, x))
    for keras_value, fused_value in zip(*results):
        scale = max(1.0, float(np.abs(keras_value).max()))
        np.testing.assert_allclose(fused_value, keras_value, atol=2e-5 * scale, rtol=0)


def test_a_mixed_precision_layer_returns_its_compute_dtype_and_keeps_float32_averages():
    x = tf.constant(np.random.default_rng(0).normal(0, 1, (4, 3, 3, 2)), tf.bfloat16)
    layer = FusedBatchNormalization(dtype="mixed_bfloat16")
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16 and layer.moving_mean.dtype == "float32"
    assert np.isfinite(np.asarray(layer.moving_variance)).all()


def test_other_ranks_and_masks_take_keras_own_path():
    x = tf.constant(np.random.default_rng(0).normal(0, 1, (6, 4)), tf.float32)
    plain, fused = keras.layers.BatchNormalization(), FusedBatchNormalization()
    np.testing.assert_array_equal(np.asarray(fused(x, training=True)),
                                  np.asarray(plain(x, training=True)))


def test_small_cnn_weights_saved_with_keras_batch_norm_load_and_give_the_same_logits(tmp_path):
    # Classifier folders trained before the fused layer hold Keras BatchNormalization weights.
    from classifier.backbones import build_classifier
    keras.utils.set_random_seed(0)
    fused, _ = build_classifier("small_cnn", 3, 16, verbose=False)
    old = keras.models.clone_model(fused, clone_function=lambda layer: (
        keras.layers.BatchNormalization.from_config(layer.get_config())
        if isinstance(layer, FusedBatchNormalization) else layer.__class__.from_config(
            layer.get_config())))
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in old.layers)
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype(np.float32)
    old.set_weights([w + 0.01 * i for i, w in enumerate(old.get_weights())])
    old(x, training=True)                         # moving averages away from their start
    for source, target in ((old, fused), (fused, old)):   # both ways
        source.save_weights(tmp_path / "best.weights.h5")
        target.load_weights(tmp_path / "best.weights.h5")
        np.testing.assert_allclose(target.predict(x, verbose=0), source.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-5)   # float rounding, not more
