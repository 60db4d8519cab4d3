"""The U-Net that predicts the noise of a noisy image, conditioned on the noise level.

Architecture (keras.io DDIM example, as adapted by CT DEEP Rivers): a sinusoidal embedding
of the noise variance is broadcast over the image and concatenated to the first features;
`len(widths)` levels of residual blocks (GroupNorm, swish) with average-pool down and
bilinear up-sampling and skip connections; optional self-attention in the bottleneck and,
only at feature maps of at most 32x32 positions, in the down/up blocks; a zero-initialised
float32 1x1 output convolution (the untrained network predicts zero noise).

Optional class conditioning (`num_classes > 0`): a learned label embedding (plus an extra
"no label" entry for classifier-free guidance) is added to the noise embedding; a second
input adds Gaussian noise to that embedding at sampling time for diversity (as DIAGen does
with its token embeddings). Zeros during training.

Sizes: height and width must each divide by 2**(len(widths)-1) (e.g. 200x600 works with four
widths: 200/8 and 600/8 are whole); the error names the nearest sizes that work.

Example:
    >>> net = build_unet((64, 64), widths=[32, 64, 96, 128], block_depth=2)
    >>> pred_noise = net([noisy_images, noise_variances])
"""
from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import layers, ops

from diffusion.unet_rules import (MAX_ATTENTION_POSITIONS, UNetConfigError,
                                  attention_levels, validate_unet_args)

__all__ = ["build_unet", "SinusoidalEmbedding", "SpatialSelfAttention", "UNetConfigError",
           "validate_unet_args", "attention_levels", "MAX_ATTENTION_POSITIONS"]

@keras.saving.register_keras_serializable(package="diffusion")
class SinusoidalEmbedding(layers.Layer):
    """Maps a noise variance (B, 1, 1, 1) to (B, 1, 1, dims) sines and cosines.

    Frequencies are log-spaced from `min_frequency` to `max_frequency`; computed in float32
    (bf16 cannot resolve the high frequencies) whatever the global policy.

    Example:
        >>> SinusoidalEmbedding(32)(ops.ones((2, 1, 1, 1))).shape
        (2, 1, 1, 32)
    """

    def __init__(self, embedding_dims: int, min_frequency: float = 1.0,
                 max_frequency: float = 1000.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.embedding_dims = int(embedding_dims)
        self.min_frequency = float(min_frequency)
        self.max_frequency = float(max_frequency)

    def call(self, x):
        freqs = ops.exp(ops.linspace(math.log(self.min_frequency), math.log(self.max_frequency),
                                     self.embedding_dims // 2))
        angular = ops.cast(2.0 * math.pi * freqs, "float32")
        x = ops.cast(x, "float32")
        return ops.concatenate([ops.sin(angular * x), ops.cos(angular * x)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.embedding_dims)

    def get_config(self):
        return {**super().get_config(), "embedding_dims": self.embedding_dims,
                "min_frequency": self.min_frequency, "max_frequency": self.max_frequency}


@keras.saving.register_keras_serializable(package="diffusion")
class SpatialSelfAttention(layers.Layer):
    """Residual multi-head self-attention over the positions of a (B, H, W, C) feature map.

    Example:
        >>> SpatialSelfAttention(num_heads=4)(ops.zeros((1, 8, 8, 64))).shape
        (1, 8, 8, 64)
    """

    def __init__(self, num_heads: int = 4, groups: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.groups = int(groups)
        self.norm = layers.GroupNormalization(groups=self.groups, dtype=self.dtype_policy)
        self.attention = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm.build(input_shape)
        self.attention = layers.MultiHeadAttention(
            num_heads=self.num_heads, key_dim=max(1, channels // self.num_heads),
            dtype=self.dtype_policy)
        seq_shape = (input_shape[0], None, channels)
        self.attention.build(seq_shape, seq_shape)

    def call(self, x):
        shape = ops.shape(x)
        seq = ops.reshape(self.norm(x), (shape[0], shape[1] * shape[2], shape[3]))
        out = self.attention(seq, seq)
        return x + ops.reshape(out, shape)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "groups": self.groups}


def _residual_block(x, width: int, groups: int, name: str):
    residual = x if x.shape[-1] == width else layers.Conv2D(width, 1, name=f"{name}_skip")(x)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv1")(x)
    x = layers.GroupNormalization(groups=groups, name=f"{name}_norm1")(x)
    x = layers.Activation("swish", name=f"{name}_act1")(x)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv2")(x)
    x = layers.GroupNormalization(groups=groups, name=f"{name}_norm2")(x)
    x = layers.Add(name=f"{name}_add")([x, residual])
    return layers.Activation("swish", name=f"{name}_out")(x)


def build_unet(image_size: Sequence[int], widths: Sequence[int], block_depth: int,
               embedding_dims: int = 32, attention_in_bottleneck: bool = False,
               attention_in_up_down_sample: bool = False, num_classes: int = 0,
               groups: int = 8, name: str = "residual_unet") -> keras.Model:
    """Builds the noise-predicting U-Net as a functional Keras model.

    Args:
        image_size: (height, width); each divisible by 2**(len(widths)-1).
        widths: channels per level, e.g. [32, 64, 96, 128]; multiples of `groups`.
        block_depth: residual blocks per level.
        embedding_dims: size of the noise (and label) embedding; even.
        attention_in_bottleneck: self-attention after each bottleneck block.
        attention_in_up_down_sample: self-attention in down/up blocks, only at levels whose
            feature map has at most 32*32 positions (others are left without).
        num_classes: > 0 adds the `labels` (int, value `num_classes` = no label) and
            `label_noise` (B, embedding_dims) inputs.
        groups: GroupNorm groups.

    Returns:
        Model with inputs [noisy_images, noise_variances(, labels, label_noise)] and the
        predicted noise (float32) as output.

    Raises:
        UNetConfigError: settings that cannot build (see `validate_unet_args`).
    """
    validate_unet_args(image_size, widths, block_depth, embedding_dims, groups,
                       attention_in_bottleneck, num_classes)
    h, w = int(image_size[0]), int(image_size[1])
    noisy_images = keras.Input(shape=(h, w, 3), name="noisy_images")
    noise_variances = keras.Input(shape=(1, 1, 1), name="noise_variances")
    inputs = [noisy_images, noise_variances]
    e = SinusoidalEmbedding(embedding_dims, name="noise_embedding")(noise_variances)
    if num_classes > 0:
        labels = keras.Input(shape=(), dtype="int32", name="labels")
        label_noise = keras.Input(shape=(embedding_dims,), name="label_noise")
        inputs += [labels, label_noise]
        # Unit-scale init, like the sinusoids it is added to (the default 0.05 is drowned out).
        c = layers.Embedding(num_classes + 1, embedding_dims, name="label_embedding",
                             embeddings_initializer=keras.initializers.RandomNormal(
                                 stddev=1.0, seed=0))(labels)
        c = layers.Add(name="noisy_label_embedding")([c, label_noise])
        c = layers.Reshape((1, 1, embedding_dims), name="label_embedding_map")(c)
        e = layers.Add(name="conditioning")([e, c])
    e = layers.UpSampling2D(size=(h, w), interpolation="nearest", name="embedding_map")(e)

    x = layers.Conv2D(widths[0], 1, name="stem")(noisy_images)
    x = layers.Concatenate(name="stem_concat")([x, e])
    att_levels = set(attention_levels((h, w), widths)) if attention_in_up_down_sample else set()
    skips = []
    for level, width in enumerate(widths[:-1]):
        for i in range(block_depth):
            x = _residual_block(x, width, groups, f"down{level}_{i}")
            if level in att_levels:
                x = SpatialSelfAttention(max(1, width // 32), groups, name=f"down{level}_{i}_att")(x)
            skips.append(x)
        x = layers.AveragePooling2D(2, name=f"down{level}_pool")(x)
    for i in range(block_depth):
        x = _residual_block(x, widths[-1], groups, f"mid_{i}")
        if attention_in_bottleneck:
            x = SpatialSelfAttention(max(1, widths[-1] // 32), groups, name=f"mid_{i}_att")(x)
    for level in reversed(range(len(widths) - 1)):
        width = widths[level]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}_upsample")(x)
        for i in range(block_depth):
            x = layers.Concatenate(name=f"up{level}_{i}_concat")([x, skips.pop()])
            x = _residual_block(x, width, groups, f"up{level}_{i}")
            if level in att_levels:
                x = SpatialSelfAttention(max(1, width // 32), groups, name=f"up{level}_{i}_att")(x)
    # float32 and zero-initialised: the loss sees full-precision outputs, and the untrained
    # network predicts zero noise, a stable start.
    out = layers.Conv2D(3, 1, kernel_initializer="zeros", dtype="float32", name="pred_noise")(x)
    return keras.Model(inputs, out, name=name)
