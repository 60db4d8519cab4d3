"""Fashion-MNIST-LT: the standard long-tailed benchmark set built from Fashion-MNIST.

All 10 classes with the exponential profile of Cui et al. (CVPR 2019): class i keeps
n_i = round(n_max * (1/IF)^(i/(C-1))) training images (n_max = 6000, Fashion-MNIST's
per-class count; class order 0..9, so t-shirts are the head and ankle boots the tail). The
test split is Fashion-MNIST's full balanced test set (1,000 images per class). Images are
grey PNGs at 28x28 (Fashion-MNIST's own size) in `train/<class name>/fmnist_<index>.png`
and `test/<class name>/...`, the class name lowercase with underscores (`t_shirt`,
`ankle_boot`); `fmnist` is every image's site, the index its row in the split.

The draw is seeded per class: one permutation of each class's images, of which the first
n_i are kept, so at one seed the set at IF 100 is a subset of the set at IF 10.

Example:
    >>> longtail_counts(100)
    [6000, 3597, 2156, 1293, 775, 465, 278, 167, 100, 60]
    >>> build_fmnist_lt(Path("fmnist_lt_if100"), imbalance=100)   # ~15k train + 10k test
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from runtime.parallel import parallel_imap, worker_pool
from sample_data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

N_MAX = 6000
FOLDER_NAMES = tuple(name.replace("-", "_") for name in CLASS_NAMES)
SITE = "fmnist"


def longtail_counts(imbalance: float, n_max: int = N_MAX, num_classes: int = 10) -> list[int]:
    """Training images per class, head first: n_i = round(n_max * (1/IF)^(i/(C-1))).

    Args:
        imbalance: the imbalance factor IF = n_0 / n_(C-1) (>= 1; 1 is balanced).
        n_max: images of the largest class.
        num_classes: C (>= 2).

    Example:
        >>> longtail_counts(10)
        [6000, 4646, 3597, 2785, 2156, 1670, 1293, 1001, 775, 600]
    """
    if imbalance < 1:
        raise ValueError(f"the imbalance factor must be at least 1, got {imbalance}")
    if num_classes < 2:
        raise ValueError(f"a long-tailed set needs at least 2 classes, got {num_classes}")
    # floor(x + 0.5): half-up, where Python's round() would round halves to even.
    return [int(math.floor(n_max * (1.0 / imbalance) ** (i / (num_classes - 1)) + 0.5))
            for i in range(num_classes)]


def draw_indices(classes: np.ndarray, counts: list[int], seed: int) -> list[np.ndarray]:
    """Per class c (0..len(counts)-1): `counts[c]` row indices of class c, drawn seeded.

    Raises:
        ValueError: a class has fewer images than asked for.
    """
    rng = np.random.default_rng(seed)
    out = []
    for cls, n in enumerate(counts):
        pool = np.flatnonzero(classes == cls)
        if n > len(pool):
            raise ValueError(f"class {cls} has {len(pool)} images, {n} asked for")
        out.append(np.sort(rng.permutation(pool)[:n]))
    return out


def _write_png(job: tuple[Path, np.ndarray, int]) -> None:
    path, image, size = job
    img = Image.fromarray(image)
    if size != image.shape[0]:
        img = img.resize((size, size), Image.BICUBIC)
    img.save(path, format="PNG", compress_level=1)   # fast; lossless at any level


def write_split(folder: Path, images: np.ndarray, picks: list[np.ndarray], size: int = 28,
                workers: int | None = None, names: Sequence[str] = FOLDER_NAMES) -> dict:
    """Writes `images[picks[c]]` as grey PNGs into folder/<names[c]>/ (default: the class
    names); returns the summary {name: {"class": c, "sites": {site: count}}}."""
    jobs = []
    for cls, rows in enumerate(picks):
        (folder / names[cls]).mkdir(parents=True, exist_ok=True)
        jobs += [(folder / names[cls] / f"{SITE}_{row:05d}.png", images[row], size)
                 for row in rows]
    # Pillow's PNG encoder and file creation release the GIL: threads, no pickling.
    with worker_pool(workers, threads=True) as pool:
        for _ in parallel_imap(_write_png, jobs, pool=pool, chunksize=256):
            pass
    return {names[cls]: {"class": cls, "sites": {SITE: len(rows)}}
            for cls, rows in enumerate(picks)}


def build_fmnist_lt(out_dir: Path, imbalance: float = 100, seed: int = 0, size: int = 28,
                    workers: int | None = None) -> dict:
    """Writes out_dir/train (long-tailed) and out_dir/test (balanced, all 10,000 images).

    The folder is built as `<out_dir>.partial` and renamed when complete, so an interrupted
    build leaves no half dataset behind. Returns the summary also saved as dataset.json.
    """
    counts = longtail_counts(imbalance)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)       # our own leftover of an interrupted build
    summary = {"source": "Fashion-MNIST", "arrangement": "fmnist_lt", "size": size,
               "seed": seed, "imbalance": imbalance, "n_max": N_MAX, "counts": counts}
    images, classes = load_fashion_mnist("train")
    summary["train"] = write_split(tmp / "train", images, draw_indices(classes, counts, seed),
                                   size, workers)
    images, classes = load_fashion_mnist("test")
    summary["test"] = write_split(tmp / "test", images,
                                  [np.flatnonzero(classes == c) for c in range(len(counts))],
                                  size, workers)
    (tmp / "dataset.json").write_text(json.dumps(summary, indent=2))
    tmp.rename(out_dir)
    return summary
