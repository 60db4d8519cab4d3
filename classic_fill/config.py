"""Settings of `python3 -m classic_fill` (defaults a user edits; flags override them).

The planning fields mean exactly what they mean for stage 3 (`AugmentationConfig`), and
`as_augmentation()` hands them to stage 3's own validation, so the classic arm and the
diffusion arm fill the same gap at the same counts.

Example:
    >>> from cli.flags import parse_config
    >>> cfg, ns = parse_config(ClassicFillConfig, ["--in_dir", "photos", "--preset", "micro"])
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.flags import ConfigError, opt
from config import AugmentationConfig

PRESET_NAMES = ("light", "upright", "micro")
DEFAULT_PRESET = "upright"

# Fields that mean the same as AugmentationConfig's (copied over for stage 3's validation).
SHARED_FIELDS = ("in_dir", "out_dir", "categories", "balance", "split_sites", "seed",
                 "site_regex", "site_csv", "min_size", "link_originals")


@dataclass
class ClassicFillConfig:
    """classic_fill: close stage 3's gap with classic augmentations of real images."""

    in_dir: str = opt("", "The original dataset (one sub-folder per label).", required=True)
    out_dir: str = opt("classic_fill_data", "Output folder: originals + augmented images "
                       "(created; never inside in_dir).")
    categories: list[str] = opt(["1,2,3", "4,5,6"], "As for diffusion_augmentation.py: groups "
                                "of labels, each written as comma-separated labels; every "
                                "category is filled up to the largest one.")
    balance: str = opt("categories", "What to equalise: category totals, or every label.",
                       choices=("categories", "labels"))
    split_sites: bool = opt(True, "Give a label's new images to its rarest sites first; each "
                            "is an augmentation of a real image of that site.")
    preset: str | None = opt(None, "Named albumentations pipeline: upright (horizontal flips "
                             "only, small shift/scale/rotate, brightness/contrast; photos with "
                             "an up), light (both flips, small shift/scale/rotate, "
                             "brightness/contrast), micro (any rotation, both flips, zoom, "
                             "brightness/contrast; microscopy). Default: upright unless "
                             "--pipeline is given.", choices=PRESET_NAMES)
    pipeline: str | None = opt(None, "An albumentations pipeline file as A.save writes it "
                               "(.json, or .yaml/.yml), used instead of a preset. "
                               "Default: none.")
    seed: int = opt(42, "Seed of the augmentations: image k of a label always gets the same "
                    "seed, so it can be made alone.", min=0)
    site_regex: str | None = opt(None, "As for site_id_balancer.py.")
    site_csv: str | None = opt(None, "As for site_id_balancer.py.")
    min_size: int = opt(16, "Originals whose shorter side is smaller are skipped (listed).",
                        min=2)
    link_originals: bool = opt(False, "Hard-link originals instead of copying them.")
    workers: int | None = opt(None, "Worker processes (default: all cores; 1 = this process).",
                              min=1)

    def pipeline_label(self) -> str:
        """The preset name, or `file:<name>` of the pipeline file, for the manifest."""
        if self.pipeline:
            return f"file:{Path(self.pipeline).name}"
        return self.preset or DEFAULT_PRESET

    def as_augmentation(self) -> AugmentationConfig:
        """Stage 3's settings with the same input, categories, balance and site rule."""
        return AugmentationConfig(**{name: getattr(self, name) for name in SHARED_FIELDS})

    def category_labels(self) -> list[list[str]]:
        """`categories` parsed into lists of label names (stage 3's parsing)."""
        return self.as_augmentation().category_labels()

    def validate(self) -> None:
        if self.preset and self.pipeline:
            raise ConfigError("give either --preset or --pipeline, not both")
        self.as_augmentation().validate()
