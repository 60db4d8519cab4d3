"""Re-training only a classifier's output layer on fixed features (decoupled training).

cRT (Kang et al., ICLR 2020) keeps the encoder a normal training learned and re-trains the
last layer, freshly initialised, in class-balanced batches; LDMLR does the same on real plus
generated features. The encoder is never touched: features are computed once, in inference
mode, and a new Dense layer is trained on them; its best epoch (by the validation metric the
run selects on) is written into the model's `logits` layer.

Example:
    >>> feats = penultimate_features(model, images)
    >>> info = retrain_head(model, cfg, class_names, feats, labels, np.ones(len(labels)),
    ...                     val_feats, val_labels, class_balanced=True)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from classifier import longtail, sampling
from classifier.losses import AdjustedCrossEntropy
from classifier.metrics import classification_metrics, cross_entropy, higher_is_better, \
    monitor_value
from runtime.divergence import stop_on_non_finite_loss

HEAD_LAYER = "logits"


def penultimate_model(model):
    """A Keras model from `model`'s input to the input of its `logits` layer (any other
    model: of its last layer)."""
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    try:
        head = model.get_layer(HEAD_LAYER)
    except ValueError:
        head = model.layers[-1]
    return keras.Model(model.inputs, head.input, name=f"{model.name}_features")


def penultimate_features(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """float32 features (N, D) of uint8 images (N, S, S, 3), in inference mode."""
    features = penultimate_model(model)
    if len(images) == 0:
        return np.zeros((0, features.output_shape[-1]), dtype=np.float32)
    return np.asarray(features.predict(images.astype(np.float32), batch_size=batch_size,
                                       verbose=0), dtype=np.float32)


def _head_logits(kernel: np.ndarray, bias: np.ndarray, features: np.ndarray) -> np.ndarray:
    return features.astype(np.float32) @ kernel + bias


def retrain_head(model, cfg, class_names: Sequence[str], features: np.ndarray,
                 labels: np.ndarray, weights: np.ndarray, val_features: np.ndarray,
                 val_labels: np.ndarray, class_balanced: bool, verbose: int = 0,
                 smoothing: np.ndarray | None = None) -> dict:
    """Trains a fresh output layer on `features` and puts its best epoch into `model`.

    Args:
        model: a classifier whose last layer is the Dense `logits` layer.
        cfg: the run's settings: finetune_head_epochs, batch_size, learning_rate, seed,
            evaluation_type, logit_adjusted and la_tau.
        features, labels, weights: training features (N, D), class indices, loss weights.
        val_features, val_labels: the run's validation set, in the same feature space.
        class_balanced: draw batches class-balanced (cRT) rather than shuffled.
        smoothing: label smoothing per sample (default none: one-hot targets).

    Returns:
        {"history": per-epoch rows, "best_epoch", "best_value", "prior"}.
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras

    labels = np.asarray(labels, dtype=np.int64)
    n_classes = len(class_names)
    keras.utils.set_random_seed(cfg.seed + 7)
    rng = np.random.default_rng(cfg.seed + 7)
    plan = sampling.epoch_plan(labels, cfg.finetune_head_epochs, cfg.batch_size, rng,
                               class_balanced=class_balanced)
    seen = plan.reshape(-1)
    prior = longtail.effective_prior(labels[seen], n_classes, np.asarray(weights)[seen])
    offsets = longtail.logit_offsets(prior, cfg.la_tau) if cfg.logit_adjusted else None

    inputs = keras.Input((features.shape[1],), name="features")
    head = keras.Model(inputs, keras.layers.Dense(n_classes, dtype="float32",
                                                  name=HEAD_LAYER)(inputs))
    head.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                 loss=AdjustedCrossEntropy(offsets), jit_compile=False)
    head.optimizer.build(head.trainable_variables)  # else the first step is traced twice
    targets = longtail.soft_targets(labels, n_classes, np.zeros(len(labels))
                                    if smoothing is None else smoothing)
    x, y, w = features[seen], targets[seen], np.asarray(weights, np.float32)[seen]
    higher = higher_is_better(cfg.evaluation_type)
    best = {"value": -np.inf if higher else np.inf, "epoch": 0, "weights": None}
    history = []
    for epoch in range(cfg.finetune_head_epochs):
        rows = slice(epoch * plan.shape[1], (epoch + 1) * plan.shape[1])
        out = head.fit(x[rows], y[rows], sample_weight=w[rows], batch_size=cfg.batch_size,
                       epochs=1, shuffle=False, verbose=0,
                       callbacks=[stop_on_non_finite_loss()])
        kernel, bias = (np.asarray(v) for v in head.get_layer(HEAD_LAYER).get_weights())
        logits = _head_logits(kernel, bias, val_features)
        m = classification_metrics(val_labels, logits.argmax(1), class_names)
        m["loss"] = cross_entropy(logits, val_labels)
        value = monitor_value(m, cfg.evaluation_type)
        improved = value > best["value"] if higher else value < best["value"]
        if improved or best["weights"] is None:
            best = {"value": value, "epoch": epoch + 1, "weights": (kernel, bias)}
        history.append({"epoch": epoch + 1, "loss": float(out.history["loss"][-1]),
                        "val_loss": m["loss"], "val_accuracy": m["accuracy"],
                        "val_balanced_accuracy": m["balanced_accuracy"],
                        "val_macro_f1": m["macro_f1"], "best": int(improved)})
        if verbose:
            print(f"head epoch {epoch + 1}/{cfg.finetune_head_epochs}: loss "
                  f"{history[-1]['loss']:.4f}, val {cfg.evaluation_type} {value:.4f}")
    model.get_layer(HEAD_LAYER).set_weights(list(best["weights"]))
    return {"history": history, "best_epoch": best["epoch"], "best_value": float(best["value"]),
            "prior": [float(p) for p in prior]}
