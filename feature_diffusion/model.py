"""`FeatureDenoiser`: the MLP that denoises feature vectors (layer 2, no files).

It sees a noisy standardised feature vector, the noise variance of its level and a label,
and predicts the noise (or v). Structure, as the image U-Net's blocks (DESIGN.md: a
condition added once at the input is easy to ignore):

    x (B, D) -> Dense(hidden) -> blocks x [LayerNorm -> scale/shift from (noise level +
    label) -> SiLU -> Dense -> SiLU -> Dropout -> Dense, added to the input] -> LayerNorm
    -> SiLU -> Dense(D, zero-initialised)

The noise variance goes through the project's sinusoidal embedding (continuous time, so the
number of sampling steps is chosen at generation); the label through an embedding table
with one extra row, `num_classes`, the "null" label of classifier-free guidance.

Every layer computes in float32 whatever the global dtype policy: the caller (a classifier
trained under mixed precision) must not change what this small network computes.

Example:
    >>> net = FeatureDenoiser(feature_dim=64, num_classes=3, hidden_dim=128, blocks=2)
    >>> out = net([np.zeros((4, 64), "float32"), np.full((4, 1), 0.5, "float32"),
    ...            np.array([0, 1, 2, 3], "int32")])      # 3 = no label
    >>> out.shape
    TensorShape([4, 64])
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from u_net_backbone import SinusoidalEmbedding

_F32 = "float32"


class _Initializers:
    """Seeded initializers, one seed each: a fresh network depends on its seed only, not
    on Keras' global random state (so a restarted training starts where the first did)."""

    def __init__(self, seed: int):
        self._seed = int(seed) * 1000

    def next(self) -> int:
        self._seed += 1
        return self._seed

    def glorot(self):
        return keras.initializers.GlorotUniform(seed=self.next())


@keras.saving.register_keras_serializable(package="feature_diffusion")
class ModulatedMLPBlock(layers.Layer):
    """One residual MLP block whose normalised input is scaled and shifted by the condition.

    h + Dense(Dropout(SiLU(Dense(SiLU(LN(h) * (1 + scale) + shift))))), with (scale, shift)
    = Dense(cond). The last Dense starts at zero, so every block starts as the identity
    (the network starts as its input projection, a stable start for deep stacks).
    """

    def __init__(self, hidden_dim: int, dropout: float = 0.0, seed: int = 0, **kwargs):
        kwargs.setdefault("dtype", _F32)
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.seed = int(seed)
        self.norm = layers.LayerNormalization(center=False, scale=False, epsilon=1e-5,
                                              dtype=_F32, name="norm")
        self.modulation = layers.Dense(2 * self.hidden_dim, dtype=_F32, name="modulation",
                                       kernel_initializer="zeros")
        self.dense1 = layers.Dense(self.hidden_dim, activation="silu", dtype=_F32,
                                   name="dense1", kernel_initializer=_Initializers(seed).glorot())
        self.drop = layers.Dropout(self.dropout, dtype=_F32, name="dropout", seed=seed)
        self.dense2 = layers.Dense(self.hidden_dim, dtype=_F32, name="dense2",
                                   kernel_initializer="zeros")

    def build(self, input_shape):
        h_shape, cond_shape = input_shape
        self.norm.build(h_shape)
        self.modulation.build(cond_shape)
        self.dense1.build(h_shape)
        self.dense2.build((*h_shape[:-1], self.hidden_dim))

    def call(self, inputs, training=None):
        h, cond = inputs
        scale, shift = ops.split(self.modulation(cond), 2, axis=-1)
        r = ops.silu(self.norm(h) * (1.0 + scale) + shift)
        r = self.drop(self.dense1(r), training=training)
        return h + self.dense2(r)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim, "dropout": self.dropout,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package="feature_diffusion")
class FeatureDenoiser(keras.Model):
    """The denoiser of feature vectors (see the module docstring).

    Args:
        feature_dim: D, the size of a feature vector.
        num_classes: labels 0..num_classes-1; label `num_classes` means "no label".
        hidden_dim: width of the residual blocks.
        blocks: number of residual blocks.
        embedding_dims: size of the noise-level and label embeddings (even).
        dropout: dropout inside every block while training.
        seed: of the initial weights (a fresh model is the same for the same seed).

    Inputs: [noisy (B, D) float, noise variance (B, 1) float, labels (B,) int].
    Output: (B, D) float32, the predicted noise or v.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden_dim: int = 512,
                 blocks: int = 4, embedding_dims: int = 128, dropout: float = 0.0,
                 seed: int = 0, **kwargs):
        kwargs.setdefault("dtype", _F32)
        super().__init__(**kwargs)
        if feature_dim < 1 or num_classes < 1 or hidden_dim < 1 or blocks < 1:
            raise ValueError(f"feature_dim, num_classes, hidden_dim and blocks must be >= 1, "
                             f"got {feature_dim}, {num_classes}, {hidden_dim}, {blocks}")
        if embedding_dims < 2 or embedding_dims % 2:
            raise ValueError(f"embedding_dims must be even and >= 2, got {embedding_dims}")
        self.feature_dim = int(feature_dim)
        self.num_classes = int(num_classes)
        self.hidden_dim = int(hidden_dim)
        self.blocks = int(blocks)
        self.embedding_dims = int(embedding_dims)
        self.dropout = float(dropout)
        self.seed = int(seed)
        init = _Initializers(self.seed)
        e = self.embedding_dims
        self.noise_embedding = SinusoidalEmbedding(e, name="noise_embedding")
        self.noise_mlp = [layers.Dense(4 * e, activation="silu", dtype=_F32, name="noise_mlp1",
                                       kernel_initializer=init.glorot()),
                          layers.Dense(4 * e, dtype=_F32, name="noise_mlp2",
                                       kernel_initializer=init.glorot())]
        self.label_embedding = layers.Embedding(
            self.num_classes + 1, 4 * e, dtype=_F32, name="label_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0,
                                                                   seed=init.next()))
        self.input_projection = layers.Dense(self.hidden_dim, dtype=_F32, name="input",
                                             kernel_initializer=init.glorot())
        self.residual_blocks = [ModulatedMLPBlock(self.hidden_dim, self.dropout,
                                                  seed=init.next(), name=f"block{i}")
                                for i in range(self.blocks)]
        self.out_norm = layers.LayerNormalization(epsilon=1e-5, dtype=_F32, name="out_norm")
        # Zero output: the first predictions are 0 (the mean noise), not random vectors.
        self.output_projection = layers.Dense(self.feature_dim, kernel_initializer="zeros",
                                              dtype=_F32, name="output")
        # Every variable exists from here on: load_weights works before any call.
        self(self.dummy_inputs(1))

    def dummy_inputs(self, batch: int) -> list[np.ndarray]:
        """Inputs of the right shapes and dtypes (zeros, label "none")."""
        return [np.zeros((batch, self.feature_dim), "float32"),
                np.zeros((batch, 1), "float32"),
                np.full((batch,), self.num_classes, "int32")]

    def call(self, inputs, training=None):
        noisy, noise_variance, labels = inputs
        t = self.noise_embedding(ops.cast(noise_variance, _F32))
        for layer in self.noise_mlp:
            t = layer(t)
        # SiLU of the sum: every block gets one conditioning vector, its own projection.
        cond = ops.silu(t + self.label_embedding(ops.cast(labels, "int32")))
        h = self.input_projection(ops.cast(noisy, _F32))
        for block in self.residual_blocks:
            h = block([h, cond], training=training)
        return self.output_projection(ops.silu(self.out_norm(h)))

    def get_config(self):
        return {**super().get_config(), "feature_dim": self.feature_dim,
                "num_classes": self.num_classes, "hidden_dim": self.hidden_dim,
                "blocks": self.blocks, "embedding_dims": self.embedding_dims,
                "dropout": self.dropout, "seed": self.seed}
