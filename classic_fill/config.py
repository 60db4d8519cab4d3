"""Settings of `python3 -m classic_fill` (defaults a user edits; flags override them).

The planning fields are stage 3's own (`GapPlanConfig`, validated once for both), and
`as_augmentation()` hands them to stage 3's planner, so the classic arm and the diffusion arm
fill the same gap at the same counts.

Example:
    >>> from cli.flags import parse_config
    >>> cfg, ns = parse_config(ClassicFillConfig, ["--in_dir", "photos", "--preset", "micro"])
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from cli.flags import ConfigError, opt
from config import AugmentationConfig, GapPlanConfig

PRESET_NAMES = ("light", "upright", "micro")
DEFAULT_PRESET = "upright"


@dataclass
class ClassicFillConfig(GapPlanConfig):
    """classic_fill: close stage 3's gap with classic augmentations of real images."""

    out_dir: str = opt("classic_fill_data", "Output folder: originals + augmented images "
                       "(created; never inside in_dir).")
    preset: str | None = opt(None, "Named albumentations pipeline: upright (horizontal flips "
                             "only, small shift/scale/rotate, brightness/contrast; photos with "
                             "an up), light (both flips, small shift/scale/rotate, "
                             "brightness/contrast), micro (any rotation, both flips, zoom, "
                             "brightness/contrast; microscopy). Default: upright unless "
                             "--pipeline is given.", choices=PRESET_NAMES)
    pipeline: str | None = opt(None, "An albumentations pipeline file as A.save writes it "
                               "(.json, or .yaml/.yml), used instead of a preset. "
                               "Default: none.")
    workers: int | None = opt(None, "Worker threads (default: all cores; 1 = this thread).",
                              min=1)

    def pipeline_label(self) -> str:
        """The preset name, or `file:<name>` of the pipeline file, for the manifest."""
        if self.pipeline:
            return f"file:{Path(self.pipeline).name}"
        return self.preset or DEFAULT_PRESET

    def as_augmentation(self) -> AugmentationConfig:
        """Stage 3's settings with the same input, categories, balance and site rule."""
        return AugmentationConfig(**{f.name: getattr(self, f.name) for f in fields(GapPlanConfig)})

    def validate(self) -> None:
        if self.preset and self.pipeline:
            raise ConfigError("give either --preset or --pipeline, not both")
