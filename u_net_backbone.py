"""The U-Net that predicts the noise (or v) of a noisy image, given the noise level and conditions.

Architecture: `len(widths)` levels of residual blocks with average-pool down and bilinear
up-sampling and skip connections. The block (`residual_block`): "prenorm" (default) is one
GroupNorm with the conditioning folded into it (`ModulatedGroupNorm`), then conv-swish-conv,
added to a linear residual stream (the keras.io example's layout, its BatchNorm replaced);
"postnorm" is the original conv-GroupNorm-FiLM-swish-conv-GroupNorm, add, swish, 1.3-1.4x
slower per training step on CPU (benchmarks/bench_diffusion.py) and kept for old folders.
Optional self-attention in the bottleneck and, only at feature maps of at most 32x32
positions, in the down/up blocks; a zero-initialised float32 1x1 output convolution (the
untrained network predicts zero).

Conditioning (`block_conditioning=True`, the default, as ADM and EDM do): a sinusoidal
embedding of the noise variance goes through a small MLP; the label, site and augmentation
embeddings are added to it; every residual block scales and shifts its (first) normalisation
with a learned projection of that vector. A condition that reaches every block cannot be
ignored; one concatenated once at the input (`block_conditioning=False`, the keras.io DDIM
example and models trained before this option) often is.

Conditions (each optional, each with a "null" entry so classifier-free guidance works):
    labels (num_classes > 0): int, `num_classes` = no label; `label_noise` adds Gaussian
        noise to the label embedding at sampling time for diversity (as DIAGen does).
    sites (num_sites > 0): int, `num_sites` = no site.
    augment (augment_dims > 0): a vector that says which augmentation (flip, rotation, ...)
        the training image went through (EDM's augmentation conditioning); zeros = none, what
        sampling asks for, so augmentations do not leak into the samples.

Sizes: height and width must each divide by 2**(len(widths)-1) (e.g. 200x600 works with four
widths: 200/8 and 600/8 are whole); the error names the nearest sizes that work.

Example:
    >>> net = build_unet((64, 64), widths=[32, 64, 96, 128], block_depth=2)
    >>> pred_noise = net([noisy_images, noise_variances])
    >>> net = build_unet((32, 32), [32, 64, 96], 2, channels=1, num_classes=6, num_sites=4)
    >>> pred = net([noisy, variances, labels, label_noise, sites])
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import keras
from keras import layers, ops

from diffusion_maths.unet_rules import (MAX_ATTENTION_POSITIONS, UNetConfigError,
                                  attention_levels, validate_unet_args)

__all__ = ["build_unet", "SinusoidalEmbedding", "SpatialSelfAttention", "FeatureModulation",
           "ModulatedGroupNorm", "RESIDUAL_BLOCKS",
           "UNetConfigError", "validate_unet_args", "attention_levels",
           "MAX_ATTENTION_POSITIONS", "network_input_names"]

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


@keras.saving.register_keras_serializable(package="diffusion")
class FeatureModulation(layers.Layer):
    """Scales and shifts features by a conditioning vector: x * (1 + scale) + shift.

    The input `params` (B, 1, 1, 2C) holds scale then shift; zeros leave x unchanged.

    Example:
        >>> FeatureModulation()([ops.ones((2, 4, 4, 8)), ops.zeros((2, 1, 1, 16))]).shape
        (2, 4, 4, 8)
    """

    def call(self, inputs):
        x, params = inputs
        scale, shift = ops.split(ops.cast(params, x.dtype), 2, axis=-1)
        return x * (1.0 + scale) + shift

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="diffusion")
class ModulatedGroupNorm(layers.Layer):
    """GroupNorm and the conditioning's scale and shift folded into one multiply-add.

    Statistics come from per-channel sums in float32 (E[x], E[x^2]), grouped afterwards, so
    the full-size tensor is never reshaped into groups; the learned gamma/beta and the
    optional FiLM parameters (B, 1, 1, 2C: scale then shift, as `FeatureModulation`) are
    folded into one per-(image, channel) `a, b`, and the output is `x * a + b` in the compute
    dtype. Same maths as `GroupNormalization` followed by `FeatureModulation`, with three
    full-size passes (and their gradients) instead of about ten.

    Example:
        >>> ModulatedGroupNorm(groups=8)([ops.ones((2, 4, 4, 16)), ops.zeros((2, 1, 1, 32))]).shape
        (2, 4, 4, 16)
    """

    def __init__(self, groups: int = 8, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        channels = shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        x, params = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        channels = x.shape[-1]
        x32 = ops.cast(x, "float32")
        mean_c = ops.mean(x32, axis=(1, 2))                        # (B, C)
        sq_c = ops.mean(ops.square(x32), axis=(1, 2))
        per_group = (-1, self.groups, channels // self.groups)
        mean = ops.mean(ops.reshape(mean_c, per_group), axis=-1, keepdims=True)
        sq = ops.mean(ops.reshape(sq_c, per_group), axis=-1, keepdims=True)
        inv = ops.rsqrt(ops.maximum(sq - ops.square(mean), 0.0) + self.epsilon)
        # (B, G, 1) -> (B, C): each group's statistics for each of its channels.
        per_channel = lambda v: ops.reshape(  # noqa: E731
            ops.repeat(v, channels // self.groups, axis=-1), (-1, channels))
        inv, mean = per_channel(inv), per_channel(mean)
        a = inv * ops.cast(self.gamma, "float32")
        b = ops.cast(self.beta, "float32") - mean * a
        if params is not None:
            scale, shift = ops.split(ops.cast(ops.reshape(params, (-1, 2 * channels)),
                                              "float32"), 2, axis=-1)
            a, b = a * (1.0 + scale), b * (1.0 + scale) + shift
        a = ops.cast(ops.reshape(a, (-1, 1, 1, channels)), x.dtype)
        b = ops.cast(ops.reshape(b, (-1, 1, 1, channels)), x.dtype)
        return x * a + b

    def compute_output_shape(self, input_shape):
        return input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


RESIDUAL_BLOCKS = ("prenorm", "lean", "postnorm")


def _prenorm_block(x, width: int, groups: int, name: str, emb=None, dropout: float = 0.0):
    # One normalisation per block, before the convolutions (as the keras.io example's
    # BatchNorm), with the conditioning folded into it; the residual stream stays linear.
    residual = x if x.shape[-1] == width else layers.Conv2D(width, 1, name=f"{name}_skip")(x)
    return layers.Add(name=f"{name}_add")(
        [_norm_conv_conv(x, width, groups, name, emb, 3, dropout), residual])


def _lean_block(x, width: int, groups: int, name: str, emb=None, dropout: float = 0.0):
    # The prenorm block at about half the multiply-adds: a block that changes the width
    # (the up path's concatenated skips, a level's first block) projects first, so its 3x3
    # convolution runs at `width`, and the second convolution is 1x1.
    if x.shape[-1] != width:
        x = layers.Conv2D(width, 1, name=f"{name}_skip")(x)
    return layers.Add(name=f"{name}_add")(
        [_norm_conv_conv(x, width, groups, name, emb, 1, dropout), x])


def _dropout(x, rate: float, name: str):
    # Between a block's two convolutions, as ADM; no layer at 0, so the graph is unchanged.
    return layers.Dropout(rate, name=f"{name}_dropout")(x) if rate > 0 else x


def _norm_conv_conv(x, width: int, groups: int, name: str, emb, second_kernel: int,
                    dropout: float = 0.0):
    """Modulated GroupNorm, 3x3 convolution + swish, dropout, then a `second_kernel`
    convolution."""
    inputs = x
    if emb is not None:
        params = layers.Dense(2 * x.shape[-1], name=f"{name}_film")(emb)
        inputs = [x, layers.Reshape((1, 1, 2 * x.shape[-1]), name=f"{name}_film_map")(params)]
    x = ModulatedGroupNorm(groups, name=f"{name}_norm")(inputs)
    x = layers.Conv2D(width, 3, padding="same", activation="swish", name=f"{name}_conv1")(x)
    x = _dropout(x, dropout, name)
    return layers.Conv2D(width, second_kernel, padding="same", name=f"{name}_conv2")(x)


def _residual_block(x, width: int, groups: int, name: str, emb=None, dropout: float = 0.0):
    # The original block (models trained before `residual_block` existed): two GroupNorms.
    residual = x if x.shape[-1] == width else layers.Conv2D(width, 1, name=f"{name}_skip")(x)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv1")(x)
    x = layers.GroupNormalization(groups=groups, name=f"{name}_norm1")(x)
    if emb is not None:
        # Default (random) init, as ADM: a zero init would hide the noise level from every
        # block at the start, and short runs never learn to use the conditions.
        params = layers.Dense(2 * width, name=f"{name}_film")(emb)
        params = layers.Reshape((1, 1, 2 * width), name=f"{name}_film_map")(params)
        x = FeatureModulation(name=f"{name}_modulate")([x, params])
    x = layers.Activation("swish", name=f"{name}_act1")(x)
    x = _dropout(x, dropout, name)
    x = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv2")(x)
    x = layers.GroupNormalization(groups=groups, name=f"{name}_norm2")(x)
    x = layers.Add(name=f"{name}_add")([x, residual])
    return layers.Activation("swish", name=f"{name}_out")(x)


def network_input_names(num_classes: int = 0, num_sites: int = 0, augment_dims: int = 0
                        ) -> list[str]:
    """The names (and order) of the network's inputs for these conditions."""
    names = ["noisy_images", "noise_variances"]
    if num_classes > 0:
        names += ["labels", "label_noise"]
    if num_sites > 0:
        names.append("sites")
    if augment_dims > 0:
        names.append("augment")
    return names


def _null_embedding(count: int, dims: int, name: str):
    # Unit-scale init, like the sinusoids it is added to (the default 0.05 is drowned out).
    return layers.Embedding(count + 1, dims, name=name,
                            embeddings_initializer=keras.initializers.RandomNormal(
                                stddev=1.0, seed=0))


def build_unet(image_size: Sequence[int], widths: Sequence[int], block_depth: int,
               embedding_dims: int = 32, attention_in_bottleneck: bool = False,
               attention_in_up_down_sample: bool = False, num_classes: int = 0,
               groups: int = 8, channels: int = 3, num_sites: int = 0, augment_dims: int = 0,
               block_conditioning: bool = True, residual_block: str = "prenorm",
               dropout: float = 0.0, name: str = "residual_unet") -> keras.Model:
    """Builds the U-Net as a functional Keras model.

    Args:
        image_size: (height, width); each divisible by 2**(len(widths)-1).
        widths: channels per level, e.g. [32, 64, 96, 128]; multiples of `groups`.
        block_depth: residual blocks per level.
        embedding_dims: size of the noise (and label) embedding; even.
        attention_in_bottleneck: self-attention after each bottleneck block.
        attention_in_up_down_sample: self-attention in down/up blocks, only at levels whose
            feature map has at most 32*32 positions (others are left without).
        num_classes: > 0 adds the `labels` (int, `num_classes` = no label) and
            `label_noise` (B, embedding_dims) inputs.
        groups: GroupNorm groups.
        channels: image channels (1 for grey data, 3 for colour).
        num_sites: > 0 adds the `sites` input (int, `num_sites` = no site).
        augment_dims: > 0 adds the `augment` input (B, augment_dims): which augmentation the
            image went through; zeros = none.
        block_conditioning: the noise level and conditions modulate every residual block
            (default); False: the legacy network that concatenates them once at the input
            (labels only; kept so model folders trained before can load).
        residual_block: "prenorm" (default): one GroupNorm, with the conditioning folded
            in, before two 3x3 convolutions; "lean": the same with the width change first
            and a 1x1 second convolution (about half the multiply-adds); "postnorm": the
            original block (two GroupNorms, conditioning after the first), kept so older
            model folders load.
        dropout: rate of dropout between each residual block's two convolutions, while
            training only (0: none). Against memorising a few hundred images.

    Returns:
        Model with inputs in the order of `network_input_names` and the prediction (float32,
        `channels` channels) as output.

    Raises:
        UNetConfigError: settings that cannot build (see `validate_unet_args`).
    """
    validate_unet_args(image_size, widths, block_depth, embedding_dims, groups,
                       attention_in_bottleneck, num_classes)
    if channels not in (1, 3):
        raise UNetConfigError(f"channels must be 1 (grey) or 3 (colour), got {channels}")
    if residual_block not in RESIDUAL_BLOCKS:
        raise UNetConfigError(f"residual_block must be one of {RESIDUAL_BLOCKS}, "
                              f"got {residual_block!r}")
    if not 0.0 <= dropout < 1.0:
        raise UNetConfigError(f"dropout must be in [0, 1), got {dropout}")
    block = functools.partial({"prenorm": _prenorm_block, "lean": _lean_block,
                               "postnorm": _residual_block}[residual_block], dropout=dropout)
    if not block_conditioning and (num_sites or augment_dims):
        raise UNetConfigError("site and augmentation conditions need block_conditioning")
    h, w = int(image_size[0]), int(image_size[1])
    noisy_images = keras.Input(shape=(h, w, channels), name="noisy_images")
    noise_variances = keras.Input(shape=(1, 1, 1), name="noise_variances")
    inputs = [noisy_images, noise_variances]
    e = SinusoidalEmbedding(embedding_dims, name="noise_embedding")(noise_variances)
    label_vec = None
    if num_classes > 0:
        labels = keras.Input(shape=(), dtype="int32", name="labels")
        label_noise = keras.Input(shape=(embedding_dims,), name="label_noise")
        inputs += [labels, label_noise]
        c = _null_embedding(num_classes, embedding_dims, "label_embedding")(labels)
        label_vec = layers.Add(name="noisy_label_embedding")([c, label_noise])

    if block_conditioning:
        dims = 4 * embedding_dims
        t = layers.Reshape((embedding_dims,), name="noise_embedding_flat")(e)
        t = layers.Dense(dims, activation="swish", name="noise_mlp1")(t)
        parts = [layers.Dense(dims, name="noise_mlp2")(t)]
        if label_vec is not None:
            parts.append(layers.Dense(dims, name="label_projection")(label_vec))
        if num_sites > 0:
            sites = keras.Input(shape=(), dtype="int32", name="sites")
            inputs.append(sites)
            # The same path as the label's, so neither starts out louder: with a direct
            # 4E-wide embedding the site (a camera's tint, learnt first) drowned the label.
            site_vec = _null_embedding(num_sites, embedding_dims, "site_embedding")(sites)
            parts.append(layers.Dense(dims, name="site_projection")(site_vec))
        if augment_dims > 0:
            augment = keras.Input(shape=(augment_dims,), name="augment")
            inputs.append(augment)
            parts.append(layers.Dense(dims, use_bias=False, name="augment_projection")(augment))
        emb = parts[0] if len(parts) == 1 else layers.Add(name="conditioning")(parts)
        emb = layers.Activation("swish", name="conditioning_act")(emb)
        x = layers.Conv2D(widths[0], 3, padding="same", name="stem")(noisy_images)
    else:
        emb = None
        if label_vec is not None:
            c = layers.Reshape((1, 1, embedding_dims), name="label_embedding_map")(label_vec)
            e = layers.Add(name="conditioning")([e, c])
        e = layers.UpSampling2D(size=(h, w), interpolation="nearest", name="embedding_map")(e)
        x = layers.Conv2D(widths[0], 1, name="stem")(noisy_images)
        x = layers.Concatenate(name="stem_concat")([x, e])

    att_levels = set(attention_levels((h, w), widths)) if attention_in_up_down_sample else set()
    skips = []
    for level, width in enumerate(widths[:-1]):
        for i in range(block_depth):
            x = block(x, width, groups, f"down{level}_{i}", emb)
            if level in att_levels:
                x = SpatialSelfAttention(max(1, width // 32), groups, name=f"down{level}_{i}_att")(x)
            skips.append(x)
        x = layers.AveragePooling2D(2, name=f"down{level}_pool")(x)
    for i in range(block_depth):
        x = block(x, widths[-1], groups, f"mid_{i}", emb)
        if attention_in_bottleneck:
            x = SpatialSelfAttention(max(1, widths[-1] // 32), groups, name=f"mid_{i}_att")(x)
    for level in reversed(range(len(widths) - 1)):
        width = widths[level]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}_upsample")(x)
        for i in range(block_depth):
            x = layers.Concatenate(name=f"up{level}_{i}_concat")([x, skips.pop()])
            x = block(x, width, groups, f"up{level}_{i}", emb)
            if level in att_levels:
                x = SpatialSelfAttention(max(1, width // 32), groups, name=f"up{level}_{i}_att")(x)
    # float32 and zero-initialised: the loss sees full-precision outputs, and the untrained
    # network predicts zero, a stable start.
    out = layers.Conv2D(channels, 1, kernel_initializer="zeros", dtype="float32",
                        name="pred_noise")(x)
    return keras.Model(inputs, out, name=name)
