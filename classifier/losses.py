"""The classifier's training loss: cross-entropy on soft targets, optionally logit-adjusted.

`AdjustedCrossEntropy(offsets)` is softmax cross-entropy of `logits + offsets` against
dense (one-hot or smoothed) targets. With `offsets = tau * log(prior)`
(`classifier.longtail.logit_offsets`) it is the logit-adjusted loss of Menon et al.
(ICLR 2021); the model's own logits are used unchanged at test time. With zero offsets it is
plain cross-entropy.

Example:
    >>> loss = AdjustedCrossEntropy([0.0, -2.3])
    >>> float(loss(np.eye(2, dtype="float32"), np.zeros((2, 2), "float32")))
"""
from __future__ import annotations

from typing import Sequence


def AdjustedCrossEntropy(offsets: Sequence[float] | None = None, name: str = "adjusted_ce"):
    """A Keras loss: categorical cross-entropy of logits + `offsets` (None: no offsets).

    Built lazily so that importing this module does not import Keras.
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras

    class _AdjustedCrossEntropy(keras.losses.Loss):
        def __init__(self, offsets=None, name="adjusted_ce", **kwargs):
            super().__init__(name=name, **kwargs)
            self.offsets = None if offsets is None else [float(v) for v in offsets]

        def call(self, y_true, y_pred):
            logits = keras.ops.cast(y_pred, "float32")
            if self.offsets is not None:
                logits = logits + keras.ops.convert_to_tensor(self.offsets, "float32")
            return keras.losses.categorical_crossentropy(
                keras.ops.cast(y_true, "float32"), logits, from_logits=True)

        def get_config(self):
            return {**super().get_config(), "offsets": self.offsets}

    return _AdjustedCrossEntropy(offsets, name=name)
