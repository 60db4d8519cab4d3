"""The pipeline's stages: where each writes, the settings it gets, and the command it runs.

Every stage runs as the command a user would type (`site_id_balancer.py --config ...`), so a
stage can be re-run or debugged alone with the config file the runner wrote for it. The
folders between the stages are set here; everything else comes from the stage's section of
the pipeline's JSON file and from config.py.

Example:
    >>> layout = Layout("pipeline_run")
    >>> cfgs = stage_configs(PipelineConfig(in_dir="data", test_dir="test"), {}, layout, [])
    >>> command("balance", layout)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import NamedTuple

from classic_fill.config import ClassicFillConfig
from cli.flags import (ConfigError, config_from_dict, config_to_dict, read_json_object,
                       validate_config)
from config import (EXECUTOR_FIELDS, AugmentationConfig, BalancerConfig, CompareConfig,
                    PipelineConfig, TrainAllConfig)
from dataset.scan import DatasetError, scan_labelled_dir
from gap_filling.plan import plan_gap
from generators.registry import generator_class
from model_folder.folder import ModelFolder

REPO = Path(__file__).resolve().parent.parent

# stage -> (section of the pipeline JSON, settings class, how to start it)
STAGES = {
    "balance": ("balancer", BalancerConfig, ["site_id_balancer.py"]),
    "diffusion": ("diffusion", TrainAllConfig, ["train_all.py"]),
    "augment": ("augmentation", AugmentationConfig, ["diffusion_augmentation.py"]),
    "sdedit": ("sdedit", AugmentationConfig, ["diffusion_augmentation.py"]),
    "sd": ("sd", AugmentationConfig, ["diffusion_augmentation.py"]),
    "classic_fill": ("classic_fill", ClassicFillConfig, ["-m", "classic_fill"]),
    "classify": ("compare", CompareConfig, ["-m", "classifier.compare"]),
}
SECTIONS = {section: cls for section, cls, _ in STAGES.values()}

# Settings the runner owns: a section that sets them would cut the stages apart.
RUNNER_KEYS = {
    "balance": ("in_dir", "out_dir"),
    "diffusion": ("in_dir", "out_dir", "labels", "load_and_train", "model_dir", "runtime"),
    "augment": ("in_dir", "out_dir", "weight_paths", "label_models", "categories"),
    "sdedit": ("in_dir", "out_dir", "weight_paths", "label_models", "categories", "generator"),
    "sd": ("in_dir", "out_dir", "weight_paths", "label_models", "categories", "generator"),
    "classic_fill": ("in_dir", "out_dir", "categories"),
    "classify": ("train_dir", "balanced_dir", "classic_fill_dir", "test_dir", "out_dir",
                 "manifest"),
}
# Planning settings classic_fill takes from stage 3 unless its own section sets them: the
# same plan (counts per label and site) and the same seeded source order, so the classic and
# the generated images pair up.
_SHARED_WITH_AUGMENT = ("balance", "split_sites", "min_size", "seed")


class ExtraFill(NamedTuple):
    """Stage 3 run again with another generator, on the same plan, as one more arm."""
    flag: str         # the PipelineConfig switch that asks for it
    generator: str    # stage 3's --generator
    caption: str      # what the report calls its images

    @property
    def needs_models(self) -> bool:
        """Whether it samples stage 2's models (the generator says), so waits for them."""
        return generator_class(self.generator).trained_models


# stage -> its fill; the arm and its folder are named after the flag (sdedit_fill_data/)
EXTRA_FILLS = {
    "sdedit": ExtraFill("sdedit_fill", "sdedit", "SDEdit variations of real images"),
    "sd": ExtraFill("sd_fill", "sd_img2img", "Stable Diffusion 3 edits of real images"),
}


def extra_fills(pcfg: PipelineConfig) -> list[str]:
    """The extra-fill stages this run asks for."""
    return [stage for stage, fill in EXTRA_FILLS.items() if getattr(pcfg, fill.flag)]


class PipelineError(RuntimeError):
    """A stage cannot run or failed; the message says which and why."""


class Layout:
    """The folders and files of one pipeline run inside `out_dir`."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.diffusion_data = self.out_dir / "diffusion_data"   # stage 1
        self.models = self.out_dir / "models"                   # stage 2
        self.balanced_data = self.out_dir / "balanced_data"     # stage 3
        # stage 3 again with another generator (EXTRA_FILLS), e.g. sdedit_fill_data/
        self.fill_data = {stage: self.out_dir / f"{fill.flag}_data"
                          for stage, fill in EXTRA_FILLS.items()}
        self.classic_fill_data = self.out_dir / "classic_fill_data"  # stage 3's gap, classic
        self.results = self.out_dir / "results"                 # stage 4
        self.quality = self.out_dir / "quality"                 # the report's GAN-test cache
        self.configs = self.out_dir / "configs"
        self.logs = self.out_dir / "logs"
        self.state = self.out_dir / "pipeline_state.json"
        self.report = self.out_dir / "report.html"
        self.assets = self.out_dir / "report_assets"

    def stage_config(self, stage: str) -> Path:
        return self.configs / f"{stage}.json"

    def stage_output(self, stage: str) -> Path:
        return {"balance": self.diffusion_data, "diffusion": self.models,
                "augment": self.balanced_data, "classic_fill": self.classic_fill_data,
                "classify": self.results, **self.fill_data}[stage]


def read_sections(path: str | Path | None) -> dict[str, dict]:
    """The stage sections of a pipeline JSON file ({} without a file).

    Raises:
        ConfigError: not JSON, a section that is not an object, or an unknown top-level key.
    """
    if not path:
        return {}
    data = read_json_object(path)
    known = {"pipeline", *SECTIONS}
    unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
    if unknown:
        raise ConfigError(f"config file {path}: unknown section(s) {', '.join(unknown)} "
                          f"(sections: {', '.join(sorted(known))})")
    for key in SECTIONS:
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"config file {path}: {key!r} must hold a JSON object")
    return {key: data.get(key, {}) for key in SECTIONS}


def labels_to_fill(pcfg: PipelineConfig, balancer: BalancerConfig) -> tuple[list[str], list[str]]:
    """(every label of the dataset, the labels stage 3 will add synthetic images to)."""

    augment = AugmentationConfig(in_dir=pcfg.in_dir, categories=list(pcfg.categories))
    try:
        scan = scan_labelled_dir(pcfg.in_dir, None, balancer.site_regex, balancer.site_csv)
        gap = plan_gap(scan.counts(), augment.category_labels())
    except (DatasetError, ValueError) as err:
        raise ConfigError(str(err)) from None
    return list(scan.labels), [lab for lab in scan.labels if gap.label_extra(lab) > 0]


def _build(stage: str, section: dict, runner_values: dict, shared: dict):
    """A stage's config: its section, then `shared` (seed, executor) where the section is
    silent and the stage has the field, then what the runner sets."""
    name, cls, _ = STAGES[stage]
    taken = sorted(k for k in section if k in RUNNER_KEYS[stage])
    if taken:
        raise ConfigError(f"section {name!r}: {', '.join(taken)} set by the pipeline runner; "
                          f"remove them (use run_pipeline.py's own flags)")
    values = dict(section)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in shared.items():
        if key in fields:
            values.setdefault(key, value)
    values.update(runner_values)
    try:
        cfg = config_from_dict(cls, values)
        validate_config(cfg)
    except ConfigError as err:
        raise ConfigError(f"section {name!r}: {err}") from None
    return cfg


def stage_configs(pcfg: PipelineConfig, sections: dict[str, dict], layout: Layout,
                  run_dirs: list[str], diffusion_labels: list[str] | None = None) -> dict:
    """The resolved settings of every stage (validated), before any of them runs.

    Args:
        pcfg: the pipeline settings.
        sections: the stage sections (see `read_sections`).
        layout: the run's folders.
        run_dirs: stage-2 run folders (known once stage 2 has run; [] before).
        diffusion_labels: labels for stage 2 (default: `pcfg.diffusion_labels`, else every
            label for the shared conditional model, the pipeline's default, or the labels
            stage 3 fills for per-label models; none when no label needs filling).

    classic_fill plans with stage 3's site rule, balance, split_sites, min_size and seed
    unless its own section sets them, so both fills have the same counts per label and site.

    Raises:
        ConfigError: a bad value, a typo in a section, a runner-owned key set by hand.
    """
    shared = {"seed": pcfg.seed, **{k: getattr(pcfg, k) for k in EXECUTOR_FIELDS}}
    balancer = _build("balance", sections.get("balancer", {}),
                      {"in_dir": pcfg.in_dir, "out_dir": str(layout.diffusion_data)}, shared)
    diffusion = dict(sections.get("diffusion", {}))
    # One model over every label (and site): the large labels teach the framing, background
    # and texture the rare ones share, and stage 3 asks it for exact (label, site) cells.
    diffusion.setdefault("conditional", True)
    diffusion.setdefault("site_conditioning", diffusion["conditional"])
    labels = diffusion_labels or pcfg.diffusion_labels
    if not labels:
        every, fill = labels_to_fill(pcfg, balancer)
        labels = (every if fill else []) if diffusion["conditional"] else fill
    cfgs = {"balance": balancer}
    cfgs["diffusion"] = _build("diffusion", diffusion,
                               {"in_dir": str(layout.diffusion_data),
                                "out_dir": str(layout.models), "labels": labels}, shared)
    augmentation = dict(sections.get("augmentation", {}))
    if "site_regex" not in augmentation and "site_csv" not in augmentation:
        # One dataset, one site rule: stage 3 reads the sites as stage 1 did.
        augmentation.update(site_regex=balancer.site_regex, site_csv=balancer.site_csv)
    stage3 = {"in_dir": pcfg.in_dir, "weight_paths": list(run_dirs) or None,
              "categories": list(pcfg.categories)}
    cfgs["augment"] = _build("augment", augmentation,
                             {**stage3, "out_dir": str(layout.balanced_data)}, shared)
    fills = list(sections.get("compare", {}).get("fill_dirs") or [])
    for stage in extra_fills(pcfg):
        # The same plan and seed as stage 3; only the generator (and what the stage's own
        # section sets, e.g. strength) differs, so the fills pair up image by image.
        fill = EXTRA_FILLS[stage]
        own = {k: v for k, v in augmentation.items() if k != "generator"}
        cfgs[stage] = _build(stage, {**own, **sections.get(stage, {})},
                             {**stage3, "out_dir": str(layout.fill_data[stage]),
                              "generator": fill.generator}, shared)
        fills.append(f"{fill.flag}={layout.fill_data[stage]}")
    classic = dict(sections.get("classic_fill", {}))
    augment = cfgs["augment"]
    if "site_regex" not in classic and "site_csv" not in classic:
        classic.update(site_regex=augment.site_regex, site_csv=augment.site_csv)
    for key in _SHARED_WITH_AUGMENT:
        classic.setdefault(key, getattr(augment, key))
    cfgs["classic_fill"] = _build(
        "classic_fill", classic, {"in_dir": pcfg.in_dir, "out_dir": str(layout.classic_fill_data),
                                  "categories": list(pcfg.categories)}, shared)
    if pcfg.test_dir:
        cfgs["classify"] = _build("classify", sections.get("compare", {}),
                                  {"train_dir": pcfg.in_dir,
                                   "balanced_dir": str(layout.balanced_data),
                                   "classic_fill_dir": str(layout.classic_fill_data),
                                   "test_dir": pcfg.test_dir, "out_dir": str(layout.results),
                                   "fill_dirs": fills or None},
                                  shared)
    return cfgs


def fingerprint(cfg) -> str:
    """A short hash of a stage's settings: a finished stage with other settings is stale."""
    # Where the jobs run is not what they compute: a run moved to Ray resumes, and back.
    data = {k: v for k, v in config_to_dict(cfg).items()
            if not k.startswith("_") and k not in EXECUTOR_FIELDS}
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def command(stage: str, layout: Layout) -> list[str]:
    """The command line that runs `stage` with the config file the runner wrote for it."""
    start = STAGES[stage][2]
    if not start[0].startswith("-"):
        start = [str(REPO / start[0])]
    return [sys.executable, *start, "--config", str(layout.stage_config(stage))]


def outputs_present(stage: str, layout: Layout, run_dirs: list[str]) -> bool:
    """Whether a finished stage's outputs are still there (someone may have deleted them)."""
    if stage == "balance":
        return (layout.diffusion_data / "manifest.csv").is_file()
    if stage == "diffusion":
        return all(ModelFolder(d, "diffusion").has_weights() for d in run_dirs)
    if stage == "augment" or stage in EXTRA_FILLS:
        return (layout.stage_output(stage) / "manifest.csv").is_file()
    if stage == "classic_fill":
        return (layout.classic_fill_data / "manifest.csv").is_file()
    if stage == "classify":
        return (layout.results / "summary.csv").is_file()
    return False
