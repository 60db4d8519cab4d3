"""--synthetic_bn separate on a tiny real network: only real images move the BatchNorm moving
averages, a batch of synthetic images alone leaves them as they were, and the weights still
learn from both."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from classifier.backbones import build_classifier  # noqa: E402
from classifier.losses import AdjustedCrossEntropy  # noqa: E402
from classifier.split_bn import SplitBatchNormTrainer, batch_norm_layers  # noqa: E402

SIZE, CLASSES = 16, 3


def _network(seed=0):
    keras.utils.set_random_seed(seed)
    model, _ = build_classifier("small_cnn", CLASSES, SIZE, dropout=0.0, verbose=False)
    return model


def _trainer(network):
    trainer = SplitBatchNormTrainer(network)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), loss=AdjustedCrossEntropy(None))
    return trainer


def _batch(synthetic, seed=1):
    rng = np.random.default_rng(seed)
    n = len(synthetic)
    images = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    # synthetic images brighter than real ones: their statistics differ on purpose
    images[np.asarray(synthetic)] = np.clip(images[np.asarray(synthetic)] * 0.3 + 170, 0, 255)
    targets = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, n)]
    return images, np.asarray(synthetic), targets, np.ones(n, "float32")


def _moving(network):
    return [v.numpy().copy() for bn in batch_norm_layers(network)
            for v in (bn.moving_mean, bn.moving_variance)]


def _step(trainer, images, synthetic, targets, weights):
    import tensorflow as tf
    data = ((tf.constant(images), tf.constant(synthetic)), tf.constant(targets),
            tf.constant(weights))
    return trainer.train_step(data)


def test_only_the_real_images_move_the_moving_averages():
    images, synthetic, targets, weights = _batch([False] * 4 + [True] * 4)
    network = _network()
    twin = _network()  # same seed: same weights and statistics
    _step(_trainer(network), images, synthetic, targets, weights)
    twin(images[~synthetic], training=True)  # what the real images alone do to the averages
    for got, want in zip(_moving(network), _moving(twin)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # and the mixture would have given other averages
    mixed = _network()
    mixed(images, training=True)
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(_moving(network),
                                                                  _moving(mixed)))


def test_a_batch_of_synthetic_images_only_keeps_the_averages_and_still_learns():
    images, synthetic, targets, weights = _batch([True] * 6)
    network = _network()
    before_stats = _moving(network)
    before_weights = [w.numpy().copy() for w in network.trainable_weights]
    logs = _step(_trainer(network), images, synthetic, targets, weights)
    assert np.isfinite(float(logs["loss"]))
    for got, want in zip(_moving(network), before_stats):
        np.testing.assert_array_equal(got, want)
    changed = [not np.array_equal(w.numpy(), b)
               for w, b in zip(network.trainable_weights, before_weights)]
    assert all(changed)


def test_a_network_without_batch_norm_is_refused_in_one_line():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain")
    with pytest.raises(ValueError, match="no BatchNormalization"):
        SplitBatchNormTrainer(plain)
