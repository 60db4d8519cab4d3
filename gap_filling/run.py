"""Stage 3 pipeline: scan the originals, plan the gap, generate with the trained models.

The plan (and the label -> model mapping, with its errors) is complete before any work, so
`--dry-run` shows exactly what a run would write. Synthetic image k of a label always gets the
same noise (seed derived from `--seed` and the label) and the same file name, so a re-run
skips what exists and an interrupted run resumes; each model is loaded once and samples in
batches. A site-conditioned model generates each image for the (label, site) cell the plan
credits it to; `--generator sdedit` makes each image a variation of a real image of its cell,
and `--generator sd_img2img` an edit of it by Stable Diffusion 3 with a class prompt
(DA-Fusion), optionally with DIAGen's noise on the encoded prompt. `--generator` names a
generator of `generators.registry`; this module plans, writes and audits, and never asks
which one it is beyond what the generator says of itself (sources, prompts, run folders).

Example:
    >>> plan = plan_gap_fill(AugmentationConfig(in_dir="data", weight_paths=["models/1_..."]))
    >>> print(format_gap_plan(plan))
    >>> run_gap_fill(plan)
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from classifier.report import write_csv
from cli.flags import ConfigError, save_config_json
from cli.tables import format_table
from config import AugmentationConfig
from dataset.atomic import atomic_path, atomic_write_text
from dataset.copying import copy_missing_originals, original_names, short_hash
from dataset.generated import record_generated, save_generated
from dataset.manifest import ManifestRow, write_manifest
from dataset.out_dir import CONFIG_NAME, check_out_dir, remove_stale_temp_files, saved_config
from dataset.resume import resume_keys
from dataset.scan import DatasetError, ScanResult, scan_labelled_dir, validate_images
from gap_filling.contact_sheet import write_contact_sheet
from gap_filling.plan import GapPlan, plan_gap, source_order
from generators.base import Generator, Request, Settings
from generators.model_refs import ModelRef, model_id, resolve_label_models
from generators.registry import generator_class, load_generator
from pretrained.prompts import check_classes, format_template, load_prompts, prompt_for, \
    prompts_of
from pretrained.sd3 import check_preset_folder
from quality.audit import audit_synthetic, closest_pairs_sheet, summarise
from quality.features import audit_space

# Settings that change what is written: a folder made with other values is not resumed.
# Left out: where the inputs and outputs are, and how the work is batched or shown.
_RESUME_KEYS = resume_keys(AugmentationConfig, exclude=(
    "in_dir", "out_dir", "link_originals", "batch_size", "sheet_size"))
SD_FALLBACK = (", or use --generator sdedit, which varies the real images with your own DDIM "
               "model offline")


@dataclass(frozen=True)
class SyntheticImage:
    """One planned synthetic image: image `index` of `label`, credited to `site_id`; with
    sdedit / sd_img2img, `source` is the real image (relative to in_dir) it varies, and with
    sd_img2img `prompt` the text it follows."""
    name: str
    label: str
    site_id: str
    index: int
    seed: int
    source: str | None = None
    prompt: str | None = None
    replaces: str | None = None     # the flagged image this one stands in for

    def renamed(self, index: int) -> str:
        """This image's name with another index (the name ends `_<index>_<settings tag>`)."""
        head, _, tag = self.name.rsplit("_", 2)
        return f"{head}_{index:05d}_{tag}"

    @property
    def image_seed(self) -> int:
        """This image's own seed (sdedit, sd_img2img), so it can be regenerated alone."""
        return (self.seed + self.index) % 2**63


@dataclass
class GapFillPlan:
    cfg: AugmentationConfig
    scan: ScanResult
    gap: GapPlan
    models: dict[str, ModelRef]
    originals: dict[str, str]            # source relpath -> output name
    synthetic: list[SyntheticImage]


@dataclass
class GapFillResult:
    generated: int = 0
    reused: int = 0
    copied: int = 0
    rejected: list[str] = field(default_factory=list)   # names moved to rejected/
    replacements: int = 0                                # fresh images made for them
    sheets: list[Path] = field(default_factory=list)


def label_seed(seed: int, label: str) -> int:
    """The seed of a label's images: distinct per label, stable across runs and machines."""
    return seed * 2**32 + zlib.crc32(label.encode("utf-8"))


def _prompt_table(cfg: AugmentationConfig, labels: list[str]) -> dict[str, list[str]] | None:
    """sd_img2img's prompts from --prompt_file (every label must have one), else None (the
    template); checked before any work.

    Raises:
        ConfigError: a missing or unusable prompt file, a label without a prompt, or a
            template with an unknown field.
    """
    if not cfg.prompt_file:
        format_template(cfg.prompt_template, "label", "site")
        return None
    table = load_prompts(cfg.prompt_file)
    check_classes(table, labels, cfg.prompt_file)
    return table


def sampling_settings(cfg: AugmentationConfig) -> Settings:
    """How stage 3's generator samples, from its flags."""
    return Settings(steps=cfg.generate_diffusion_steps, eta=cfg.eta,
                    guidance_scale=cfg.guidance_scale, guidance_rescale=cfg.guidance_rescale,
                    guidance_max_noise=cfg.guidance_max_noise, batch_size=cfg.batch_size,
                    strength=cfg.strength, weights=cfg.sample_weights,
                    prompt_noise_std=cfg.prompt_noise_std, sd_image_size=cfg.sd_image_size,
                    sd_dtype=cfg.sd_dtype, fallback=SD_FALLBACK)


def _synthetic_images(cfg: AugmentationConfig, gap: GapPlan, models: dict[str, ModelRef],
                      scan: ScanResult) -> list[SyntheticImage]:
    out = []
    kind = generator_class(cfg.generator)
    edits, prompted = kind.varies_sources, kind.follows_prompts
    table = _prompt_table(cfg, list(models)) if prompted else None
    for label, sites in gap.extra.items():
        if label not in models:
            continue
        seed = label_seed(cfg.seed, label)
        settings = f"|{cfg.generator}|{cfg.strength}" if edits else ""
        if prompted:  # the label's prompts are part of its images' names
            prompts = prompts_of(table, label) if table else [cfg.prompt_template]
            settings += (f"|{cfg.sd_image_size}|{cfg.sd_dtype}|{cfg.prompt_noise_std}|"
                         + "\n".join(prompts))
        tag = short_hash(f"{model_id(models[label])}|{seed}|"
                         f"{cfg.generate_diffusion_steps}|{cfg.eta}|{cfg.guidance_scale}"
                         f"{settings}")
        k = 0
        for site, count in sites.items():
            pool = (source_order([r for r in scan.images if r.label == label], cfg.seed,
                                 label, site) if edits and count else [])
            for j in range(count):
                source = pool[j % len(pool)].relpath if pool else None
                prompt = None
                if prompted:
                    prompt = (prompt_for(table, label, k) if table
                              else format_template(cfg.prompt_template, label, site))
                out.append(SyntheticImage(f"{label}/{site}_{cfg.generator}_{k:05d}_{tag}.png",
                                          label, site, k, seed, source, prompt))
                k += 1
    return out


def plan_gap_fill(cfg: AugmentationConfig, progress: bool = True, pool=None) -> GapFillPlan:
    """Scans the originals, plans the synthetic images and maps labels to models.
    Reads only; writes nothing.

    Raises:
        DatasetError: unusable input folder.
        ConfigError: categories or models that do not fit the data.
    """
    kind = generator_class(cfg.generator)
    if not kind.trained_models:  # a pretrained preset: a missing folder is known now
        check_preset_folder(cfg.sd_preset, SD_FALLBACK)
    if kind.follows_prompts:  # known before the images are read
        _prompt_table(cfg, [])
    scan = scan_labelled_dir(cfg.in_dir, None, cfg.site_regex, cfg.site_csv)
    scan = validate_images(scan, min_size=cfg.min_size, progress=progress, pool=pool)
    try:
        gap = plan_gap(scan.counts(), cfg.category_labels(), cfg.balance, cfg.split_sites)
    except ValueError as err:
        raise ConfigError(f"--categories: {err}") from None
    needed = [lab for lab in gap.extra if gap.label_extra(lab) > 0]
    if not kind.trained_models:  # one pretrained model for every label
        models = {lab: ModelRef(cfg.sd_preset, None) for lab in needed}
    else:
        models = resolve_label_models(cfg, needed)
    names = original_names(scan.images)
    return GapFillPlan(cfg, scan, gap, models, names,
                       _synthetic_images(cfg, gap, models, scan))


def plan_table(plan: GapFillPlan) -> list[dict]:
    """One row per label and site: real images, synthetic images planned, model."""
    rows = []
    for label, sites in plan.gap.extra.items():
        model = plan.models.get(label)
        for site, extra in sites.items():
            rows.append({"label": label, "site_id": site,
                         "real": plan.gap.counts[label].get(site, 0), "synthetic": extra,
                         "model": Path(model.model_dir).name if model and extra else "-"})
    return rows


def format_gap_plan(plan: GapFillPlan) -> str:
    """The plan as a table plus category totals before and after."""
    lines = [format_table(plan_table(plan), ["label", "site_id", "real", "synthetic", "model"])]
    lines += plan.gap.totals_lines("synthetic")
    lines.append(f"total: {len(plan.synthetic)} synthetic images to generate; "
                 f"{len(plan.scan.skipped)} file(s) skipped")
    return "\n".join(lines)


def _replacements(plan: GapFillPlan, out_dir: Path, rounds: int) -> list[SyntheticImage]:
    """The plan's images plus one fresh image for each that the gate moved to rejected/ (and
    for each rejected replacement, in turn, `rounds` deep): image n, n+1, ... of its label,
    for the same cell, from its own seed; an editing generator varies the next real image of
    the cell. Numbered in the order of the rejected images' indices, so a resumed run plans
    the same."""
    cfg = plan.cfg
    items = list(plan.synthetic)
    next_index = {}
    for s in items:
        next_index[s.label] = max(next_index.get(s.label, 0), s.index + 1)
    done: set[str] = set()
    for _ in range(rounds):
        rejected = sorted((s for s in items if s.name not in done
                           and (out_dir / "rejected" / s.name).exists()),
                          key=lambda s: (s.label, s.index))
        for s in rejected:
            done.add(s.name)
            k = next_index[s.label]
            next_index[s.label] = k + 1
            source = s.source
            if source is not None:
                pool = [r.relpath for r in source_order(
                    [r for r in plan.scan.images if r.label == s.label], cfg.seed, s.label,
                    s.site_id)]
                source = pool[(pool.index(source) + 1) % len(pool)]
            prompt = s.prompt  # a template's prompt is the cell's; a prompt file's cycles
            if prompt is not None and cfg.prompt_file:
                prompt = prompt_for(_prompt_table(cfg, [s.label]), s.label, k)
            items.append(SyntheticImage(s.renamed(k), s.label, s.site_id, k, s.seed, source,
                                        prompt, replaces=s.name))
    return items


def _runs(indices: list[int], batch: int) -> list[tuple[int, int]]:
    """Contiguous (start, count) chunks of at most `batch` covering sorted `indices`."""
    chunks, start, prev = [], None, None
    for i in indices:
        if start is not None and i == prev + 1 and i - start < batch:
            prev = i
            continue
        if start is not None:
            chunks.append((start, prev - start + 1))
        start = prev = i
    if start is not None:
        chunks.append((start, prev - start + 1))
    return chunks


def _missing(items: list[SyntheticImage], out_dir: Path) -> list[SyntheticImage]:
    """The synthetic images not generated yet (kept or moved aside by the gate)."""
    return [s for s in items if not (out_dir / s.name).exists()
            and not (out_dir / "rejected" / s.name).exists()]


def _load_generator(plan: GapFillPlan, out_dir: Path) -> Generator:
    """The generator with every model the missing images need loaded (and so fully checked:
    config, weights, architecture, what the model can do) before anything is written.

    Raises:
        ConfigError: a damaged model folder, named, with the reason.
    """
    needed = sorted({plan.models[s.label].model_dir for s in _missing(plan.synthetic, out_dir)})
    if plan.cfg.memorisation_gate and plan.cfg.gate_rounds and plan.synthetic:
        needed = sorted({ref.model_dir for ref in plan.models.values()})  # replacements
    return load_generator(plan.cfg.generator, needed, sampling_settings(plan.cfg))


def _request(plan: GapFillPlan, generator: Generator, chunk: list[SyntheticImage]) -> Request:
    """The generator call of a run of one label's images (contiguous indices): an editing
    generator gets each image's source and own seed, a sampler from noise the label's seed
    (image k draws from [seed, k])."""
    ref = plan.models[chunk[0].label]
    sources = prompts = None
    seed = chunk[0].seed
    if generator.varies_sources:
        sources = np.stack([generator.load_source(plan.scan.in_dir / s.source, ref)
                            for s in chunk])
        seed = [s.image_seed for s in chunk]
    if generator.follows_prompts:
        prompts = [s.prompt for s in chunk]
    return Request([ref] * len(chunk), seed, start_index=chunk[0].index,
                   sites=[s.site_id for s in chunk], sources=sources, prompts=prompts)


def _generate_missing(plan: GapFillPlan, out_dir: Path, generator: Generator, progress: bool,
                      items: list[SyntheticImage]) -> tuple[int, int]:
    todo = _missing(items, out_dir)
    reused = len(items) - len(todo)
    bar = tqdm(total=len(todo), desc="generating", unit="img", disable=not progress or not todo)
    by_model: dict[str, list[str]] = {}
    for label, ref in plan.models.items():
        by_model.setdefault(generator.group_key(ref), []).append(label)
    for labels in by_model.values():
        for label in labels:
            pending = {s.index: s for s in todo if s.label == label}
            for start, count in _runs(sorted(pending), plan.cfg.batch_size):
                chunk = [pending[start + k] for k in range(count)]
                images = generator.generate(_request(plan, generator, chunk))
                for s, image in zip(chunk, images):
                    save_generated(out_dir / s.name, image)
                bar.update(count)
    bar.close()
    return len(todo), reused


def _audit_and_gate(plan: GapFillPlan, out_dir: Path, items: list[SyntheticImage]
                    ) -> tuple[dict[str, float], list[str]]:
    """The memorisation audit of every synthetic image (`quality.audit`): its distance to the
    nearest real image of any label, against the real images' own nearest-neighbour
    distances; writes audit.csv, audit_summary.csv and closest_pairs.png. With the gate on,
    flagged images move to out_dir/rejected/ (kept for inspection, never lost).

    Returns:
        ({name: distance / threshold, below 1 = flagged}, names now in rejected/).
    """
    present = []
    for s in items:
        kept, aside = out_dir / s.name, out_dir / "rejected" / s.name
        path = kept if kept.exists() else aside
        if path.exists():
            present.append((path, s))
    if not present:
        return {}, []
    train: dict[str, list[Path]] = {}
    for r in plan.scan.images:
        train.setdefault(r.label, []).append(r.path)
    table = audit_synthetic([str(p) for p, _ in present], train, None,
                            audit_space(plan.cfg.audit_features),
                            synthetic_labels=[s.label for _, s in present],
                            percentile=plan.cfg.audit_percentile,
                            scope=plan.cfg.audit_scope)
    write_csv(out_dir / "audit.csv", table)
    write_csv(out_dir / "audit_summary.csv", summarise(table))
    with atomic_path(out_dir / "closest_pairs.png") as tmp:
        closest_pairs_sheet(table, title="closest pairs: generated | nearest real").save(
            tmp, format="PNG")
    by_path = {Path(p).resolve(): s for p, s in present}
    scores, rejected = {}, []
    for row in table.itertuples():
        s = by_path[Path(row.path).resolve()]
        scores[s.name] = float(row.ratio)
        kept, aside = out_dir / s.name, out_dir / "rejected" / s.name
        if plan.cfg.memorisation_gate and row.flagged and kept.exists():
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(kept, aside)  # our own output: moved, not copied
    rejected = [s.name for _, s in present if (out_dir / "rejected" / s.name).exists()]
    return scores, rejected


def _manifest_rows(plan: GapFillPlan, out_dir: Path, generator: Generator,
                   scores: dict[str, float], items: list[SyntheticImage],
                   rejected: bool = False) -> list[ManifestRow]:
    """Rows of the originals and kept synthetic images (or, with `rejected`, of the images
    the quality gate moved aside)."""
    rows = [] if rejected else [
        ManifestRow(plan.originals[r.relpath], r.label, r.site_id, r.path.resolve().as_posix(),
                    "original", None, {})
        for r in plan.scan.images if (out_dir / plan.originals[r.relpath]).exists()]
    prefix = "rejected/" if rejected else ""
    for s in items:
        if (out_dir / prefix / s.name).exists():
            ref = plan.models[s.label]
            params = {"index": s.index, **generator.manifest_params(ref, s.site_id)}
            origin = model_id(ref)
            if s.source is not None:
                origin = (plan.scan.in_dir / s.source).resolve().as_posix()
                params.update(source=s.source, image_seed=s.image_seed)
            if s.prompt is not None:
                params.update(prompt=s.prompt)
            if s.replaces is not None:
                params.update(replaces=s.replaces)
            # quality: distance to the nearest real image / the audit's threshold (0 = a
            # copy, below 1 = flagged as memorised)
            quality = scores.get(s.name)
            rows.append(ManifestRow(prefix + s.name, s.label, s.site_id, origin, generator.name,
                                    s.seed, params, quality))
    return rows


def run_gap_fill(plan: GapFillPlan, progress: bool = True) -> GapFillResult:
    """Copies the originals, generates the missing synthetic images, and writes
    manifest.csv, summary.txt, contact_sheets/<label>.png (real, generated, moved aside)
    and config.json into out_dir.

    Raises:
        DatasetError: out_dir is unusable (inside in_dir, foreign files, other settings).
    """
    cfg = plan.cfg
    out_dir = check_out_dir(cfg.out_dir, cfg.in_dir, cfg, _RESUME_KEYS, "diffusion_augmentation.py")
    # The prompt file's content counts as a setting: edited prompts are another run.
    prompts = sorted({(s.label, s.prompt) for s in plan.synthetic if s.prompt is not None})
    digest = short_hash(json.dumps(prompts)) if prompts else None
    saved = saved_config(out_dir).get("_prompts_digest", digest) if out_dir.is_dir() else digest
    if saved != digest:
        raise DatasetError(f"--out_dir {cfg.out_dir} was made with other prompts (the prompt "
                           f"file changed): choose a new folder (nothing changed)")
    # A broken model folder must fail here: once out_dir holds the originals and config.json,
    # a corrected rerun with other --label_models would be refused.
    generator = _load_generator(plan, out_dir)
    remove_stale_temp_files(out_dir)  # what a killed run left half-written
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out_dir / CONFIG_NAME, in_dir_resolved=str(Path(cfg.in_dir).resolve()),
                     prompts_digest=digest)
    result = GapFillResult()
    result.copied = copy_missing_originals(plan.scan.images, plan.originals, out_dir,
                                           cfg.link_originals)
    items = plan.synthetic
    result.generated, result.reused = _generate_missing(plan, out_dir, generator, progress, items)
    scores, result.rejected = _audit_and_gate(plan, out_dir, items)
    rounds = 0
    while cfg.memorisation_gate and rounds < cfg.gate_rounds:
        more = _replacements(plan, out_dir, rounds + 1)
        if len(more) == len(items):
            break
        before = len(items)
        items, rounds = more, rounds + 1
        made, reused = _generate_missing(plan, out_dir, generator, progress, items)
        # this run's earlier rounds are not images "already present" from an earlier run
        result.generated += made
        result.reused += reused - before
        scores, result.rejected = _audit_and_gate(plan, out_dir, items)
    result.replacements = len(items) - len(plan.synthetic)
    record_generated(out_dir, _manifest_rows(plan, out_dir, generator, scores, items))
    summary = format_gap_plan(plan)
    flagged = sum(1 for v in scores.values() if v < 1.0)
    if scores:
        summary += (f"\nmemorisation audit: {flagged} of {len(scores)} generated image(s) "
                    f"({flagged / len(scores):.1%}) closer to a real image than the "
                    f"{cfg.audit_percentile:g}th percentile of the real images' own nearest "
                    f"distances ({'each label its own' if cfg.audit_scope == 'label' else 'one'}"
                    f" threshold, {cfg.audit_features} space; audit.csv, closest_pairs.png)")
    if result.rejected:
        write_manifest(out_dir / "rejected.csv", _manifest_rows(plan, out_dir, generator,
                                                                scores, items, True))
        short = len(items) - len(result.rejected) - len(plan.synthetic)
        summary += (f"\nmemorisation gate: {len(result.rejected)} flagged image(s) moved to "
                    f"rejected/ (listed in rejected.csv); {result.replacements} fresh "
                    f"replacement(s) made in {rounds} round(s) (--gate_rounds "
                    f"{cfg.gate_rounds}); "
                    + (f"the labels concerned are short by {-short}" if short < 0
                       else "every label reached its planned count"))
    atomic_write_text(out_dir / "summary.txt", summary + "\n")
    moved = set(result.rejected)
    for label in plan.gap.extra:
        real = [out_dir / plan.originals[r.relpath] for r in plan.scan.images if r.label == label]
        fake = [out_dir / s.name for s in items if s.label == label
                and (out_dir / s.name).exists()]
        aside = [out_dir / "rejected" / s.name for s in items if s.label == label
                 and s.name in moved]
        if fake or aside:
            result.sheets.append(write_contact_sheet(
                real[: cfg.sheet_size], fake[: cfg.sheet_size],
                out_dir / "contact_sheets" / f"{label}.png", title=f"label {label}",
                aside=aside[: cfg.sheet_size]))
    return result
