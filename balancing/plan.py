"""The exact, deterministic site-balancing plan (pure: counts in, assignments out).

Every site of a label is filled up to the size of the label's largest site. The extra
images are distinct augmentations (theta, 2*theta, ... multiplier*theta, each plain and
flipped, mildest first) taken round-robin over the site's images in a seeded order, so
each image is augmented at most once more than any other. When a site runs out of distinct
augmentations the shortfall is recorded, not hidden.

Example:
    >>> plans = plan_label({"S1": 10, "S2": 3}, augmentation_ladder(5, 6), seed=42, label="1")
    >>> plans["S2"].n_planned, plans["S2"].shortfall
    (7, 0)
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """One geometric augmentation: rotate by `theta` degrees, mirrored first if `flip`."""
    theta: float
    flip: bool

    @property
    def tag(self) -> str:
        """Short file-name tag, e.g. `r10f` (10 degrees, flipped) or `r7p5`."""
        return f"r{self.theta:g}".replace(".", "p") + ("f" if self.flip else "")


def augmentation_ladder(theta: float, multiplier: int) -> list[Augmentation]:
    """theta, theta flipped, 2*theta, 2*theta flipped, ... up to multiplier*theta."""
    return [Augmentation(round(theta * k, 6), flip)
            for k in range(1, multiplier + 1) for flip in (False, True)]


@dataclass
class SitePlan:
    """What one site of one label gets."""
    label: str
    site_id: str
    n_images: int
    target: int
    # (index of the source image within the site, index into the augmentation ladder)
    assignments: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_planned(self) -> int:
        return len(self.assignments)

    @property
    def n_after(self) -> int:
        return self.n_images + self.n_planned

    @property
    def shortfall(self) -> int:
        return self.target - self.n_after


def _site_rng(seed: int, label: str, site_id: str) -> np.random.Generator:
    # crc32 rather than hash(): stable across processes and Python versions.
    return np.random.default_rng([seed, zlib.crc32(label.encode()), zlib.crc32(site_id.encode())])


def plan_site(n_images: int, target: int, n_augmentations: int,
              rng: np.random.Generator) -> list[tuple[int, int]]:
    """Assigns `target - n_images` augmentations round-robin over a site's images.

    Pass j of the round-robin gives every image (in a seeded order) augmentation j, so the
    mildest augmentations are used first and no image gets two more than another.

    Returns:
        (image index, augmentation index) pairs, at most n_images * n_augmentations.
    """
    needed = max(0, target - n_images)
    take = min(needed, n_images * n_augmentations)
    order = rng.permutation(n_images) if n_images else np.zeros(0, int)
    return [(int(order[j % n_images]), j // n_images) for j in range(take)]


def plan_label(site_counts: dict[str, int], ladder: list[Augmentation], seed: int,
               label: str) -> dict[str, SitePlan]:
    """Plans every site of one label up to the largest site's count.

    Args:
        site_counts: usable images per site.
        ladder: the distinct augmentations available per image.
        seed: the run's seed; each (label, site) gets its own stream from it, so adding a
            site never changes the plan of another.
    """
    target = max(site_counts.values(), default=0)
    return {site: SitePlan(label, site, n, target,
                           plan_site(n, target, len(ladder), _site_rng(seed, label, site)))
            for site, n in site_counts.items()}


def largest_remainder(weights: "np.ndarray | list[float]", total: int) -> list[int]:
    """Splits `total` in proportion to `weights` into integers that sum exactly to `total`.

    Each part gets the floor of its share; the leftover units go to the largest fractional
    remainders (ties to the earlier part), so the split is exact and deterministic.

    Example:
        >>> largest_remainder([0.5, 0.25, 0.25], 7)
        [3, 2, 2]
    """
    w = np.asarray(weights, dtype=np.float64)
    if total < 0 or (w < 0).any() or (total > 0 and w.sum() <= 0):
        raise ValueError(f"cannot split {total} by weights {w.tolist()}")
    if total == 0:
        return [0] * len(w)
    shares = w / w.sum() * total
    counts = np.floor(shares + 1e-9).astype(int)
    for i in np.argsort(-(shares - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()
