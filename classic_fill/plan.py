"""Which real image each classic-fill image augments (pure: records and counts in, list out).

The counts come from stage 3's planner (`gap_filling.plan.plan_gap`): label -> site -> number
of new images. Each new image of a (label, site) cell augments a real image of the same label
and site (with `split_sites` off, the pseudo-site "synthetic" draws on all of the label's
images). The cell's sources are put in a seeded order and taken in turn, so every source is
used once before any is used twice, and which ones go first does not follow the file names.

Example:
    >>> images = plan_images(scan.by_label(), gap.extra, seed=42, tag="a1b2c3")
    >>> images[0].name, images[0].source.relpath
    ('1/S2_classic_00000_a1b2c3.png', '1/S2_0003.jpg')
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from classic_fill.replay import image_seed
from dataset.scan import ImageRecord

@dataclass(frozen=True)
class ClassicImage:
    """One planned image: number `index` of `label`, credited to `site_id`, made from
    `source` with augmentation seed `seed`."""
    name: str
    label: str
    site_id: str
    index: int
    seed: int
    source: ImageRecord


def source_order(records: Sequence[ImageRecord], seed: int, label: str,
                 site: str) -> list[ImageRecord]:
    """The cell's source images in the seeded order they are taken in (stable across runs)."""
    key = [seed, zlib.crc32(label.encode("utf-8")), zlib.crc32(site.encode("utf-8"))]
    order = np.random.default_rng(np.random.SeedSequence(key)).permutation(len(records))
    return [records[i] for i in order]


def plan_images(by_label: dict[str, list[ImageRecord]], extra: dict[str, dict[str, int]],
                seed: int, tag: str, split_sites: bool = True) -> list[ClassicImage]:
    """Every image to make, in a fixed order: labels, then sites as the gap plan lists them.

    Args:
        by_label: the real images of each label (`ScanResult.by_label()`).
        extra: new images per label and site (`GapPlan.extra`).
        seed: the run's seed.
        tag: short hash of the pipeline and seed, in every name (another pipeline never
            takes over these names).
        split_sites: as given to `plan_gap`; False: the label's one pseudo-site draws on
            all of its images.

    Raises:
        ValueError: a cell asks for images but has no real image to augment.
    """
    out = []
    for label, sites in extra.items():
        k = 0
        for site, count in sites.items():
            if count <= 0:
                continue
            pool = [r for r in by_label.get(label, [])
                    if not split_sites or r.site_id == site]
            if not pool:
                raise ValueError(f"label {label!r} site {site!r} needs {count} image(s) but "
                                 f"has no real image to augment")
            order = source_order(pool, seed, label, site)
            for j in range(count):
                out.append(ClassicImage(f"{label}/{site}_classic_{k:05d}_{tag}.png", label,
                                        site, k, image_seed(seed, label, k),
                                        order[j % len(order)]))
                k += 1
    return out
