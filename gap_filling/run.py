"""Stage 3 pipeline: scan the originals, plan the gap, generate with the trained models.

The plan (and the label -> model mapping, with its errors) is complete before any work, so
`--dry-run` shows exactly what a run would write. Synthetic image k of a label always gets the
same noise (seed derived from `--seed` and the label) and the same file name, so a re-run
skips what exists and an interrupted run resumes; each model is loaded once and samples in
batches. A site-conditioned model generates each image for the (label, site) cell the plan
credits it to; `--generator sdedit` makes each image a variation of a real image of its cell,
and `--generator sd_img2img` an edit of it by Stable Diffusion 3 with a class prompt
(DA-Fusion), optionally with DIAGen's noise on the encoded prompt.

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

from tqdm import tqdm

from cli.flags import ConfigError, save_config_json
from cli.tables import format_table
from config import AugmentationConfig
from dataset.atomic import atomic_path, atomic_write_text
from dataset.copying import copy_missing_originals, original_names, short_hash
from dataset.images import save_rgb, to_uint8
from dataset.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from dataset.out_dir import CONFIG_NAME, check_out_dir, remove_stale_temp_files, saved_config
from dataset.scan import DatasetError, ScanResult, scan_labelled_dir, validate_images
from gap_filling.plan import GapPlan, plan_gap, source_order

_RESUME_KEYS = ("weight_paths", "label_models", "categories", "balance", "split_sites",
                "generate_diffusion_steps", "eta", "guidance_scale", "guidance_rescale",
                "sample_weights",
                "guidance_max_noise", "seed",
                "site_regex", "site_csv", "min_size", "generator", "strength", "audit_features",
                "audit_percentile", "audit_scope", "memorisation_gate", "gate_rounds", "sd_preset",
                "sd_image_size", "sd_dtype", "prompt_template", "prompt_file", "prompt_noise_std")
# Stage 3's generators that vary a real image of the cell (the manifest names the source).
EDITING_GENERATORS = ("sdedit", "sd_img2img")
SD_FALLBACK = (", or use --generator sdedit, which varies the real images with your own DDIM "
               "model offline")


@dataclass(frozen=True)
class ModelRef:
    """Which model generates a label: its run folder, the class index if conditional, and
    the sites it was conditioned on (empty: none)."""
    model_dir: str
    class_index: int | None
    site_names: tuple[str, ...] = ()

    def site_index(self, site: str) -> int | None:
        """The model's id of `site`; None when the model does not know it (any site)."""
        return self.site_names.index(site) if site in self.site_names else None


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


def model_id(ref: ModelRef) -> str:
    """What the manifest names as the model: a folder's absolute path, or a preset name."""
    path = Path(ref.model_dir)
    return str(path.resolve()) if path.exists() else ref.model_dir


def label_seed(seed: int, label: str) -> int:
    """The seed of a label's images: distinct per label, stable across runs and machines."""
    return seed * 2**32 + zlib.crc32(label.encode("utf-8"))


def _read_model_labels(model_dir: str) -> tuple[bool, list[str], tuple[str, ...]]:
    """(conditional?, label names, site names) of a run folder, from its config.json alone."""
    from diffusion.training import read_run

    path = Path(model_dir)
    if path.is_file():  # a weights file was given: its folder is the run folder
        path = path.parent
    try:
        saved, meta = read_run(path)
    except ConfigError as err:
        raise ConfigError(f"model {model_dir}: {err}") from None
    names = [str(n) for n in meta.get("_class_names") or [meta.get("_label", path.name)]]
    sites = tuple(str(x) for x in meta.get("_site_names") or ()) if saved.site_conditioning else ()
    return bool(saved.conditional), names, sites


def resolve_label_models(cfg: AugmentationConfig, needed: list[str]) -> dict[str, ModelRef]:
    """Maps every label that needs synthetic images to a model, or fails before any work.

    `--weight_paths` models serve the label(s) in their config.json; `--label_models L=DIR`
    pairs win over them.

    Raises:
        ConfigError: a folder is not a trained model, a pair names a label its conditional
            model does not know, or a needed label has no model.
    """
    mapping: dict[str, ModelRef] = {}
    for model_dir in cfg.weight_paths or []:
        conditional, names, sites = _read_model_labels(model_dir)
        for i, name in enumerate(names):
            mapping.setdefault(name, ModelRef(model_dir, i if conditional else None, sites))
    for label, model_dir in cfg.label_model_pairs():
        conditional, names, sites = _read_model_labels(model_dir)
        if conditional and label not in names:
            raise ConfigError(f"--label_models {label}={model_dir}: that conditional model "
                              f"knows the labels {', '.join(names)}")
        mapping[label] = ModelRef(model_dir, names.index(label) if conditional else None, sites)
    missing = [lab for lab in needed if lab not in mapping]
    if missing:
        have = ", ".join(sorted(mapping)) or "none"
        raise ConfigError(f"no model for label(s) {', '.join(missing)} (models given for: "
                          f"{have}); add --weight_paths or --label_models LABEL=MODEL_DIR")
    return {lab: mapping[lab] for lab in needed}


def _prompt_table(cfg: AugmentationConfig, labels: list[str]) -> dict[str, list[str]] | None:
    """sd_img2img's prompts from --prompt_file (every label must have one), else None (the
    template); checked before any work.

    Raises:
        ConfigError: a missing or unusable prompt file, a label without a prompt, or a
            template with an unknown field.
    """
    from pretrained.prompts import check_classes, format_template, load_prompts
    if not cfg.prompt_file:
        format_template(cfg.prompt_template, "label", "site")
        return None
    table = load_prompts(cfg.prompt_file)
    check_classes(table, labels, cfg.prompt_file)
    return table


def _synthetic_images(cfg: AugmentationConfig, gap: GapPlan, models: dict[str, ModelRef],
                      scan: ScanResult) -> list[SyntheticImage]:
    from pretrained.prompts import format_template, prompt_for, prompts_of
    out = []
    edits = cfg.generator in EDITING_GENERATORS
    sd = cfg.generator == "sd_img2img"
    table = _prompt_table(cfg, list(models)) if sd else None
    for label, sites in gap.extra.items():
        if label not in models:
            continue
        seed = label_seed(cfg.seed, label)
        settings = f"|{cfg.generator}|{cfg.strength}" if edits else ""
        if sd:  # the label's prompts are part of its images' names
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
                if sd:
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
    if cfg.generator == "sd_img2img":  # known before the images are read
        from pretrained.sd3 import check_preset_folder
        check_preset_folder(cfg.sd_preset, SD_FALLBACK)
        _prompt_table(cfg, [])
    scan = scan_labelled_dir(cfg.in_dir, None, cfg.site_regex, cfg.site_csv)
    scan = validate_images(scan, min_size=cfg.min_size, progress=progress, pool=pool)
    try:
        gap = plan_gap(scan.counts(), cfg.category_labels(), cfg.balance, cfg.split_sites)
    except ValueError as err:
        raise ConfigError(f"--categories: {err}") from None
    needed = [lab for lab in gap.extra if gap.label_extra(lab) > 0]
    if cfg.generator == "sd_img2img":  # one pretrained model for every label
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
    from pretrained.prompts import prompt_for
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


def _load_models(plan: GapFillPlan, out_dir: Path) -> dict:
    """{model folder: model} of every model the missing images need, loaded (and so fully
    checked: config, weights, architecture) before anything is written.

    Raises:
        ConfigError: a damaged model folder, named, with the reason.
    """
    needed = sorted({plan.models[s.label].model_dir for s in _missing(plan.synthetic, out_dir)})
    if plan.cfg.memorisation_gate and plan.cfg.gate_rounds and plan.synthetic:
        needed = sorted({ref.model_dir for ref in plan.models.values()})  # replacements
    cfg = plan.cfg
    if cfg.generator == "sd_img2img":
        from pretrained.sd3 import load_sd3_task
        return {preset: load_sd3_task(preset, "img2img", cfg.sd_image_size, cfg.sd_dtype,
                                      SD_FALLBACK) for preset in needed}
    from diffusion.inference import load_model, require_method, sampling_runtime
    if needed:
        sampling_runtime(needed[0])  # the precision the (first) model trained with
    models = {model_dir: load_model(model_dir, cfg.sample_weights)[0] for model_dir in needed}
    for model_dir, model in models.items():
        if cfg.generator == "sdedit":
            require_method(model, "img2img", model_dir, "vary real images (sdedit)")
    return models


def _edit_with_sd3(plan: GapFillPlan, out_dir: Path, tasks: dict, todo: list, bar) -> None:
    """sd_img2img: one Stable Diffusion 3 edit per image, each from its own seed (KerasHub
    draws a whole call's noise from one seed, so batching would tie images together)."""
    from diffusion.data import load_image
    from pretrained.sd3 import image_size_of, sd3_img2img
    cfg = plan.cfg
    for s in todo:
        task = tasks[plan.models[s.label].model_dir]
        source = load_image(plan.scan.in_dir / s.source, image_size_of(task), 3)
        image = sd3_img2img(task, source, s.prompt, s.image_seed, cfg.strength,
                            cfg.generate_diffusion_steps, cfg.guidance_scale,
                            cfg.prompt_noise_std)
        save_rgb(out_dir / s.name, to_uint8(image))
        bar.update(1)


def _generate_missing(plan: GapFillPlan, out_dir: Path, models: dict, progress: bool,
                      items: list[SyntheticImage]) -> tuple[int, int]:
    import numpy as np
    from diffusion.data import load_image

    todo = _missing(items, out_dir)
    reused = len(items) - len(todo)
    bar = tqdm(total=len(todo), desc="generating", unit="img", disable=not progress or not todo)
    if plan.cfg.generator == "sd_img2img":
        _edit_with_sd3(plan, out_dir, models, todo, bar)
        bar.close()
        return len(todo), reused
    by_model: dict[str, list[str]] = {}
    for label, ref in plan.models.items():
        by_model.setdefault(ref.model_dir, []).append(label)
    cfg = plan.cfg
    for model_dir, labels in by_model.items():
        pending = {lab: {s.index: s for s in todo if s.label == lab} for lab in labels}
        if not any(pending.values()):
            continue
        model = models[model_dir]
        for label in labels:
            items = pending[label]
            ref = plan.models[label]
            for start, count in _runs(sorted(items), cfg.batch_size):
                chunk = [items[start + k] for k in range(count)]
                sites = None
                if ref.site_names:  # each image for its own cell; unknown sites: any site
                    sites = [ref.site_index(s.site_id) for s in chunk]
                    sites = [len(ref.site_names) if i is None else i for i in sites]
                common = dict(steps=cfg.generate_diffusion_steps, eta=cfg.eta,
                              labels=ref.class_index, guidance_scale=cfg.guidance_scale,
                              guidance_rescale=cfg.guidance_rescale,
                              guidance_max_noise=cfg.guidance_max_noise,
                              batch_size=cfg.batch_size, sites=sites)
                if cfg.generator == "sdedit":
                    sources = np.stack([load_image(plan.scan.in_dir / s.source, model.image_size,
                                                   model.channels) for s in chunk])
                    images = model.img2img(sources, strength=cfg.strength,
                                           seed=[s.image_seed for s in chunk], **common)
                else:
                    images = model.generate(count, seed=items[start].seed, start_index=start,
                                            **common)
                for k, img in enumerate(images):
                    save_rgb(out_dir / chunk[k].name, to_uint8(img))
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
    from classifier.report import write_csv
    from quality.audit import audit_synthetic, closest_pairs_sheet, summarise
    from quality.features import audit_space

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


def _manifest_rows(plan: GapFillPlan, out_dir: Path, scores: dict[str, float],
                   items: list[SyntheticImage], rejected: bool = False) -> list[ManifestRow]:
    """Rows of the originals and kept synthetic images (or, with `rejected`, of the images
    the quality gate moved aside)."""
    cfg = plan.cfg
    rows = [] if rejected else [
        ManifestRow(plan.originals[r.relpath], r.label, r.site_id, r.path.resolve().as_posix(),
                    "original", None, {})
        for r in plan.scan.images if (out_dir / plan.originals[r.relpath]).exists()]
    prefix = "rejected/" if rejected else ""
    for s in items:
        if (out_dir / prefix / s.name).exists():
            ref = plan.models[s.label]
            params = {"index": s.index, "steps": cfg.generate_diffusion_steps, "eta": cfg.eta,
                      "model": model_id(ref)}
            if cfg.generator != "sd_img2img" and Path(ref.model_dir).is_dir():
                # which file of the folder (a weights file names itself in "model")
                params.update(weights=cfg.sample_weights)
            if ref.class_index is not None:
                params.update(class_index=ref.class_index, guidance_scale=cfg.guidance_scale,
                              guidance_rescale=cfg.guidance_rescale)
                if cfg.guidance_max_noise:
                    params.update(guidance_max_noise=cfg.guidance_max_noise)
            if ref.site_names:  # the cell the image was generated for (None: any site)
                params.update(site_index=ref.site_index(s.site_id),
                              guidance_scale=cfg.guidance_scale)
            origin = params["model"]
            if s.source is not None:
                origin = (plan.scan.in_dir / s.source).resolve().as_posix()
                params.update(strength=cfg.strength, source=s.source, image_seed=s.image_seed)
            if s.prompt is not None:
                params.update(prompt=s.prompt, guidance_scale=cfg.guidance_scale,
                              prompt_noise_std=cfg.prompt_noise_std)
                params.pop("eta")  # SD3's flow-matching sampler has none
            if s.replaces is not None:
                params.update(replaces=s.replaces)
            # quality: distance to the nearest real image / the audit's threshold (0 = a
            # copy, below 1 = flagged as memorised)
            quality = scores.get(s.name)
            rows.append(ManifestRow(prefix + s.name, s.label, s.site_id, origin, cfg.generator,
                                    s.seed, params, quality))
    return rows


def run_gap_fill(plan: GapFillPlan, progress: bool = True) -> GapFillResult:
    """Copies the originals, generates the missing synthetic images, and writes
    manifest.csv, summary.txt, contact_sheets/<label>.png (real, generated, moved aside)
    and config.json into out_dir.

    Raises:
        DatasetError: out_dir is unusable (inside in_dir, foreign files, other settings).
    """
    from gap_filling.contact_sheet import write_contact_sheet

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
    models = _load_models(plan, out_dir)
    remove_stale_temp_files(out_dir)  # what a killed run left half-written
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out_dir / CONFIG_NAME, in_dir_resolved=str(Path(cfg.in_dir).resolve()),
                     prompts_digest=digest)
    result = GapFillResult()
    result.copied = copy_missing_originals(plan.scan.images, plan.originals, out_dir,
                                           cfg.link_originals)
    items = plan.synthetic
    result.generated, result.reused = _generate_missing(plan, out_dir, models, progress, items)
    scores, result.rejected = _audit_and_gate(plan, out_dir, items)
    rounds = 0
    while cfg.memorisation_gate and rounds < cfg.gate_rounds:
        more = _replacements(plan, out_dir, rounds + 1)
        if len(more) == len(items):
            break
        before = len(items)
        items, rounds = more, rounds + 1
        made, reused = _generate_missing(plan, out_dir, models, progress, items)
        # this run's earlier rounds are not images "already present" from an earlier run
        result.generated += made
        result.reused += reused - before
        scores, result.rejected = _audit_and_gate(plan, out_dir, items)
    result.replacements = len(items) - len(plan.synthetic)
    write_manifest(out_dir / MANIFEST_NAME, _manifest_rows(plan, out_dir, scores, items))
    summary = format_gap_plan(plan)
    flagged = sum(1 for v in scores.values() if v < 1.0)
    if scores:
        summary += (f"\nmemorisation audit: {flagged} of {len(scores)} generated image(s) "
                    f"({flagged / len(scores):.1%}) closer to a real image than the "
                    f"{cfg.audit_percentile:g}th percentile of the real images' own nearest "
                    f"distances ({'each label its own' if cfg.audit_scope == 'label' else 'one'}"
                    f" threshold, {cfg.audit_features} space; audit.csv, closest_pairs.png)")
    if result.rejected:
        write_manifest(out_dir / "rejected.csv", _manifest_rows(plan, out_dir, scores, items,
                                                                True))
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
