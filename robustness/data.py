"""The images a robustness run works on, decoded once and resized to the model's input.

`--images` is a folder with one sub-folder per label (`images/<label>/...`, nested folders
allowed) or a folder of images without labels. Every image is loaded with
`dataset.images.load_rgb` (EXIF orientation, grayscale/RGBA/16-bit handled) and brought to
the working size the way the stage-4 classifier does (shorter side to the size, centre
crop), so the search probes what the model sees. Unreadable files are skipped and listed.

Example:
    >>> image_set = load_image_set("photos", size=(96, 96), max_images=200, seed=0)
    >>> image_set.images.shape, image_set.labels[:3]
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.data import load_images, resize_square
from dataset.images import ImageLoadError, is_image_name, load_rgb
from dataset.scan import DatasetError, natural_key, scan_labelled_dir, site_from_name

UNLABELLED = "unlabelled"


@dataclass
class ImageSet:
    """Decoded images and where they came from.

    images: uint8 (N, H, W, 3), RGB.
    paths: absolute source paths.
    labels: label folder of each image (UNLABELLED for a folder without label folders).
    sites: site id of each image (the file name's prefix before the first `_`).
    labelled: whether the folder had label folders.
    skipped: (relative path, reason) for every file left out.
    """

    root: Path
    images: np.ndarray
    paths: list[Path]
    labels: list[str]
    sites: list[str]
    labelled: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        """sha256 of the pixels and their order: what the probes depend on."""
        return hashlib.sha256(str(self.images.shape).encode()
                              + np.ascontiguousarray(self.images).tobytes()).hexdigest()


def list_images(folder: str | Path) -> tuple[list[tuple[Path, str, str]], bool,
                                              list[tuple[str, str]]]:
    """(path, label, site) of every image below `folder`, whether it had label folders, and
    the files skipped by name.

    Raises:
        DatasetError: the folder is missing or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DatasetError(f"--images {folder} does not exist")
    if not folder.is_dir():
        raise DatasetError(f"--images {folder} is not a folder")
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    loose = sorted((p for p in folder.iterdir() if p.is_file() and is_image_name(p)),
                   key=lambda p: natural_key(p.name))
    if not subdirs:
        if not loose:
            raise DatasetError(f"no images found in {folder} (extensions: jpg, jpeg, png, "
                               f"bmp, tif, webp)")
        return [(p.resolve(), UNLABELLED, site_from_name(p.name)) for p in loose], False, []
    # Any file name is a valid site here; the default rule only sets the recorded site_id.
    scan = scan_labelled_dir(folder, site_regex=r"(?P<site>.+)")
    records = [(r.path.resolve(), r.label, site_from_name(r.path.name)) for r in scan.images]
    skipped = list(scan.skipped) + [(p.name, "outside the label folders") for p in loose]
    return records, True, skipped


def load_fitted(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """An image file as the classifier sees it: decoded (big JPEGs at reduced scale, as
    `classifier.data` does) and brought to `size` by `fit_image`."""
    return fit_image(load_rgb(path, min_side=max(size)), size)


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scales the shorter side to fit (height, width) and centre-crops, as the classifier
    does (`classifier.data.resize_square` for square sizes)."""
    h, w = size
    if h == w:
        return resize_square(image, h)
    ih, iw = image.shape[:2]
    scale = max(h / ih, w / iw)
    nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
    pil = Image.fromarray(image).resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.asarray(pil.crop((left, top, left + w, top + h)), dtype=np.uint8)


def subsample(labels: list[str], max_images: int | None, seed: int) -> list[int]:
    """Indices of at most `max_images` items, labels kept in proportion (seeded), in
    their original order."""
    n = len(labels)
    if not max_images or max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_label.setdefault(lab, []).append(i)
    # Largest remainder: every label gets its share, rounded so the total is exact.
    quota = {lab: len(idx) * max_images / n for lab, idx in by_label.items()}
    take = {lab: int(q) for lab, q in quota.items()}
    rest = max_images - sum(take.values())
    for lab in sorted(quota, key=lambda k: quota[k] - take[k], reverse=True)[:rest]:
        take[lab] += 1
    chosen = [i for lab, idx in by_label.items()
              for i in rng.permutation(idx)[:take[lab]]]
    return sorted(int(i) for i in chosen)


def load_image_set(folder: str | Path, size: tuple[int, int], max_images: int | None = None,
                   seed: int = 0) -> ImageSet:
    """Loads (a seeded, label-stratified subset of) the images of `folder` at `size`.

    Raises:
        DatasetError: no images, or none readable.
    """
    records, labelled, skipped = list_images(folder)
    keep = subsample([r[1] for r in records], max_images, seed)
    records = [records[i] for i in keep]
    images, good = [], []
    if size[0] == size[1]:
        # The classifier's loader: the same resize, in parallel for large sets.
        arr, ok, errors = load_images([str(r[0]) for r in records], size[0], desc=None)
        images, good = list(arr), [records[i] for i in ok]
        skipped += [(e.split(": ", 1)[0], e.split(": ", 1)[-1]) for e in errors]
    else:
        for path, label, site in records:
            try:
                images.append(load_fitted(path, size))
                good.append((path, label, site))
            except ImageLoadError as err:
                skipped.append((str(path), str(err).replace(f"{path}: ", "")))
    if not good:
        raise DatasetError(f"none of the {len(records)} image files in {folder} could be "
                           f"read; first problem: {skipped[-1][0]}: {skipped[-1][1]}")
    return ImageSet(Path(folder).resolve(), np.stack(images), [g[0] for g in good],
                    [g[1] for g in good], [g[2] for g in good], labelled, skipped)


def truth_indices(image_set: ImageSet, class_names: list[str] | None) -> np.ndarray | None:
    """Class index of every image when the model's classes name the label folders, else
    None (top-1 errors against the ground truth are then not available)."""
    if not image_set.labelled or not class_names:
        return None
    index = {c: i for i, c in enumerate(class_names)}
    if any(lab not in index for lab in image_set.labels):
        return None
    return np.array([index[lab] for lab in image_set.labels], dtype=np.int64)
