"""Non-leaking online augmentation of stage-2 training images (EDM / ADA style).

Each training image is, with probability p per operation, shifted by whole pixels (up to
1/8 of its size, reflected at the border), scaled about its centre, brightened and changed
in contrast. The parameters drawn form a vector the network is conditioned on; sampling
asks for the zero vector ("no augmentation"), so a model trained on 20 photos sees many
more distinct images without learning to paint shifted, zoomed or recoloured ones.

Example:
    >>> image, vector = augment_image(image, p=0.3)   # (H, W, C) in [0, 1], (5,) float32
"""
from __future__ import annotations

# [x shift, y shift (fractions of the size), log2 scale, brightness offset, log2 contrast]
ONLINE_AUGMENT_DIMS = 5
MAX_SHIFT = 0.125
LOG2_SCALE_STD = 0.2
BRIGHTNESS_STD = 0.2
LOG2_CONTRAST_STD = 0.5


def _affine(image, shift_x, shift_y, scale):
    """`image` (H, W, C) scaled by `scale` about its centre, then moved by (shift_x, shift_y)
    pixels; the border is reflected."""
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    cx = (tf.cast(w, tf.float32) - 1.0) / 2.0
    cy = (tf.cast(h, tf.float32) - 1.0) / 2.0
    inv = 1.0 / scale
    # output pixel (x, y) reads input ((x - cx - shift_x) / scale + cx, ...)
    transform = tf.stack([inv, 0.0, cx - (cx + shift_x) * inv,
                          0.0, inv, cy - (cy + shift_y) * inv, 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.stack([h, w]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def augment_image(image, p: float):
    """Draws and applies the online augmentation of one training image (TF ops, for
    `tf.data` maps).

    Args:
        image: float32 (H, W, C) in [0, 1].
        p: probability of each operation (0 returns the image unchanged and zeros).

    Returns:
        (augmented image in [0, 1], float32 vector of ONLINE_AUGMENT_DIMS: what was done).
    """
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    on = lambda: tf.cast(tf.random.uniform(()) < p, tf.float32)  # noqa: E731
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    # whole pixels: a fractional shift would blur every shifted image
    shift_on = on()
    dx = tf.round(tf.random.uniform((), -MAX_SHIFT, MAX_SHIFT) * w) * shift_on
    dy = tf.round(tf.random.uniform((), -MAX_SHIFT, MAX_SHIFT) * h) * shift_on
    log2_scale = tf.random.normal((), 0.0, LOG2_SCALE_STD) * on()
    brightness = tf.random.normal((), 0.0, BRIGHTNESS_STD) * on()
    log2_contrast = tf.random.normal((), 0.0, LOG2_CONTRAST_STD) * on()
    moved = tf.logical_or(tf.not_equal(dx, 0.0),
                          tf.logical_or(tf.not_equal(dy, 0.0), tf.not_equal(log2_scale, 0.0)))
    image = tf.cond(moved, lambda: _affine(image, dx, dy, tf.pow(2.0, log2_scale)),
                    lambda: image)
    mean = tf.reduce_mean(image)
    image = tf.clip_by_value((image - mean) * tf.pow(2.0, log2_contrast) + mean + brightness,
                             0.0, 1.0)
    vector = tf.stack([dx / w, dy / h, log2_scale, brightness, log2_contrast])
    return image, vector
