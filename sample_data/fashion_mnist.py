"""Reads Fashion-MNIST from Debian's `dataset-fashion-mnist` package, or downloads it.

The project obtains its demo data by itself: `make demo` installs the Debian package where
it can (root + apt), and where that is missing this module downloads the same four files
into a cache folder once.

Example:
    >>> images, labels = load_fashion_mnist("train")   # (60000, 28, 28) uint8, (60000,)
"""
from __future__ import annotations

import gzip
import os
import urllib.request
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_URLS = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
         "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
               "sneaker", "bag", "ankle-boot")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffaug" / "fashion-mnist"


def _find_or_fetch(name: str) -> Path:
    for folder in (DEBIAN_DIR, _cache_dir()):
        if (folder / name).is_file():
            return folder / name
    dst = _cache_dir() / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in _URLS:
        tmp = dst.with_suffix(".part")
        try:
            urllib.request.urlretrieve(base + name, tmp)
            tmp.replace(dst)
            return dst
        except OSError as err:
            errors.append(f"{base}: {err}")
    raise RuntimeError(
        f"Fashion-MNIST file {name} is not installed and could not be downloaded "
        f"({'; '.join(errors)}). Install it with `apt-get install dataset-fashion-mnist` "
        f"(Debian/Ubuntu) or put the four .gz files in {_cache_dir()}.")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 28, 28], labels uint8 [N]) of the `train` or `test` split."""
    image_file, label_file = _FILES[split]
    return _read_idx(_find_or_fetch(image_file)), _read_idx(_find_or_fetch(label_file))
