"""Model adapters: `predict(batch_of_images) -> outputs`, batched and in memory.

A predictor takes a uint8 RGB batch (N, H, W, 3) and returns one output per image: an
(N, C) array of class probabilities for classifiers (logits are turned into
probabilities), an (N,) array of labels, or a list of anything (boxes, masks) from a
Python function. No image ever goes through a file.

Sources:
- a `.keras` file (loaded without compiling);
- a stage-4 classifier run folder (`config.json` + `best.weights.h5`, rebuilt by
  `classifier.runs.load_run`), or a `.weights.h5` / `.keras` file inside one: class names
  come with it, and a run trained with `grayscale=True` sees its images in grey;
- a `keras.Model` in memory;
- any Python callable on batches.

Example:
    >>> predict = load_predictor("classifier_runs/small_cnn_20250101-120000_ab12")
    >>> probs = predict(images)            # (N, C), rows sum to 1
    >>> predict = load_predictor(lambda batch: batch.mean((1, 2, 3)) > 128, fingerprint="v1")
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from classifier.runs import load_run
from dataset.scan import DatasetError
from model_folder.files import BEST_WEIGHTS


class Predictor:
    """A batched model: call it on a uint8 batch (N, H, W, 3).

    Args:
        fn: the model on one batch (at most `batch_size` images).
        fingerprint: identifies the model's behaviour (weights + settings) for caches.
        input_size: (height, width) the model needs, or None for any size.
        class_names: names of the output classes, when known.
        batch_size: images per call of `fn`.
        name: for messages and reports.
        grayscale: turn every batch grey (3 equal channels, as the classifier's
            `grayscale=True` loader does) before `fn`; part of the fingerprint.

    Example:
        >>> p = Predictor(lambda b: b.mean((1, 2, 3)), fingerprint="mean-v1")
        >>> p(np.zeros((3, 8, 8, 3), np.uint8)).shape
        (3,)
    """

    def __init__(self, fn: Callable, fingerprint: str, input_size: tuple[int, int] | None = None,
                 class_names: Sequence[str] | None = None, batch_size: int = 64,
                 name: str = "model", grayscale: bool = False):
        self.fn = fn
        self.grayscale = bool(grayscale)
        self.fingerprint = f"{fingerprint}:grayscale" if grayscale else fingerprint
        self.input_size = tuple(input_size) if input_size else None
        self.class_names = list(class_names) if class_names else None
        self.batch_size = int(batch_size)
        self.name = name
        self.calls = 0  # images predicted, for benchmarks and tests

    def __call__(self, images: np.ndarray):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected a uint8 batch (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        if self.grayscale:
            images = to_grey(images)
        if self.input_size and images.shape[1:3] != self.input_size:
            images = np.stack([_resize(im, self.input_size) for im in images])
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            parts.append(self.fn(batch))
            self.calls += len(batch)
        if not parts:
            return np.zeros((0,))
        if all(isinstance(p, np.ndarray) for p in parts):
            return np.concatenate(parts)
        return [o for p in parts for o in p]


def to_grey(images: np.ndarray) -> np.ndarray:
    """uint8 RGB images (..., 3) in grey, kept as 3 channels: PIL's convert("L") (ITU-R
    601-2 luma, its fixed-point rounding) then convert("RGB"), as `classifier.data` does."""
    rgb = images.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return np.repeat(luma.astype(np.uint8)[..., None], 3, axis=-1)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    shrink = h < image.shape[0] or w < image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _ends_in_probabilities(model) -> bool:
    """True when the model's last layer is a softmax/sigmoid (outputs are probabilities)."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    if layer is None:
        return False
    if type(layer).__name__ == "Softmax":
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") in ("softmax", "sigmoid")


def _weights_fingerprint(model, extra: dict) -> str:
    h = hashlib.sha256()
    for w in model.weights:
        arr = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def keras_predictor(model, class_names: Sequence[str] | None = None, batch_size: int = 64,
                    input_scale: float = 255.0, output: str = "auto",
                    name: str = "model", grayscale: bool = False) -> Predictor:
    """Wraps a keras.Model: pixels scaled to [0, input_scale], probabilities out.

    Args:
        input_scale: 255 for models taking [0, 255] pixels (this project's classifiers),
            1 for models taking [0, 1].
        output: "auto" (probabilities when the last layer is a softmax/sigmoid, else logits),
            "logits" or "probabilities".
        grayscale: the model was trained on grey images (see Predictor).

    Example:
        >>> p = keras_predictor(keras.saving.load_model("m.keras"), input_scale=1.0)
    """
    if output not in ("auto", "logits", "probabilities"):
        raise ValueError(f"output must be auto, logits or probabilities, got {output!r}")
    probs = output == "probabilities" or (output == "auto" and _ends_in_probabilities(model))
    shape = tuple(model.input_shape[1:3]) if model.input_shape else (None, None)
    input_size = shape if None not in shape else None
    scale = float(input_scale) / 255.0

    def fn(batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        # Pad to a power of two (<= batch_size): a handful of traced shapes, not one per size.
        padded = min(batch_size, 1 << max(0, (n - 1).bit_length()))
        x = batch.astype(np.float32) * scale
        if padded > n:
            x = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), np.float32)])
        out = np.asarray(model.predict_on_batch(x), dtype=np.float64)[:n]
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[1] == 1:  # one unit: a binary model
            p = out[:, 0] if probs else 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.stack([1.0 - p, p], 1)
        return out if probs else _softmax(out)

    fp = _weights_fingerprint(model, {"input_scale": input_scale, "probs": probs,
                                      "input": str(model.input_shape),
                                      "output": str(model.output_shape)})
    return Predictor(fn, fp, input_size, class_names, batch_size, name, grayscale)


def load_model_path(path: str | Path):
    """Loads a `.keras` file or a stage-4 run folder. Returns (keras model, class names,
    grayscale: whether the run was trained on grey images).

    Raises:
        DatasetError: a one-line reason (missing, not a model, unreadable).
    """
    p = Path(path)
    if not str(path):
        raise DatasetError("--model is required (a .keras file or a classifier run folder)")
    if not p.exists():
        raise DatasetError(f"--model {p} does not exist")
    run_like = p.is_dir() or p.name.endswith(".weights.h5") or (
        p.suffix == ".keras" and _has_class_names(p.parent / "config.json"))
    if not run_like and p.suffix != ".keras":
        raise DatasetError(f"--model {p}: expected a .keras file or a classifier run folder "
                           f"(config.json + {BEST_WEIGHTS})")
    if run_like:
        try:
            model, run_cfg, classes = load_run(p)
        except DatasetError:
            raise
        except Exception as err:  # h5/Keras errors of any kind
            raise DatasetError(f"--model {p} could not be loaded: {_first_line(err)}") from None
        return model, classes, bool(getattr(run_cfg, "grayscale", False))
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    try:
        model = keras.saving.load_model(p, compile=False)
    except Exception as err:
        raise DatasetError(f"--model {p} could not be loaded: {_first_line(err)}") from None
    return model, None, False


def _has_class_names(cfg: Path) -> bool:
    try:
        return bool(json.loads(cfg.read_text()).get("_class_names"))
    except (OSError, ValueError):
        return False


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


def _callable_fingerprint(fn: Callable) -> str:
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    payload = code.co_code + repr(code.co_consts).encode() if code else repr(fn).encode()
    return f"callable:{getattr(fn, '__qualname__', type(fn).__name__)}:" + \
        hashlib.sha256(payload).hexdigest()[:16]


def load_predictor(model: Any, batch_size: int = 64, input_scale: float = 255.0,
                   output: str = "auto", fingerprint: str | None = None,
                   input_size: tuple[int, int] | None = None,
                   class_names: Sequence[str] | None = None,
                   grayscale: bool = False) -> Predictor:
    """A Predictor from a path, a keras.Model, a Predictor or a batch function.

    Args:
        model: see the module docstring.
        fingerprint: for a plain function, a name that changes when its behaviour does
            (default: its name + a hash of its code, which misses state it closes over).
        input_size, class_names: for a plain function.
        grayscale: turn batches grey before the model (a run folder's own setting is used
            when it says grayscale=True).

    Raises:
        DatasetError: a path that is not a usable model.
    """
    if isinstance(model, Predictor):
        return model
    if isinstance(model, (str, Path)):
        keras_model, classes, grey = load_model_path(model)
        return keras_predictor(keras_model, classes, batch_size, input_scale, output,
                               name=Path(model).name, grayscale=grayscale or grey)
    if hasattr(model, "predict_on_batch") and hasattr(model, "weights"):
        return keras_predictor(model, class_names, batch_size, input_scale, output,
                               name=getattr(model, "name", "model"), grayscale=grayscale)
    if callable(model):
        def fn(batch):
            out = model(batch)
            return out if isinstance(out, (np.ndarray, list)) else list(out)
        return Predictor(fn, fingerprint or _callable_fingerprint(model), input_size,
                         class_names, batch_size, getattr(model, "__name__", "function"),
                         grayscale)
    raise ValueError(f"cannot predict with {type(model).__name__}: give a path, a keras "
                     f"model or a function on image batches")
