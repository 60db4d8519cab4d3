"""A training whose loss turns NaN or inf stops at once, with a one-line reason.

Every later step of such a run trains on NaN weights, and a checkpoint of that epoch would
keep them as "best" or "last". `stop_on_non_finite_loss()` is the Keras callback that raises
`TrainingDiverged` at the first non-finite training loss, before any other callback sees the
epoch's end; the caller catches it, says which weights were kept and marks the run failed.
Keras' own TerminateOnNaN watches only `loss` and lets the epoch end (and its checkpoints)
run on NaN weights.

Example:
    >>> model.fit(data, callbacks=[stop_on_non_finite_loss(), *other_callbacks])
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping


class TrainingDiverged(ArithmeticError):
    """A training loss became NaN or inf; the message is one line naming it and when."""


def non_finite_losses(logs: Mapping | None, keys: Iterable[str] | None = None
                      ) -> dict[str, float]:
    """The training losses in `logs` that are NaN or inf.

    Args:
        logs: Keras batch or epoch logs (plain floats, as callbacks receive them).
        keys: the entries to check; default: every name ending in 'loss' that is not a
            validation entry (val_*: a missing validation value is not a diverged run).

    Example:
        >>> non_finite_losses({"n_loss": float("nan"), "i_loss": 0.3, "val_n_loss": 1.0})
        {'n_loss': nan}
    """
    logs = logs or {}
    names = list(keys) if keys is not None else [
        k for k in logs if k.endswith("loss") and not k.startswith("val_")]
    out = {}
    for name in names:
        try:
            value = float(logs[name])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(value):
            out[name] = value
    return out


def divergence_message(bad: Mapping[str, float], epoch: int, step: int | None = None) -> str:
    """One line: which loss turned non-finite, and where (1-based epoch and step).

    Example:
        >>> divergence_message({"n_loss": float("nan")}, 3, 7)
        'training loss n_loss became nan in epoch 3 (step 7)'
    """
    values = "/".join(sorted({str(v) for v in bad.values()}))
    what = f"{', '.join(bad)} became {values}"
    where = f"epoch {epoch}" + (f" (step {step})" if step is not None else "")
    return f"training loss {what} in {where}"


def stop_on_non_finite_loss(keys: Iterable[str] | None = None):
    """The Keras callback that raises `TrainingDiverged` at the first NaN/inf training loss.

    Put it first in `callbacks`: Keras calls them in order, so the checkpoints of the epoch
    never run. It checks after every step and again at the epoch's end.

    Args:
        keys: the log entries to watch (default: every non-validation `*loss`).

    Example:
        >>> try:
        ...     model.fit(data, epochs=10, callbacks=[stop_on_non_finite_loss(), checkpoint])
        ... except TrainingDiverged as err:
        ...     print(f"failed: {err}")
    """
    # why: Keras loads TensorFlow; the exception and the check need no TensorFlow
    import keras

    watched = list(keys) if keys is not None else None

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        # Only reads logs and raises: Keras may call it from its dispatch thread, and then
        # raises its error in the training loop at the next step or the epoch's end.
        async_safe = True

        def __init__(self):
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            bad = non_finite_losses(logs, watched)
            if bad:
                raise TrainingDiverged(divergence_message(bad, self.epoch + 1, batch + 1))

        def on_epoch_end(self, epoch, logs=None):
            bad = non_finite_losses(logs, watched)
            if bad:
                raise TrainingDiverged(divergence_message(bad, epoch + 1))

    return StopOnNonFiniteLoss()
