"""Image folders -> tf.data pipelines for the diffusion model.

Layouts:
    one label:   in_dir/*.jpg, or in_dir/<one or more sub-folders>/*.jpg (the reference's
                 diffusion_data/L2/2/ layout: images one folder down)
    all labels:  in_dir/<label>/... with each label folder in the one-label layout

Images are decoded with `dataset.images.load_rgb` (EXIF, grayscale, RGBA, 16-bit, CMYK),
centre-cropped to the target aspect ratio and resized, as floats in [0, 1]. Unreadable files
are listed and skipped before training starts.

Example:
    >>> paths = find_label_images("diffusion_data/L2")
    >>> train_paths, val_paths = split_paths(paths, 0.15, seed=42)
    >>> ds = make_dataset(train_paths, None, (64, 64), batch_size=16, training=True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from dataset.images import is_image_name, load_rgb
from dataset.scan import DatasetError, label_folders, natural_key, probe_images

CACHE_LIMIT_BYTES = 2 * 1024 ** 3


def _images_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and is_image_name(p)),
                  key=lambda p: natural_key(p.name))


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def find_label_images(in_dir: str | Path) -> list[Path]:
    """The images of one label: directly in `in_dir`, else in its sub-folders (one down).

    Raises:
        DatasetError: the folder is missing or holds no images at either depth.
    """
    in_dir = Path(in_dir)
    if not in_dir.is_dir():
        raise DatasetError(f"input folder {in_dir} does not exist or is not a folder")
    direct = _images_in(in_dir)
    if direct:
        return direct
    nested = [p for sub in _subfolders(in_dir) for p in _images_in(sub)]
    if not nested:
        raise DatasetError(f"no images in {in_dir} nor in its sub-folders (extensions: jpg, "
                           f"jpeg, png, bmp, tif, webp)")
    return nested


def find_label_folders(in_dir: str | Path, labels: Sequence[str] | None = None
                       ) -> dict[str, Path]:
    """{label: folder} of `in_dir/<label>/` (natural order), checked to exist.

    Raises:
        DatasetError: missing folder or label, or no label folders.
    """
    return {p.name: p for p in label_folders(in_dir, labels)}


def find_labelled_images(in_dir: str | Path, labels: Sequence[str] | None = None
                         ) -> dict[str, list[Path]]:
    """{label: images} for `in_dir/<label>/...` (each label in the one-label layout).

    Raises:
        DatasetError: missing folder or label, no label folders, a label without images.
    """
    return {label: find_label_images(path)
            for label, path in find_label_folders(in_dir, labels).items()}


def drop_unreadable(paths: Sequence[Path], workers: int | None = None
                    ) -> tuple[list[Path], list[str]]:
    """Decodes every file once; returns (readable paths in order, one-line reasons for the rest)."""
    if workers is None and len(paths) < 2000:
        workers = 1  # a probe takes ~1 ms: cheaper here than starting worker processes
    probed = probe_images(paths, workers=workers)
    good = [p for p in paths if probed[p][1] is None]
    return good, [f"{p}: {probed[p][1]}" for p in paths if probed[p][1] is not None]


def split_paths(paths: Sequence, validation_split: float, seed: int,
                ) -> tuple[list, list]:
    """Deterministic shuffled split; at least one validation item when the split is > 0."""
    order = np.random.default_rng(seed).permutation(len(paths))
    n_val = int(round(len(paths) * validation_split))
    if validation_split > 0 and len(paths) >= 2:
        n_val = min(max(1, n_val), len(paths) - 1)
    val = [paths[i] for i in sorted(order[:n_val])]
    train = [paths[i] for i in sorted(order[n_val:])]
    return train, val


def load_image(path: str | Path, image_size: Sequence[int]) -> np.ndarray:
    """An image as float32 (H, W, 3) in [0, 1]: centre-cropped to the aspect, then resized."""
    h, w = int(image_size[0]), int(image_size[1])
    rgb = load_rgb(path, min_side=max(h, w))  # the crop to the aspect then is >= (h, w)
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(ImageOps.fit(Image.fromarray(rgb), (w, h), Image.BICUBIC))
    return rgb.astype(np.float32) / 255.0


def load_mask(path: str | Path, image_size: Sequence[int]) -> np.ndarray:
    """A mask as float32 (H, W) with 1 where the pixel is bright (> 127): the area to regenerate.

    Cropped and resized like `load_image` (nearest neighbour, so it stays binary).
    """
    grey = load_rgb(path).mean(axis=2).astype(np.uint8)
    h, w = int(image_size[0]), int(image_size[1])
    if grey.shape != (h, w):
        grey = np.asarray(ImageOps.fit(Image.fromarray(grey), (w, h), Image.NEAREST))
    return (grey > 127).astype(np.float32)


@dataclass
class TrainingData:
    """Datasets and what went into them."""
    train: object
    val: object | None
    n_train: int
    n_val: int
    val_images: np.ndarray | None
    val_labels: list[int] | None = None
    skipped: list[str] = field(default_factory=list)


def make_dataset(paths: Sequence[Path], labels: Sequence[int] | None, image_size: Sequence[int],
                 batch_size: int, training: bool, seed: int = 0, flip: bool = False,
                 cache: bool | None = None, drop_remainder: bool | None = None):
    """A batched, prefetched tf.data pipeline of images in [0, 1] (and int labels if given).

    Decoding runs in parallel threads; `cache` keeps decoded images in memory (default:
    when they fit in 2 GB), otherwise memory stays flat in the number of images.
    """
    import tensorflow as tf
    h, w = int(image_size[0]), int(image_size[1])
    if cache is None:
        cache = len(paths) * h * w * 3 * 4 < CACHE_LIMIT_BYTES
    path_ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])

    def decode(path):
        img = tf.numpy_function(lambda p: load_image(p.decode(), (h, w)), [path], tf.float32)
        img.set_shape((h, w, 3))
        return img

    ds = path_ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(
            np.asarray(labels, np.int32))))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), 4096), seed=seed, reshuffle_each_iteration=True)
        if flip:
            def flip_fn(*item):
                img = tf.image.random_flip_left_right(item[0])
                return (img,) + tuple(item[1:]) if len(item) > 1 else img
            ds = ds.map(flip_fn, num_parallel_calls=tf.data.AUTOTUNE)
    if drop_remainder is None:
        # Full batches while training: one compiled step shape, no tiny last batch.
        drop_remainder = training and len(paths) >= batch_size
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_training_data(paths: Sequence[Path], labels: Sequence[int] | None,
                       image_size: Sequence[int], batch_size: int, validation_split: float,
                       seed: int, flip: bool = True, cache: bool | None = None,
                       replicas: int = 1) -> TrainingData:
    """Checks the files, splits them and builds the train/validation pipelines.

    Args:
        batch_size: the global batch (all replicas together).
        replicas: data-parallel replicas; every batch is then split evenly between them
            (Keras' distributed build cannot handle uneven splits), dropping at most
            `replicas - 1` validation images.

    Raises:
        DatasetError: no readable image, or (with replicas > 1) fewer images than one batch.
    """
    paths = list(paths)
    label_of = dict(zip(paths, labels)) if labels is not None else None
    good, skipped = drop_unreadable(paths)
    if not good:
        raise DatasetError(f"none of the {len(paths)} images could be read; first: {skipped[0]}")
    train_p, val_p = split_paths(good, validation_split, seed)
    if len(train_p) < 1:
        raise DatasetError("no training images left after the validation split")
    lab = (lambda ps: [label_of[p] for p in ps]) if label_of is not None else (lambda ps: None)
    val_batch, even = batch_size, None
    if replicas > 1:
        if len(train_p) < batch_size:
            raise DatasetError(f"{len(train_p)} training images are fewer than one global "
                               f"batch ({batch_size}) for {replicas} replicas")
        val_p = val_p[:len(val_p) - len(val_p) % replicas]
        # the largest batch (a multiple of replicas) that splits the validation set exactly
        val_batch = next((b for b in range(min(batch_size, len(val_p)), 0, -1)
                          if b % replicas == 0 and len(val_p) % b == 0), replicas)
        even = True
    train = make_dataset(train_p, lab(train_p), image_size, batch_size, True, seed, flip, cache,
                         drop_remainder=even)
    val = (make_dataset(val_p, lab(val_p), image_size, val_batch, False, cache=cache,
                        drop_remainder=even) if val_p else None)
    val_images = np.stack([load_image(p, image_size) for p in val_p]) if val_p else None
    return TrainingData(train, val, len(train_p), len(val_p), val_images, lab(val_p), skipped)
