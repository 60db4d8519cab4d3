"""Defaults of every stage. Edit the values here; flags on the command line override them.

Each stage reads one dataclass below; its command-line flags are generated from the fields
(`python3 site_id_balancer.py --help` lists them with these defaults and ranges), a JSON file
given with `--config` overrides the defaults, and the resolved settings are written as
`config.json` next to every output.
"""
from __future__ import annotations

from dataclasses import dataclass

from cli.flags import ConfigError, opt


@dataclass
class BalancerConfig:
    """Stage 1 (site_id_balancer.py): equalise the sites of every label with rotations + flips."""

    in_dir: str = opt("", "Dataset folder with one sub-folder per label.", required=True)
    out_dir: str = opt("diffusion_data", "Output folder (created; never overwritten).")
    labels: list[str] | None = opt(None, "Label folders to balance (default: all of them).")
    theta: float = opt(5.0, "Rotation step in degrees: augmentations rotate by theta, "
                       "2*theta, ... multiplier*theta.", min=0.1, max=45.0)
    multiplier: int = opt(6, "Number of rotation steps; each is used plain and flipped, so "
                          "one image yields up to 2*multiplier augmentations.", min=1, max=90)
    fact: float | None = opt(None, "Zoom after rotation. Default: computed per image from the "
                             "angle and aspect ratio, the least zoom that leaves no black "
                             "corner (the reference fixed it at 1.3).", min=1.0, max=10.0)
    seed: int = opt(42, "Seed of the plan (which images of a site are augmented first).",
                    min=0)
    site_regex: str | None = opt(None, "Regex searched in each file name; its group 'site' "
                                 "(or group 1) is the site_id. Default: the prefix before "
                                 "the first '_'.")
    site_csv: str | None = opt(None, "CSV with columns path,site_id (path relative to "
                               "in_dir); overrides the file-name rule.")
    min_size: int = opt(16, "Images whose shorter side is smaller are skipped (listed).",
                        min=2)
    workers: int | None = opt(None, "Worker processes (default: all cores).", min=1)
    jpeg_quality: int = opt(95, "JPEG quality of augmented images from JPEG sources "
                            "(other sources are written as lossless PNG).", min=50, max=100)
    link_originals: bool = opt(False, "Hard-link the originals into out_dir instead of "
                               "copying them (saves disk, but editing a linked file in "
                               "out_dir then edits your original).")

    def validate(self) -> None:
        if self.theta * self.multiplier > 45.0 + 1e-9:
            raise ConfigError(f"theta*multiplier must be <= 45 degrees (got "
                              f"{self.theta:g}*{self.multiplier} = "
                              f"{self.theta * self.multiplier:g}): larger rotations crop "
                              f"away most of the image")
        if self.site_regex and self.site_csv:
            raise ConfigError("give either --site_regex or --site_csv, not both")
