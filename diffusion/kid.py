"""Kernel Inception Distance (KID) between real and generated images, and its features.

KID (Binkowski et al. 2018) is the unbiased squared MMD between two sets of image features
under the polynomial kernel k(x, y) = (x.y / d + 1)^3. Unlike FID it is unbiased for small
sets, which suits the few hundred images per label of this project. 0 = same distribution.

Feature extractors:
    "inception"  InceptionV3, ImageNet weights, global-average-pooled, on 75x75 inputs (the
                 keras.io DDIM example's choice, cheap enough to run during training).
                 The weights download once (~90 MB) to ~/.keras/models.
    "random"     a fixed, seeded, randomly initialised 4-layer conv net (256 features on
                 64x64 inputs). Needs no download. Its KID measures differences of low-level
                 image statistics (colour, texture, edges): fine to compare epochs or runs
                 that use the same extractor, NOT comparable with published KID numbers.
    "auto"       inception when its weights can be had, else random (with one printed line).

Example:
    >>> extractor = build_feature_extractor("random")
    >>> kid = KernelInceptionDistance(extractor, real_images)     # images in [0, 1]
    >>> kid(generated_images)
    0.0123
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

from runtime.precision import dtype_policy

FEATURE_KINDS = ("auto", "inception", "random")
_INCEPTION_NOTOP = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs of rows."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def kid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased squared MMD with the polynomial kernel between two feature sets (n, d).

    Raises:
        ValueError: fewer than 2 rows in either set, or different feature sizes.
    """
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"KID needs two (n, d) feature arrays, got {real.shape}, {fake.shape}")
    m, n = len(real), len(fake)
    if m < 2 or n < 2:
        raise ValueError("KID needs at least 2 real and 2 generated images")
    k_rr = polynomial_kernel(real, real)
    k_ff = polynomial_kernel(fake, fake)
    k_rf = polynomial_kernel(real, fake)
    term_rr = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    term_ff = (k_ff.sum() - np.trace(k_ff)) / (n * (n - 1))
    return float(term_rr + term_ff - 2.0 * k_rf.mean())


class FeatureExtractor:
    """Maps images in [0, 1] (N, H, W, 3 or 1) to features (N, d) with a float32 Keras model.

    Grey images are repeated to three channels, as the extractors expect.
    """

    def __init__(self, kind: str, model, input_size: tuple[int, int], preprocess):
        self.kind = kind
        self.model = model
        self.input_size = input_size
        self._preprocess = preprocess
        self._fn = None

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        # why: TensorFlow takes seconds to import; --help and --dry-run never need it
        import tensorflow as tf
        if self._fn is None:
            def features(x):
                x = tf.image.resize(tf.cast(x, "float32"), self.input_size, antialias=True)
                return tf.cast(self.model(self._preprocess(x), training=False), "float32")
            self._fn = tf.function(features, reduce_retracing=True)
        images = np.asarray(images, np.float32)
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        out = [self._fn(images[i:i + batch_size]).numpy()
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, 0)


def _random_extractor() -> FeatureExtractor:
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    from keras import layers
    model = keras.Sequential(name="kid_random_features")
    model.add(keras.Input((64, 64, 3)))
    for i, width in enumerate((32, 64, 128, 256)):
        model.add(layers.Conv2D(width, 3, strides=2, padding="same", activation="relu",
                                kernel_initializer=keras.initializers.HeNormal(seed=1234 + i),
                                dtype="float32"))
    model.add(layers.GlobalAveragePooling2D(dtype="float32"))
    return FeatureExtractor("random", model, (64, 64), lambda x: x * 2.0 - 1.0)


def _inception_extractor() -> FeatureExtractor:
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    home = os.environ.get("KERAS_HOME", str(Path.home() / ".keras"))
    cached = Path(home) / "models" / _INCEPTION_NOTOP
    old_timeout = socket.getdefaulttimeout()
    if not cached.exists():
        socket.setdefaulttimeout(10)  # fail fast when offline instead of hanging
    try:
        with dtype_policy("float32"):  # features in full precision under any policy
            model = keras.applications.InceptionV3(include_top=False, weights="imagenet",
                                                   input_shape=(75, 75, 3), pooling="avg")
    finally:
        socket.setdefaulttimeout(old_timeout)
    # InceptionV3 expects [-1, 1] (its preprocess_input maps 0..255 the same way).
    return FeatureExtractor("inception", model, (75, 75), lambda x: x * 2.0 - 1.0)


def build_feature_extractor(kind: str = "auto") -> FeatureExtractor:
    """Builds the KID feature extractor `kind` (see the module docstring).

    Raises:
        ValueError: unknown kind; RuntimeError: kind="inception" and the weights cannot be had.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kid_features must be one of {FEATURE_KINDS}, got {kind!r}")
    if kind == "random":
        return _random_extractor()
    try:
        return _inception_extractor()
    except Exception as err:  # noqa: BLE001 - any download/load failure means "no weights"
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        if kind == "inception":
            raise RuntimeError(f"InceptionV3 ImageNet weights unavailable ({reason}); use "
                               f"--kid_features random offline") from None
        print(f"KID: InceptionV3 ImageNet weights unavailable ({reason}); using the fixed-seed "
              f"random conv features instead (KID then compares runs with each other only)")
        return _random_extractor()


class KernelInceptionDistance:
    """KID against a fixed set of real images, whose features are computed once.

    Args:
        extractor: from `build_feature_extractor`.
        real_images: (N, H, W, 3) floats in [0, 1], N >= 2.
    """

    def __init__(self, extractor: FeatureExtractor, real_images: np.ndarray):
        self.extractor = extractor
        self.real_features = extractor(real_images)

    def __call__(self, generated_images: np.ndarray) -> float:
        return kid_from_features(self.real_features, self.extractor(generated_images))
