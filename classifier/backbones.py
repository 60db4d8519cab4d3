"""Classifier networks: EfficientNetB0, MobileNetV3Small, or a small CNN; logits out.

Every network takes RGB pixels in [0, 255] and returns float32 logits (the loss uses
`from_logits=True`; temperature calibration needs logits). The Keras application backbones
carry the input preprocessing their ImageNet weights were trained with; the small CNN
normalises with the configured `mean`/`std` (fractions of 255, the original pipeline's convention).

ImageNet weights are tried when asked for; when they cannot be had (offline), one line says
so and the backbone is built with `weights=None`.

Example:
    >>> model, loaded = build_classifier("small_cnn", num_classes=3, image_size=32)
    >>> model.output_shape
    (None, 3)
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Sequence

BACKBONES = ("efficientnetb0", "mobilenetv3small", "small_cnn")
# Where keras.utils.get_file caches the ImageNet weights, by backbone.
_WEIGHT_FILES = {"efficientnetb0": "efficientnetb0_notop.h5",
                 "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"}
_WEIGHTS_HOST = ("storage.googleapis.com", 443)


def _weights_reachable(backbone: str, timeout: float = 3.0) -> tuple[bool, str]:
    """True when the ImageNet weights are cached or their host answers within `timeout` s
    (keras' download has no timeout and can hang for minutes offline)."""
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if (cache / _WEIGHT_FILES[backbone]).exists():
        return True, "cached"
    try:
        with socket.create_connection(_WEIGHTS_HOST, timeout=timeout):
            return True, "online"
    except OSError as err:
        return False, f"{_WEIGHTS_HOST[0]} unreachable ({err.__class__.__name__})"


def _application(backbone: str, image_size: int, weights: str | None):
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    shape = (image_size, image_size, 3)
    if backbone == "efficientnetb0":
        return keras.applications.EfficientNetB0(include_top=False, weights=weights,
                                                 input_shape=shape, pooling="avg")
    return keras.applications.MobileNetV3Small(include_top=False, weights=weights,
                                               input_shape=shape, pooling="avg",
                                               include_preprocessing=True)


def _small_cnn(x, widths: Sequence[int] = (16, 32, 64)):
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    from keras import layers

    # why: a Keras subclass; importing it loads TensorFlow
    from classifier import fused_batch_norm
    for i, w in enumerate(widths):
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        # Keras' BatchNormalization maths in one fused kernel: about 1.6x less CPU per step
        x = fused_batch_norm.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        if i < len(widths) - 1:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
    return keras.layers.GlobalAveragePooling2D(name="gap")(x)


def _with_fused_batch_norm(model):
    """A copy of `model` (same weights) whose BatchNormalization layers train with the fused
    kernel: about 1.2x less CPU per MobileNetV3Small step (benchmarks/bench_batch_norm.py)."""
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras

    # why: a Keras subclass; importing it loads TensorFlow
    from classifier import fused_batch_norm

    def clone(layer):
        cls = (fused_batch_norm.BatchNormalization
               if isinstance(layer, keras.layers.BatchNormalization) else layer.__class__)
        return cls.from_config(layer.get_config())

    fused = keras.models.clone_model(model, clone_function=clone, recursive=True)
    fused.set_weights(model.get_weights())
    return fused


def build_classifier(backbone: str, num_classes: int, image_size: int,
                     weights: str | None = None, mean: Sequence[float] = (0.485, 0.456, 0.406),
                     std: Sequence[float] = (0.229, 0.224, 0.225), dropout: float = 0.2,
                     verbose: bool = True):
    """Builds a classifier returning float32 logits for `num_classes` classes.

    Args:
        backbone: one of BACKBONES.
        num_classes: from the data (>= 2).
        image_size: square input side in pixels (>= 32 for the application backbones).
        weights: "imagenet" or None (ignored by small_cnn).
        mean, std: per-channel normalisation of the small CNN, as fractions of 255.
        dropout: before the final Dense layer.

    Returns:
        (model, weights_used) where weights_used is "imagenet" or None.

    Example:
        >>> model, _ = build_classifier("mobilenetv3small", 5, 96, weights=None)
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    from keras import layers

    num_classes, image_size = int(num_classes), int(image_size)  # numpy ints upset Keras
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    used = None
    if backbone == "small_cnn":
        x = layers.Rescaling(1.0 / 255.0, name="to_unit")(inputs)
        x = layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                                 name="normalise")(x)
        x = _small_cnn(x)
    else:
        if image_size < 32:
            raise ValueError(f"{backbone} needs input_shape >= 32, got {image_size}")
        base = None
        if weights == "imagenet":
            ok, why = _weights_reachable(backbone)
            if ok:
                try:
                    base = _application(backbone, image_size, "imagenet")
                    used = "imagenet"
                except Exception as err:  # download or file errors of any kind
                    why = f"{err.__class__.__name__}: {str(err).splitlines()[0][:120]}"
            if base is None and verbose:
                print(f"note: ImageNet weights for {backbone} could not be loaded ({why}); "
                      f"training from scratch (weights=None)")
        if base is None:
            base = _application(backbone, image_size, None)
            # Keras builds MobileNetV3 with BatchNorm momentum 0.999: trained from scratch
            # for a few hundred steps its moving statistics stay near their initial values
            # and inference collapses to one class. Faster averages fix that.
            for layer in base.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.momentum = 0.9
        x = _with_fused_batch_norm(base)(inputs)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    # float32 logits even under a mixed policy: softmax/loss/calibration need the range.
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"classifier_{backbone}"), used
