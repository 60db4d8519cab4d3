"""Which real image each classic-fill image augments (pure: records and counts in, list out).

The counts come from stage 3's planner (`gap_filling.plan.plan_gap`): label -> site -> number
of new images. The sources follow stage 3's sdedit rule (`gap_filling.run`): each new image
of a (label, site) cell starts from a real image of that label and site (a cell without
images of its own, such as the pseudo-site "synthetic" when sites are not split, draws on all
of the label's images); the cell's images are put in a seeded order and taken in turn, so
every source is used once before any is used twice. With the same settings, image k of a
label therefore augments the very image that stage 3's sdedit image k varies: the two arms
are paired image by image.

Example:
    >>> images = plan_images(scan.by_label(), gap.extra, seed=42, tag="a1b2c3")
    >>> images[0].name, images[0].source.relpath
    ('1/S2_classic_00000_a1b2c3.png', '1/S2_0003.jpg')
"""
from __future__ import annotations

from dataclasses import dataclass

from classic_fill.replay import image_seed
from dataset.scan import ImageRecord
from gap_filling.plan import source_order


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


def plan_images(by_label: dict[str, list[ImageRecord]], extra: dict[str, dict[str, int]],
                seed: int, tag: str) -> list[ClassicImage]:
    """Every image to make, in a fixed order: labels, then sites as the gap plan lists them.

    Args:
        by_label: the real images of each label (`ScanResult.by_label()`).
        extra: new images per label and site (`GapPlan.extra`).
        seed: the run's seed.
        tag: short hash of the pipeline and seed, in every name (another pipeline never
            takes over these names).

    Raises:
        ValueError: a label asks for images but has no real image to augment.
    """
    out = []
    for label, sites in extra.items():
        k = 0
        for site, count in sites.items():
            if count <= 0:
                continue
            if not by_label.get(label):
                raise ValueError(f"label {label!r} needs {count} image(s) but has no real "
                                 f"image to augment")
            order = source_order(by_label[label], seed, label, site)
            for j in range(count):
                out.append(ClassicImage(f"{label}/{site}_classic_{k:05d}_{tag}.png", label,
                                        site, k, image_seed(seed, label, k),
                                        order[j % len(order)]))
                k += 1
    return out
