"""Shared fixtures: tiny real image datasets written to tmp folders."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


# The tiny U-Net every stage-2 test trains in seconds on a CPU (16x16, widths 8-16, one
# block per level), as DiffusionModel arguments and as the flags of the stage-2 commands.
TINY_UNET = dict(image_size=(16, 16), widths=[8, 16], block_depth=1, embedding_dims=8)
TINY_UNET_FLAGS = ["--image_size", "16", "16", "--widths", "8", "16", "--block_depth", "1",
                   "--embedding_dims", "8"]


def write_image(path: Path, size=(24, 16), seed: int = 0, fmt: str | None = None) -> Path:
    """Writes a small random RGB image (width, height) = size; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(30, 226, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_dataset(root: Path, layout: dict[str, dict[str, int]], size=(24, 16),
                 suffix: str = ".jpg") -> Path:
    """Writes root/<label>/<site>_<n><suffix> for layout {label: {site: count}}."""
    seed = 0
    for label, sites in layout.items():
        for site, count in sites.items():
            for n in range(count):
                seed += 1
                write_image(root / label / f"{site}_{n:03d}{suffix}", size, seed)
    return root


# Small coloured classes a classifier can learn in a few epochs: plain red, striped green,
# blue with a bright square (purple: a label the test data does not have).
CLASS_COLOURS = {"red": (200, 50, 50), "green": (50, 170, 60), "blue": (50, 70, 200),
                 "purple": (150, 40, 160)}


def class_image(label: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy (size, size, 3) uint8 image of one of CLASS_COLOURS' classes."""
    img = np.array(CLASS_COLOURS[label], dtype=float)[None, None] + rng.normal(0, 35, (size, size, 3))
    if label == "green":      # stripes
        img[::4] *= 0.5
    elif label == "blue":     # a bright square
        img[4:10, 4:10] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


def write_class_images(root: Path, per_class: dict[str, int], seed: int,
                       suffix: str = ".png") -> Path:
    """root/<label>/s_NNN<suffix> with per_class[label] images of `class_image`."""
    rng = np.random.default_rng(seed)
    for label, n in per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(class_image(label, rng)).save(root / label / f"s_{i:03d}{suffix}")
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """Two labels; label 1 has sites of 6, 2 and 1 images, label 2 of 3 and 3."""
    return make_dataset(tmp_path / "in", {"1": {"S1": 6, "S2": 2, "S3": 1},
                                          "2": {"A": 3, "B": 3}})


@pytest.fixture(autouse=True)
def restore_float32_policy():
    """Loading or training a model sets Keras' global dtype policy (mixed_bfloat16 on this
    CPU); every test starts and ends with float32 so that none depends on another's order."""
    import sys

    def reset():
        if "keras" in sys.modules:
            sys.modules["keras"].config.set_dtype_policy("float32")
    reset()
    yield
    reset()


def tensorboard_tags(log_dir: Path) -> dict[str, int]:
    """{"<sub-folder>/<tag>": number of events} over every TensorBoard event file below
    `log_dir` (e.g. "validation/epoch_kid"), read as TensorBoard reads them."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    tags: dict[str, int] = {}
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            for value in event_pb2.Event.FromString(record.numpy()).summary.value:
                key = f"{path.parent.relative_to(log_dir)}/{value.tag}"
                tags[key] = tags.get(key, 0) + 1
    return tags
