"""Keras callbacks that fill a run folder: KID, checkpoints with resume state, curves, grids.

Order matters: `KIDCallback` adds `val_kid` to the epoch logs, which the CSV logger,
`RunCheckpoint` and early stopping then see.
"""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from dataset.atomic import atomic_path, atomic_write_text
from dataset.images import save_rgb, to_uint8
from model_folder.folder import ModelFolder
from runtime.divergence import non_finite_losses

STATE_JSON = "state.json"
HISTORY_CSV = "history.csv"
CURVES_PNG = "curves.png"
TENSORBOARD_DIR = "logs"


def image_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tiles (N, H, W, 3 or 1) floats in [0, 1] into one uint8 RGB image with 2 px gaps."""
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = \
            to_uint8(img)
    return grid


def read_history(path: Path) -> list[dict[str, float]]:
    """The CSV log as a list of {column: float} (NA and blanks as NaN)."""
    if not path.exists():
        return []
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rec = {}
            for k, v in row.items():
                try:
                    rec[k] = float(v)
                except (TypeError, ValueError):
                    rec[k] = float("nan")
            out.append(rec)
    return out


def plot_curves(history_csv: Path, out_png: Path) -> None:
    """Loss (train/val) and KID against epochs, as one PNG."""
    rows = read_history(history_csv)
    if not rows:
        return
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    epochs = [r.get("epoch", i) + 1 for i, r in enumerate(rows)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("n_loss", "val_n_loss"):
        ax1.plot(epochs, [r.get(key, np.nan) for r in rows], label=key)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("noise MAE")
    ax1.legend()
    kid = [(e, r.get("val_kid", np.nan)) for e, r in zip(epochs, rows)]
    kid = [(e, v) for e, v in kid if np.isfinite(v)]
    if kid:
        ax2.plot(*zip(*kid), marker="o")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("KID (validation)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


class KIDCallback(keras.callbacks.Callback):
    """Logs `val_kid` every `every` epochs (NaN in between, so CSV columns stay fixed).

    Args:
        kid: callable(generated images) -> float, e.g. `diffusion.kid.KernelInceptionDistance`.
        n_images, steps, seed, labels: what `model.generate` makes for each estimate.
    """

    def __init__(self, kid, every: int, n_images: int, steps: int, seed: int, labels=None,
                 batch_size: int = 64):
        super().__init__()
        self.kid, self.every, self.n_images, self.steps = kid, every, n_images, steps
        self.seed, self.labels, self.batch_size = seed, labels, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["val_kid"] = float("nan")
        if self.every and (epoch + 1) % self.every == 0:
            images = self.model.generate(self.n_images, steps=self.steps, seed=self.seed,
                                         labels=self.labels, batch_size=self.batch_size)
            logs["val_kid"] = self.kid(images)


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: last weights (with optimizer state) + state.json; best weights on
    improvement of `monitor` (copied, not aliased); the loss/KID curves PNG."""

    def __init__(self, run_dir: Path, monitor: str, best_value: float | None = None,
                 best_epoch: int | None = None, extra_state: dict | None = None,
                 steps_per_epoch: int = 1):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.best_value = best_value
        self.best_epoch = best_epoch
        self.extra_state = extra_state or {}
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs_done = 0    # epochs whose weights are in the folder

    def write_state(self, epochs_done: int, finished: bool = False) -> None:
        state = {"epochs_done": epochs_done, "monitor": self.monitor,
                 "train_steps_done": epochs_done * self.steps_per_epoch,
                 "best_value": self.best_value, "best_epoch": self.best_epoch,
                 "finished": finished, **self.extra_state}
        atomic_write_text(self.run_dir / STATE_JSON, json.dumps(state, indent=2) + "\n")

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_done = epoch    # every earlier epoch saved its weights (here or resumed)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if non_finite_losses(logs):
            return   # NaN weights are neither best nor last (runtime.divergence stops the run)
        folder = ModelFolder(self.run_dir, "diffusion")
        last = folder.save_weights(self.model, "last")
        value = logs.get(self.monitor)
        if value is not None and np.isfinite(value) and (
                self.best_value is None or value < self.best_value):
            self.best_value, self.best_epoch = float(value), epoch + 1
            with atomic_path(folder.weights_path("best")) as tmp:
                shutil.copyfile(last, tmp)
        self.epochs_done = epoch + 1
        self.write_state(epoch + 1)
        plot_curves(self.run_dir / HISTORY_CSV, self.run_dir / CURVES_PNG)


def tensorboard_callback(run_dir: Path) -> keras.callbacks.Callback:
    """Keras' TensorBoard callback writing the epoch logs to run_dir/logs/ (no graph, no
    profiling: only what a user watches)."""
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                       write_graph=False, update_freq="epoch",
                                       profile_batch=0)


class SampleGrid(keras.callbacks.Callback):
    """Saves a grid of samples (fixed seeds, so epochs compare) every `every` epochs; for a
    conditional model one row per label (`labels` repeated `cols` times each). With
    `tensorboard`, each grid is also logged as an image in run_dir/logs/samples."""

    def __init__(self, run_dir: Path, every: int, n_images: int = 16, steps: int = 20,
                 seed: int = 0, labels=None, cols: int | None = None,
                 tensorboard: bool = False):
        super().__init__()
        self.dir = Path(run_dir) / "samples"
        self.every, self.n_images, self.steps, self.seed = every, n_images, steps, seed
        self.labels, self.cols = labels, cols
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR / "samples" if tensorboard else None

    def save(self, name: str, step: int | None = None) -> Path:
        images = self.model.generate(self.n_images, steps=self.steps, seed=self.seed,
                                     labels=self.labels)
        grid = image_grid(images, self.cols)
        if self.log_dir is not None and step is not None:
            with tf.summary.create_file_writer(str(self.log_dir)).as_default():
                tf.summary.image("samples", grid[None], step=step)
        return save_rgb(self.dir / f"{name}.png", grid)

    def on_epoch_end(self, epoch, logs=None):
        if self.every and (epoch + 1) % self.every == 0:
            self.save(f"epoch_{epoch + 1:04d}", epoch + 1)
