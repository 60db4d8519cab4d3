"""Online augmentation of training batches, each image augmented with `augm_probability`.

`augm_type` (the original pipeline's key):
- `base`: none (resize + normalise only, as the original pipeline's `base`).
- `flip`: classic geometry/photometry with Keras layers (flips, small rotation and zoom,
  contrast; magnitudes scaled by `augm_strength`, flip directions `augm_flip`): the
  "classic augmentation" arm of `classifier.compare`.
- `autoaugment` / `randaugment`: Keras `RandAugment` (2 random ops per batch).
- `augmix`: Keras `AugMix`.
- `albumentations`: a named albumentations preset (`reference`: the original pipeline's policy;
  `light`: flips + brightness/contrast), run per image in numpy.

Pixels stay in [0, 255] float32 throughout: augmenting after normalisation gives wrong
colours.

Example:
    >>> aug = make_batch_augmenter("flip", probability=0.5, seed=1)
    >>> out = aug(batch)            # float32 tensor (B, H, W, 3) in [0, 255]
"""
from __future__ import annotations

from typing import Callable

import numpy as np

AUGM_TYPES = ("base", "flip", "autoaugment", "randaugment", "augmix", "albumentations")
ALBUMENTATIONS_PRESETS = ("reference", "light")


def albumentations_preset(name: str, seed: int | None = None):
    """The albumentations Compose called `name` (see ALBUMENTATIONS_PRESETS)."""
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    if name == "reference":
        # The original pipeline's policy: each op has its own probability once an image is chosen.
        ops = [A.HorizontalFlip(p=0.1), A.RandomBrightnessContrast(p=0.5),
               A.Rotate(limit=20, p=0.3), A.GaussianBlur(blur_limit=(3, 7), p=0.3),
               A.HueSaturationValue(hue_shift_limit=30, p=0.2),
               A.Perspective(scale=(0.05, 0.1), keep_size=True, p=0.3)]
    elif name == "light":
        ops = [A.HorizontalFlip(p=0.5), A.RandomBrightnessContrast(p=0.5)]
    else:
        raise ValueError(f"albumentations preset must be one of {ALBUMENTATIONS_PRESETS}, "
                         f"got {name!r}")
    return A.Compose(ops, seed=seed)


FLIP_MODES = ("none", "horizontal", "vertical", "horizontal_and_vertical")


def keras_augmenter(augm_type: str, seed: int | None = None, strength: float = 1.0,
                    flip: str = "horizontal"):
    """A Keras layer (or Sequential) for the Keras-based augm_types; None when it would do
    nothing (`base`, or strength 0 without flips).

    Args:
        strength: scales the magnitudes (1 = the defaults below; 0 = flips only for `flip`).
        flip: flip directions of `flip`; vertical flips turn upright objects upside down.

    Example:
        >>> keras_augmenter("flip", seed=0, strength=0.5, flip="horizontal")
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    from keras import layers
    if augm_type == "base":
        return None
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
    if augm_type == "flip":
        ops = [layers.RandomFlip(flip, seed=seed)] if flip != "none" else []
        if strength > 0:
            ops += [layers.RandomRotation(0.05 * strength, fill_mode="reflect", seed=seed),
                    layers.RandomZoom((-min(0.15 * strength, 0.9), 0.0), fill_mode="reflect",
                                      seed=seed),
                    layers.RandomContrast(min(0.2 * strength, 1.0), value_range=(0, 255),
                                          seed=seed)]
        return keras.Sequential(ops, name="classic_augment") if ops else None
    if strength <= 0:
        return None
    if augm_type in ("autoaugment", "randaugment"):
        return layers.RandAugment(value_range=(0, 255), num_ops=2,
                                  factor=min(0.5 * strength, 1.0), seed=seed)
    if augm_type == "augmix":
        return layers.AugMix(value_range=(0, 255), factor=min(0.3 * strength, 1.0),
                             seed=seed)
    raise ValueError(f"no Keras augmenter for augm_type {augm_type!r}")


def make_batch_augmenter(augm_type: str, probability: float, seed: int = 0,
                         preset: str = "reference", strength: float = 1.0,
                         flip: str = "horizontal") -> Callable | None:
    """A function batch -> batch (float32 [0, 255], (B, H, W, 3)) for use in `tf.data.map`,
    augmenting each image with `probability`; None when nothing is to be done.
    `strength` and `flip` are passed to `keras_augmenter` (albumentations presets have
    their own fixed magnitudes)."""
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    if augm_type not in AUGM_TYPES:
        raise ValueError(f"augm_type must be one of {AUGM_TYPES}, got {augm_type!r}")
    if augm_type == "base" or probability <= 0:
        return None
    if augm_type == "albumentations":
        transform = albumentations_preset(preset, seed)
        rng = np.random.default_rng(seed)

        def numpy_aug(batch: np.ndarray) -> np.ndarray:
            out = batch.copy()
            for i in range(len(batch)):
                if rng.random() < probability:
                    img = np.clip(batch[i], 0, 255).astype(np.uint8)
                    out[i] = transform(image=img)["image"].astype(np.float32)
            return out

        def apply(batch):
            out = tf.numpy_function(numpy_aug, [batch], tf.float32, stateful=True)
            out.set_shape(batch.shape)
            return out
        return apply

    layer = keras_augmenter(augm_type, seed, strength=strength, flip=flip)
    if layer is None:
        return None
    gen = tf.random.Generator.from_seed(seed)

    def apply(batch):
        augmented = tf.clip_by_value(tf.cast(layer(batch, training=True), tf.float32), 0, 255)
        chosen = gen.uniform([tf.shape(batch)[0]]) < probability
        return tf.where(chosen[:, None, None, None], augmented, batch)
    return apply
