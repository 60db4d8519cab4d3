"""Feature spaces for the memorisation audit: how images are loaded and embedded.

Three spaces:
    pixel_space(size)            the pixels themselves at a small size, each image's mean
                                 and contrast taken out: a copy (brighter, darker or blurred
                                 a little) stays close, a different photo of the same kind
                                 does not. The copy detector that needs no weights.
    kid_space(kind)              the KID extractor of `diffusion.kid` (InceptionV3 pooled
                                 features, or the fixed random conv net offline), on images
                                 resized to its input size, in [0, 1].
    classifier_space(run_dir)    a trained classifier's penultimate layer (the input of its
                                 `logits` layer), on images prepared exactly as the classifier
                                 saw them in training (size, centre crop, grey).

Images are decoded with `classifier.data.load_images`: any file the project reads (grey
1-channel PNG, RGBA, 16-bit, EXIF-rotated) becomes 3-channel RGB, grey by repeating the
channel, so grey datasets need nothing special. Unreadable files are returned as skips.

Example:
    >>> space = kid_space("random")
    >>> feats, ok, errors = space.features(["a.png", "b.png"])
    >>> feats.shape
    (2, 256)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from classifier.data import load_images
from classifier.head import penultimate_model
from classifier.runs import load_run
from diffusion.kid import build_feature_extractor


@dataclass
class FeatureSpace:
    """Images -> feature vectors.

    Args:
        name: short name used in tables ("pixels32", "kid_random", "kid_inception",
            "classifier").
        image_size: square side the images are resized (shorter side) and centre-cropped to.
        grayscale: convert to grey first (kept as 3 equal channels).
        embed: uint8 images (N, S, S, 3) -> float features (N, d).
    """
    name: str
    image_size: int
    grayscale: bool
    embed: Callable[[np.ndarray], np.ndarray]

    def load(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[int], list[str]]:
        """(uint8 images, indices of the paths that loaded, one message per unreadable file)."""
        return load_images([str(p) for p in paths], self.image_size, self.grayscale, desc=None)

    def features(self, paths: Sequence[str | Path]
                 ) -> tuple[np.ndarray, list[int], list[str]]:
        """(features of the readable images, their indices into `paths`, skip messages)."""
        images, ok, errors = self.load(paths)
        return self._embed(images), ok, errors

    def features_and_mirrored(self, paths: Sequence[str | Path]
                              ) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
        """As `features`, plus the features of the same images flipped left to right (each
        file decoded once)."""
        images, ok, errors = self.load(paths)
        return (self._embed(images), self._embed(np.ascontiguousarray(images[:, :, ::-1])),
                ok, errors)

    def _embed(self, images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(self.embed(images), dtype=np.float32)


def pixel_space(size: int = 32) -> FeatureSpace:
    """The pixels at `size` x `size`, each image standardised (its mean taken out, scaled to
    unit length): cosine distance is then 1 - the images' correlation. Every audit takes the
    default 32 px, the size the generators here make (a copy made larger is still a copy at
    32 px).

    Measured on custom_coco (docs/benchmarks.md, "The memorisation audit"): the random conv
    net that stands in for InceptionV3 offline paired dark motorcycles with one dark car
    photo, while here SDEdit's variations sit a third to a half of the threshold from the
    very photo they vary, and samples from noise no closer than real test photos come.

    Example:
        >>> pixel_space(32).name
        'pixels32'
    """
    def embed(images: np.ndarray) -> np.ndarray:
        x = images.astype(np.float32).reshape(len(images), -1)
        x -= x.mean(axis=1, keepdims=True)
        # a flat image has no contrast to compare: it stays a zero vector (distance 1)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return FeatureSpace(f"pixels{size}", int(size), False, embed)


AUDIT_SPACES = ("pixels", "auto", "inception", "random")


def audit_space(name: str) -> FeatureSpace:
    """The feature space stage 3's memorisation audit is asked for by name: "pixels"
    (`pixel_space`, 32 px) or a KID extractor ("auto", "inception", "random")."""
    if name not in AUDIT_SPACES:
        raise ValueError(f"audit space must be one of {AUDIT_SPACES}, got {name!r}")
    return pixel_space() if name == "pixels" else kid_space(name)


def kid_space(kind: str = "auto") -> FeatureSpace:
    """The KID feature extractor of `diffusion.kid` as a feature space.

    Args:
        kind: "auto" (InceptionV3 when its ImageNet weights can be had, else the random
            net, with one printed line), "inception" or "random".

    Example:
        >>> kid_space("random").name
        'kid_random'
    """
    extractor = build_feature_extractor(kind)

    def embed(images: np.ndarray) -> np.ndarray:
        return extractor(images.astype(np.float32) / 255.0)
    return FeatureSpace(f"kid_{extractor.kind}", int(extractor.input_size[0]), False, embed)


def classifier_space(run_dir: str | Path, batch_size: int = 64) -> FeatureSpace:
    """A trained classifier's penultimate layer as a feature space.

    Args:
        run_dir: a classifier run folder (config.json + best.weights.h5), as written by
            `classifier.training.train_run`, or a weights/.keras file inside one.
        batch_size: images per prediction step.

    Raises:
        DatasetError: not a classifier run (see `classifier.runs.load_run`).

    Example:
        >>> space = classifier_space("classifier_runs/small_cnn_20260101-120000_ab12")
    """
    model, cfg, _ = load_run(run_dir)
    features = penultimate_model(model)

    def embed(images: np.ndarray) -> np.ndarray:
        # The classifier takes pixels in [0, 255] (its own preprocessing is inside it).
        return np.asarray(features.predict(images.astype(np.float32), batch_size=batch_size,
                                           verbose=0), dtype=np.float32)
    return FeatureSpace("classifier", int(cfg.input_shape), bool(cfg.grayscale), embed)
