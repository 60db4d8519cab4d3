"""Reads training/validation/test images from folders or a manifest into memory, and feeds
them to Keras through tf.data.

Image sets here are small (hundreds to a few thousand images), so every image is decoded
once, resized (shorter side to `size`, centre crop) and kept as uint8; epochs then cost no
decoding. The input pipeline gathers batches by precomputed indices (`sampling.epoch_plan`),
augments them and prefetches while the model trains.

Example:
    >>> samples, classes = samples_from_dir("data/train")
    >>> images = load_images([s.path for s in samples], size=96)
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from dataset.images import ImageLoadError, load_rgb
from dataset.manifest import read_manifest
from dataset.scan import DatasetError, natural_key, scan_labelled_dir
from runtime.parallel import parallel_imap


@dataclass(frozen=True)
class Sample:
    """One image: its file, label name, whether it is synthetic, and its quality score."""
    path: str
    label: str
    synthetic: bool = False
    quality: float | None = None


def samples_from_dir(folder: str | Path, class_names: Sequence[str] | None = None,
                     what: str = "folder", skipped: list[str] | None = None
                     ) -> tuple[list[Sample], list[str]]:
    """Lists `folder/<label>/...` images (all real).

    Args:
        class_names: the classes of a trained model; a label folder outside them is an error.
        what: how messages name the folder (e.g. "--test_dir").
        skipped: receives one line per thing left out (an image at the root, a label folder
            without images, a file that is not an image by its extension).

    Returns:
        (samples, class names found, natural order).

    Raises:
        DatasetError: missing/empty folder, or a class the model does not know.
    """
    # Sites do not matter here; the whole name is a valid site for any file name.
    scan = scan_labelled_dir(folder, site_regex=r"(?P<site>.+)")
    if class_names is not None:
        unknown = [lab for lab in scan.labels if lab not in class_names]
        if unknown:
            raise DatasetError(f"{what} {folder} has class folder(s) the model does not know: "
                               f"{', '.join(unknown)} (model classes: {', '.join(class_names)})")
    if skipped is not None:
        skipped.extend(f"{Path(folder)}/{name}: {reason}" for name, reason in scan.skipped)
    return [Sample(str(r.path), r.label) for r in scan.images], list(scan.labels)


def samples_from_manifest(path: str | Path, real_generators: Sequence[str] = ("original",)
                          ) -> tuple[list[Sample], list[str]]:
    """Reads a stage-3 manifest; rows whose generator is not in `real_generators` are
    synthetic. Paths are relative to the manifest's folder.

    Raises:
        DatasetError: missing manifest, no rows, or listed files that do not exist.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DatasetError(f"manifest {path} does not exist")
    try:
        rows = read_manifest(path)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    if not rows:
        raise DatasetError(f"manifest {path} has no rows")
    root = path.parent
    samples = [Sample(str(root / r.path), r.label, r.generator not in real_generators, r.quality)
               for r in rows]
    missing = [s.path for s in samples if not Path(s.path).is_file()]
    if missing:
        raise DatasetError(f"manifest {path} lists {len(missing)} missing file(s), "
                           f"e.g. {missing[0]}")
    return samples, sorted({s.label for s in samples}, key=natural_key)


def resize_square(img: np.ndarray, size: int, grayscale: bool = False) -> np.ndarray:
    """Shorter side to `size`, centre crop to size x size; grey images keep 3 channels."""
    pil = Image.fromarray(img)
    if grayscale:
        pil = pil.convert("L").convert("RGB")
    w, h = pil.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    pil = pil.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _load_one(job: tuple[int, str, int, bool]):
    i, path, size, grey = job
    try:
        return i, resize_square(load_rgb(path, min_side=size), size, grey), None
    except ImageLoadError as err:
        return i, None, str(err)


class DecodedCache:
    """Decoded, resized images by (file, its size and mtime, size, grey), so that the runs of
    one process (every arm and seed of a comparison, every trial of a grid search) decode
    each file once. Least recently used images go first above `max_bytes`; a file that
    changes on disk is decoded again.

    Example:
        >>> cache = DecodedCache(max_bytes=2 ** 30)
        >>> images, ok, errors = load_images(paths, 96, cache=cache)
    """

    def __init__(self, max_bytes: int = 2 ** 31):
        self.max_bytes = max_bytes
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0

    @staticmethod
    def key(path: str, size: int, grey: bool) -> tuple | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None          # decoding reports it
        return (str(path), st.st_size, st.st_mtime_ns, size, grey)

    def get(self, key):
        if key is None or key not in self.items:
            return None
        self.items.move_to_end(key)
        return self.items[key]

    def put(self, key, image: np.ndarray) -> None:
        if key is None or key in self.items or image.nbytes > self.max_bytes:
            return
        self.items[key] = image
        self.bytes += image.nbytes
        while self.bytes > self.max_bytes:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes


# This process's cache (the local executor runs every run in one process).
PROCESS_CACHE = DecodedCache()


def load_images(paths: Sequence[str], size: int, grayscale: bool = False,
                workers: int | None = None, desc: str | None = "loading images",
                cache: DecodedCache | None = PROCESS_CACHE
                ) -> tuple[np.ndarray, list[int], list[str]]:
    """Decodes and resizes images into one uint8 array (N_ok, size, size, 3).

    Args:
        cache: images decoded earlier in this process are taken from it and new ones put
            in; None decodes everything.

    Returns:
        (images, indices of the paths that loaded, one message per unreadable file).
    """
    keys = [DecodedCache.key(str(p), size, grayscale) if cache is not None else None
            for p in paths]
    found = {i: cache.get(k) for i, k in enumerate(keys)} if cache is not None else {}
    jobs = [(i, str(p), size, grayscale) for i, p in enumerate(paths)
            if found.get(i) is None]
    # A process pool pays off only for larger sets (spawning costs ~0.5 s).
    results = list(parallel_imap(_load_one, jobs, workers=workers if len(jobs) > 200 else 1,
                                 desc=desc if len(jobs) > 200 else None, unit="img",
                                 chunksize=32))
    if cache is not None:
        for i, image, _ in results:
            if image is not None:
                cache.put(keys[i], image)
    results += [(i, image, None) for i, image in found.items() if image is not None]
    results.sort(key=lambda r: r[0])
    ok = [r for r in results if r[2] is None]
    errors = [r[2] for r in results if r[2] is not None]
    arr = (np.stack([r[1] for r in ok]) if ok
           else np.zeros((0, size, size, 3), dtype=np.uint8))
    return arr, [r[0] for r in ok], errors


def train_dataset(images: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                  plan: np.ndarray, batch_size: int, augment=None,
                  synthetic: np.ndarray | None = None):
    """A tf.data pipeline yielding (pixels float32 [0, 255], target, sample weight) batches
    in the order of `plan` (epochs x indices); prefetches while the model trains.

    Args:
        targets: per image, a class index (int) or a row of class probabilities (float).
        synthetic: per image, whether it is synthetic; given, the batches' first element
            is (pixels, is_synthetic), as `split_bn.SplitBatchNormTrainer` takes them.
    """
    # why: TensorFlow takes seconds to import; --help and --dry-run never need it
    import tensorflow as tf
    images_t = tf.constant(images)
    labels_t = tf.constant(targets.astype(np.int32 if targets.ndim == 1 else np.float32))
    weights_t = tf.constant(weights.astype(np.float32))
    synthetic_t = None if synthetic is None else tf.constant(np.asarray(synthetic, bool))

    def gather(idx):
        x = tf.cast(tf.gather(images_t, idx), tf.float32)
        if augment is not None:
            x = augment(x)
        if synthetic_t is not None:
            x = (x, tf.gather(synthetic_t, idx))
        return x, tf.gather(labels_t, idx), tf.gather(weights_t, idx)

    ds = tf.data.Dataset.from_tensor_slices(plan.reshape(-1))
    return (ds.batch(batch_size, drop_remainder=True)
            .map(gather, num_parallel_calls=1 if augment is not None else tf.data.AUTOTUNE,
                 deterministic=True)
            .prefetch(tf.data.AUTOTUNE))


def predict_logits(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """float32 logits of uint8 images (N, S, S, 3), in batches."""
    if len(images) == 0:
        return np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size,
                                    verbose=0), dtype=np.float32)
