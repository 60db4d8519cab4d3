"""Image folders -> tf.data pipelines for the diffusion model.

Layouts:
    one label:   in_dir/*.jpg, or in_dir/<one or more sub-folders>/*.jpg (the original pipeline's
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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps

from dataset.images import is_image_name, load_rgb
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.scan import DatasetError, label_folders, natural_key, probe_images, site_from_name
from dataset.split import stratified_split
from diffusion.online_augment import ONLINE_AUGMENT_DIMS, augment_image
from diffusion_maths.label_balance import label_repeats

CACHE_LIMIT_BYTES = 2 * 1024 ** 3
# The augmentation vector a training image carries: [horizontal flip, sin(theta),
# 1 - cos(theta), zoom - 1] for stage-1 rotations and the online flip; zeros = as taken.
AUGMENT_DIMS = 4
# Channel differences up to this (of 255) still count as grey (JPEG chroma noise).
GREY_TOLERANCE = 3


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
    nested = [p for sub in _subfolders(in_dir) for p in _images_in(sub)]
    if direct and nested:
        # A dataset root with a stray image: training on that one image alone is never meant.
        # (the same advice for run_diffusion.py, train_all.py and --conditional)
        raise DatasetError(f"{in_dir} holds {len(direct)} image(s) and sub-folders with "
                           f"{len(nested)} more: a label's images lie either in its folder "
                           f"or in its sub-folders, not both; move the stray image(s) "
                           f"({direct[0].name}) or the sub-folders away")
    if direct:
        return direct
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


def labels_with_images(in_dir: str | Path, labels: Sequence[str] | None = None
                       ) -> tuple[dict[str, list[Path]], list[str]]:
    """({label: images} of the label folders that hold images, one line per label folder
    without any), for a conditional model that trains on the others.

    Raises:
        DatasetError: as `find_labelled_images`, except for a label folder without images.

    Example:
        >>> found, left_out = labels_with_images("diffusion_data")
        >>> left_out
        ['b: no images in diffusion_data/b nor in its sub-folders']
    """
    found, left_out = {}, []
    for label, path in find_label_folders(in_dir, labels).items():
        if not _images_in(path) and not any(_images_in(sub) for sub in _subfolders(path)):
            left_out.append(f"{label}: no images in {path} nor in its sub-folders")
            continue
        found[label] = find_label_images(path)
    return found, left_out


def drop_unreadable(paths: Sequence[Path], workers: int | None = None
                    ) -> tuple[list[Path], list[str]]:
    """Decodes every file once; returns (readable paths in order, one-line reasons for the rest)."""
    if workers is None and len(paths) < 2000:
        workers = 1  # a probe takes ~1 ms: cheaper here than starting worker processes
    probed = probe_images(paths, workers=workers)
    good = [p for p in paths if probed[p][1] is None]
    return good, [f"{p}: {probed[p][1]}" for p in paths if probed[p][1] is not None]


def split_paths(paths: Sequence, validation_split: float, seed: int,
                labels: Sequence[int] | None = None) -> tuple[list, list]:
    """Deterministic shuffled split; at least one validation item when the split is > 0
    (and, with labels, some label has two or more items).

    With `labels`, each label is split on its own (`dataset.split.stratified_split`:
    round(split x n) of a label with two or more images validates, at least one, and at
    least one trains), so a 20-photo label of a shared model loses its share and no more to
    a lucky draw. Without, the paths are one group (the same split as one label).

    Example:
        >>> split_paths(["a", "b", "c", "d"], 0.25, seed=0, labels=[0, 0, 1, 1])[1]
        ['a', 'c']
    """
    if validation_split <= 0 or len(paths) < 2:
        return list(paths), []
    groups = [0] * len(paths) if labels is None else list(labels)
    train, val = stratified_split(groups, validation_split, np.random.default_rng(seed))
    return [paths[i] for i in train], [paths[i] for i in val]


def load_image(path: str | Path, image_size: Sequence[int], channels: int = 3) -> np.ndarray:
    """An image as float32 (H, W, channels) in [0, 1]: centre-cropped to the aspect, resized.

    `channels=1` gives the luminance (ITU-R 601), the grey value of a grey image.
    """
    h, w = int(image_size[0]), int(image_size[1])
    rgb = load_rgb(path, min_side=max(h, w))  # the crop to the aspect then is >= (h, w)
    if rgb.shape[:2] != (h, w):
        rgb = np.asarray(ImageOps.fit(Image.fromarray(rgb), (w, h), Image.BICUBIC))
    img = rgb.astype(np.float32) / 255.0
    if channels == 1:
        img = img @ np.array([[0.299], [0.587], [0.114]], np.float32)
    return img


def is_grey(rgb: np.ndarray, tolerance: int = GREY_TOLERANCE) -> bool:
    """Whether a uint8 RGB image has (nearly) equal channels."""
    rgb = rgb.astype(np.int16)
    return bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() <= tolerance
                and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= tolerance)


def detect_channels(paths: Sequence[Path], sample: int = 64) -> int:
    """1 when every one of up to `sample` evenly spread images is grey, else 3.

    Example:
        >>> detect_channels(find_label_images("diffusion_data/L2"))
        3
    """
    if not paths:
        raise DatasetError("no images to detect the channels from")
    picks = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int))
    return 1 if all(is_grey(load_rgb(paths[i], min_side=64)) for i in picks) else 3


def resolve_channels(setting: str, paths: Sequence[Path]) -> int:
    """The channel count for `--channels` ('auto', '1' or '3') and these training images."""
    return detect_channels(paths) if setting == "auto" else int(setting)


def augment_vector(theta: float = 0.0, flip: bool = False, zoom: float = 1.0) -> np.ndarray:
    """The augmentation condition of an image rotated by `theta` degrees, mirrored, zoomed."""
    rad = np.deg2rad(float(theta))
    return np.array([float(flip), np.sin(rad), 1.0 - np.cos(rad), float(zoom) - 1.0],
                    np.float32)


def _find_manifest(paths: Sequence[Path]) -> Path | None:
    """The stage-1 manifest.csv of these images: beside their label folder or one above."""
    for folder in {Path(p).resolve().parent for p in paths[:1]}:
        for cand in (folder, folder.parent, folder.parent.parent):
            if (cand / MANIFEST_NAME).is_file():
                return cand / MANIFEST_NAME
    return None


def image_conditions(paths: Sequence[Path]) -> tuple[list[str], np.ndarray, str]:
    """Each image's site and augmentation vector, from the stage-1 manifest when there is one.

    Images the manifest does not list (or all, without a manifest) get the site of their
    file name (prefix before the first `_`) and a zero augmentation vector.

    Returns:
        (site names, (N, AUGMENT_DIMS) float32, where the information came from).
    """
    manifest = _find_manifest(paths)
    rows = {}
    if manifest is not None:
        try:
            rows = {(manifest.parent / r.path).resolve(): r for r in read_manifest(manifest)}
        except (ValueError, OSError):
            rows, manifest = {}, None
    sites, vectors = [], []
    for p in paths:
        row = rows.get(Path(p).resolve())
        if row is None:
            sites.append(site_from_name(Path(p).name))
            vectors.append(augment_vector())
            continue
        sites.append(row.site_id or site_from_name(Path(p).name))
        par = row.params if row.generator == "rotate_flip" else {}
        vectors.append(augment_vector(par.get("theta", 0.0), bool(par.get("flip", False)),
                                      par.get("zoom", 1.0)))
    source = f"manifest {manifest}" if manifest is not None and rows else "file names"
    return sites, np.stack(vectors) if vectors else np.zeros((0, AUGMENT_DIMS), np.float32), source


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
    val_sites: list[int] | None = None
    # label id -> how many times its training images are repeated (label_balance > 0)
    repeats: dict[int, int] = field(default_factory=dict)


def make_dataset(paths: Sequence[Path], labels: Sequence[int] | None, image_size: Sequence[int],
                 batch_size: int, training: bool, seed: int = 0, flip: bool = False,
                 cache: bool | None = None, drop_remainder: bool | None = None,
                 channels: int = 3, sites: Sequence[int] | None = None,
                 augment: np.ndarray | None = None, augment_p: float | None = None):
    """A batched, prefetched tf.data pipeline of images in [0, 1] and their conditions.

    Yields images alone; (images, labels) when only labels are given; else (images, dict)
    with the keys "labels", "sites", "augment" that are given. A random flip also flips the
    first augmentation entry, so the network knows which images it sees mirrored.
    `augment_p` (with `augment`): the augmentation vectors grow by the online entries of
    `diffusion.online_augment`, drawn with that probability while training (zeros otherwise).
    Decoding runs in parallel threads; `cache` keeps decoded images in memory (default:
    when they fit in 2 GB), otherwise memory stays flat in the number of images.
    """
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    h, w = int(image_size[0]), int(image_size[1])
    if cache is None:
        cache = len(paths) * h * w * channels * 4 < CACHE_LIMIT_BYTES
    path_ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])

    def decode(path):
        img = tf.numpy_function(lambda p: load_image(p.decode(), (h, w), channels), [path],
                                tf.float32)
        img.set_shape((h, w, channels))
        return img

    ds = path_ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    cond = {}
    if labels is not None:
        cond["labels"] = np.asarray(labels, np.int32)
    if sites is not None:
        cond["sites"] = np.asarray(sites, np.int32)
    online = augment is not None and augment_p is not None
    if augment is not None:
        augment = np.asarray(augment, np.float32).reshape(len(paths), AUGMENT_DIMS)
        if online:
            augment = np.concatenate(
                [augment, np.zeros((len(paths), ONLINE_AUGMENT_DIMS), np.float32)], axis=1)
        cond["augment"] = augment
    as_dict = bool(set(cond) - {"labels"})
    if cond:
        extra = cond if as_dict else cond["labels"]
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(extra)))
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(paths), 4096), seed=seed, reshuffle_each_iteration=True)
        if flip:
            def flip_fn(*item):
                mirror = tf.random.uniform(()) < 0.5
                img = tf.cond(mirror, lambda: tf.image.flip_left_right(item[0]),
                              lambda: item[0])
                if len(item) == 1:
                    return img
                extra = item[1]
                if as_dict and "augment" in extra:
                    a = extra["augment"]
                    flipped = tf.where(mirror, 1.0 - a[0], a[0])
                    extra = {**extra, "augment": tf.concat([flipped[None], a[1:]], 0)}
                return img, extra
            ds = ds.map(flip_fn, num_parallel_calls=tf.data.AUTOTUNE)
        if online and augment_p > 0:
            def online_fn(img, extra):
                img, drawn = augment_image(img, augment_p)
                return img, {**extra, "augment": tf.concat([extra["augment"][:AUGMENT_DIMS],
                                                            drawn], 0)}
            ds = ds.map(online_fn, num_parallel_calls=tf.data.AUTOTUNE)
    if drop_remainder is None:
        # Full batches while training: one compiled step shape, no tiny last batch.
        drop_remainder = training and len(paths) >= batch_size
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def load_training_data(paths: Sequence[Path], labels: Sequence[int] | None,
                       image_size: Sequence[int], batch_size: int, validation_split: float,
                       seed: int, flip: bool = True, cache: bool | None = None,
                       replicas: int = 1, channels: int = 3,
                       sites: Sequence[int] | None = None,
                       augment: np.ndarray | None = None,
                       augment_p: float | None = None,
                       label_balance: float = 0.0) -> TrainingData:
    """Checks the files, splits them and builds the train/validation pipelines.

    Args:
        batch_size: the global batch (all replicas together).
        replicas: data-parallel replicas; every batch is then split evenly between them
            (Keras' distributed build cannot handle uneven splits), dropping at most
            `replicas - 1` validation images.
        channels: 1 (grey) or 3.
        labels, sites, augment: per-path conditions (or None); validation keeps them too,
            and is split per label (`split_paths`).
        augment_p: online augmentation of the training images (see `make_dataset`).
        label_balance: 0 to 1; above 0, the training images of rarer labels are repeated
            (`diffusion_maths.label_balance.label_repeats`), after the split, so the
            validation images stay distinct; `TrainingData.repeats` says by how much.

    Raises:
        DatasetError: no readable image, or (with replicas > 1) fewer images than one batch.
    """
    paths = list(paths)
    per_path = {name: dict(zip(paths, values)) for name, values in
                (("labels", labels), ("sites", sites),
                 ("augment", None if augment is None else list(augment)))
                if values is not None}
    good, skipped = drop_unreadable(paths)
    if not good:
        raise DatasetError(f"none of the {len(paths)} images could be read; first: {skipped[0]}")

    def of(name, ps):
        return [per_path[name][p] for p in ps] if name in per_path else None

    train_p, val_p = split_paths(good, validation_split, seed, labels=of("labels", good))
    if len(train_p) < 1:
        raise DatasetError("no training images left after the validation split")

    repeats: dict[int, int] = {}
    if label_balance > 0 and labels is not None:
        repeats = label_repeats(Counter(of("labels", train_p)), label_balance)
        train_p = [p for p in train_p for _ in range(repeats[per_path["labels"][p]])]
        # spread the copies, or a shuffle buffer smaller than the list would see them together
        train_p = [train_p[i] for i in np.random.default_rng(seed).permutation(len(train_p))]

    def conds(ps):
        return dict(labels=of("labels", ps), sites=of("sites", ps),
                    augment=None if "augment" not in per_path else np.stack(of("augment", ps)))

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
    train = make_dataset(train_p, image_size=image_size, batch_size=batch_size, training=True,
                         seed=seed, flip=flip, cache=cache, drop_remainder=even,
                         channels=channels, augment_p=augment_p, **conds(train_p))
    val = (make_dataset(val_p, image_size=image_size, batch_size=val_batch, training=False,
                        cache=cache, drop_remainder=even, channels=channels,
                        augment_p=augment_p, **conds(val_p))
           if val_p else None)
    val_images = (np.stack([load_image(p, image_size, channels) for p in val_p])
                  if val_p else None)
    return TrainingData(train, val, len(train_p), len(val_p), val_images, of("labels", val_p),
                        skipped, val_sites=of("sites", val_p), repeats=repeats)
