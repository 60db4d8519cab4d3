"""OOD test-set pipeline: plan (reads only, every check before any work), then generate.

`plan_inpainting` scans the test folder, chooses the images to transform (round(p * n) per
class, seeded), gives each its seed, prompt and mask source, and checks prompts, masks,
models and the output folder; `run_inpainting` copies the other images unchanged, runs the
backend in batches at the model's size (crop around the mask, paste back the masked pixels
only), and writes the manifest and a sample sheet. Outputs are named from their settings,
so a re-run skips what exists and an interrupted run resumes. config.json also records
digests of the inputs (the test images' list, the prompt file, the masks, the models): a
re-run whose inputs changed, or whose `<augm_type>/` holds images the plan does not list,
is refused rather than mixing old and new outputs.

    out_dir/<augm_type>/<class>/<stem>_<backend>_<hash>.png   transformed (PNG, lossless)
    out_dir/<augm_type>/<class>/<original file>              not chosen: byte-identical copy
    out_dir/masks/<augm_type>/<class>/<stem>_<hash>.png      the mask weights used (8-bit)
    out_dir/manifest.csv, samples.png, config.json

Example:
    >>> plan = plan_inpainting(InpaintingConfig(test_dir="data/test", backend="ddim",
    ...                                         model_dir=["models/1_2025..."]))
    >>> print(format_plan(plan))
    >>> result = run_inpainting(plan)              # loads the backend itself
"""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli.flags import ConfigError, save_config_json
from cli.tables import format_table
from config import InpaintingConfig
from dataset.copying import copy_original, original_names, short_hash
from dataset.generated import record_generated, save_generated
from dataset.images import IMAGE_EXTENSIONS, ImageLoadError, load_rgb
from dataset.manifest import ManifestRow
from dataset.out_dir import CONFIG_NAME, check_out_dir, holds_files, remove_stale_temp_files, \
    saved_config
from dataset.resume import resume_keys
from dataset.scan import DatasetError, ImageRecord, ScanResult, scan_labelled_dir, \
    validate_images
from inpainting import crops, masks as mk
from generators.base import Generator, Request
from inpainting.backends import DDIM_FALLBACK, GENERATORS, build_backend, class_models
from inpainting.sheet import write_triples
from model_folder.folder import ModelFolder
from pretrained.sd3 import check_preset_folder
from pretrained.prompts import PromptError, check_classes, load_prompts, prompt_for

TOOL = "python3 -m inpainting generate"
# Settings that change what is written: a folder made with other values is not resumed.
RESUME_KEYS = resume_keys(InpaintingConfig, exclude=("test_dir", "out_dir", "batch_size",
                                                     "samples"))
# Inputs whose contents change what is written (digests in config.json, key "_inputs").
INPUT_NAMES = {"test_images": "the list of images in --test_dir",
               "prompt_file": "the contents of the prompt file (--prompt_dir)",
               "masks": "the contents of the mask file(s) (--mask_path / --mask_dir)",
               "models": "the model(s) (config.json or weights)"}
HEAD_TAIL = 1 << 20  # a model file is identified by its size and its first and last MiB


@dataclass(frozen=True)
class PlanItem:
    """One test image: copied as it is, or transformed with its own seed, prompt and mask."""
    record: ImageRecord
    out_name: str                 # relative to out_dir
    transform: bool
    seed: int | None = None
    prompt: str | None = None
    mask_file: str | None = None  # the user's mask (--mask_path / --mask_dir), if any
    mask_name: str | None = None  # the mask written, relative to out_dir


@dataclass
class InpaintPlan:
    cfg: InpaintingConfig                       # resolved: no automatic (None) values left
    scan: ScanResult
    items: list[PlanItem]
    models: dict = field(default_factory=dict)  # class -> ModelRef (its run, or the preset)
    notes: list[str] = field(default_factory=list)
    inputs: dict = field(default_factory=dict)  # INPUT_NAMES -> digest (see input_digests)

    def transformed(self) -> list[PlanItem]:
        return [it for it in self.items if it.transform]


@dataclass
class InpaintResult:
    out_dir: Path
    generated: int = 0
    reused: int = 0
    copied: int = 0
    sheet: Path | None = None


def image_seed(seed: int, relpath: str) -> int:
    """Image seed from the run's seed and the image's path: independent of which other
    images there are, so one image can be regenerated alone. 31 bits (fits any backend)."""
    return int(hashlib.sha1(f"{seed}|{relpath}".encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


def choose_images(scan: ScanResult, probability: float, seed: int) -> set[str]:
    """The relpaths to transform: round(p * n) images of every class (n = its images),
    drawn without replacement by a generator seeded from `seed` and the class name."""
    chosen = set()
    for label, recs in scan.by_label().items():
        k = int(np.floor(probability * len(recs) + 0.5))
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        for i in rng.choice(len(recs), size=k, replace=False):
            chosen.add(recs[int(i)].relpath)
    return chosen


def _find_mask(mask_dir: Path, rec: ImageRecord) -> Path | None:
    """The mask of an image in mask_dir: same relative folder, then the class folder, then
    mask_dir itself; any image extension, matched by stem."""
    rel = Path(rec.relpath)
    for folder in (mask_dir / rel.parent, mask_dir / rec.label, mask_dir):
        for ext in IMAGE_EXTENSIONS:
            for cand in (folder / f"{rel.stem}{ext}", folder / f"{rel.stem}{ext.upper()}"):
                if cand.is_file():
                    return cand
    return None


def _check_masks(cfg: InpaintingConfig, scan: ScanResult, chosen: set[str]
                 ) -> tuple[dict[str, str], list[str]]:
    """The mask file of every chosen image, each checked against its image's size now
    (resized with a note when only the scale differs; other sizes are an error).

    Raises:
        DatasetError: a missing, unreadable, empty or wrongly shaped mask.
    """
    kind = cfg.mask_kind()
    if kind not in ("file", "dir"):
        return {}, []
    files, notes, cache = {}, [], {}
    missing = []
    for rec in scan.images:
        if rec.relpath not in chosen:
            continue
        path = Path(cfg.mask_path) if kind == "file" else _find_mask(Path(cfg.mask_dir), rec)
        if path is None:
            missing.append(rec.relpath)
            continue
        if not path.is_file():
            raise DatasetError(f"--mask_path {path} does not exist")
        if path not in cache:
            try:
                cache[path] = mk.load_mask(path)
            except ImageLoadError as err:
                raise DatasetError(f"mask {err}") from None
        w, h = rec.size
        try:
            _, note = mk.fit_mask(cache[path], (h, w), str(path))
        except mk.MaskError as err:
            raise DatasetError(f"{err} ({rec.relpath})") from None
        if note and note not in notes:
            notes.append(note)
        files[rec.relpath] = str(path)
    if missing:
        raise DatasetError(f"{len(missing)} chosen image(s) have no mask of the same name in "
                           f"--mask_dir {cfg.mask_dir} (looked in <class>/ and the folder "
                           f"itself), e.g. {missing[0]}")
    return files, notes


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _file_digest(path: str | Path, head_tail: bool = False) -> str:
    """sha256 of a file's bytes; with `head_tail`, of its size and its first and last MiB
    only (weights can be gigabytes; a file up to 2 MiB is still hashed whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if not head_tail:
            h.update(f.read())
        else:
            size = f.seek(0, 2)
            f.seek(0)
            h.update(f"{size}|".encode())
            h.update(f.read(HEAD_TAIL))
            f.seek(max(HEAD_TAIL, size - HEAD_TAIL))
            h.update(f.read())
    return h.hexdigest()[:16]


def _model_digest(model: str | Path) -> str:
    """A DDIM run (its config.json and the weights load_model takes), a weights file (and
    its folder's config.json) or a local preset folder (every file), by `_file_digest`."""
    path = Path(model)
    base = path if path.is_dir() else path.parent
    folder = ModelFolder(path, "diffusion")
    if path.is_file() or folder.has_weights():
        files = [folder.config_path, folder.weights()]  # the file load_model takes
    else:
        files = sorted(f for f in path.rglob("*") if f.is_file())
    return _digest("|".join(f"{f.relative_to(base).as_posix()}:"
                            f"{_file_digest(f, head_tail=True) if f.is_file() else '-'}"
                            for f in files))


def input_digests(cfg: InpaintingConfig, scan: ScanResult, mask_files: dict[str, str],
                  models: dict) -> dict:
    """Digests of the inputs whose contents (not only their paths) decide the outputs:
    which images --test_dir holds, the prompt file, every mask file used, every model."""
    relpaths = "\n".join(sorted(rec.relpath for rec in scan.images))
    out = {"test_images": _digest(relpaths),
           "prompt_file": None, "masks": None, "models": None}
    if cfg.backend == "keras_hub":
        out["prompt_file"] = _file_digest(cfg.prompt_dir)
        if Path(cfg.sd_preset).is_dir():  # a local preset (KerasHub loads it, not a name)
            out["models"] = {"preset": _model_digest(cfg.sd_preset)}
    else:
        out["models"] = {lab: _model_digest(ref.model_dir) for lab, ref in sorted(models.items())}
    if mask_files:
        cache = {}
        for path in mask_files.values():
            if path not in cache:
                cache[path] = _file_digest(path)
        out["masks"] = _digest(json.dumps({rel: cache[path] for rel, path
                                           in sorted(mask_files.items())}))
    return out


def check_resume(plan: "InpaintPlan") -> None:
    """An out_dir that already holds a run must have been made from the same inputs and
    hold no image in `<augm_type>/` (or its masks) that this plan does not write.

    Raises:
        DatasetError: one line naming what changed; nothing is changed.
    """
    cfg = plan.cfg
    out = Path(cfg.out_dir)
    if not holds_files(out):
        return
    saved = saved_config(out).get("_inputs")
    if not isinstance(saved, dict):
        raise DatasetError(f"--out_dir {cfg.out_dir} records no digests of its inputs (made by "
                           f"an older version): choose a new --out_dir")
    for key, what in INPUT_NAMES.items():
        if saved.get(key) != plan.inputs.get(key):
            raise DatasetError(f"--out_dir {cfg.out_dir}: {what} changed since the first run: "
                               f"choose a new --out_dir")
    planned = {it.out_name for it in plan.items} | {it.mask_name for it in plan.items
                                                    if it.mask_name}
    extra = [f.relative_to(out).as_posix()
             for folder in (out / cfg.augm_type, out / "masks" / cfg.augm_type)
             if folder.is_dir() for f in sorted(folder.rglob("*"))
             if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
             and not f.name.startswith(".") and f.relative_to(out).as_posix() not in planned]
    if extra:
        raise DatasetError(f"--out_dir {cfg.out_dir} holds {len(extra)} image(s) this run "
                           f"would not write (e.g. {extra[0]}): choose a new --out_dir")


def _settings_tag(cfg: InpaintingConfig, rec: ImageRecord, seed: int, prompt: str | None,
                  mask_file: str | None, model: str) -> str:
    spec = {"path": rec.relpath, "seed": seed, "prompt": prompt, "mask": mask_file,
            "model": model, **{k: getattr(cfg, k) for k in RESUME_KEYS}}
    return short_hash(json.dumps(spec, sort_keys=True, default=str))


def plan_inpainting(cfg: InpaintingConfig, progress: bool = True) -> InpaintPlan:
    """Everything a run will do, checked; reads only, writes nothing.

    Raises:
        ConfigError: prompts or models unusable (a missing prompt file, a class without a
            prompt or a model).
        DatasetError: the test folder, a mask or the output folder is unusable.
    """
    cfg = cfg.resolved()
    table = None
    if cfg.backend == "keras_hub":
        try:  # first: a missing prompt file must stop the run before anything is read
            table = load_prompts(cfg.prompt_dir)
        except PromptError as err:
            raise ConfigError(str(err)) from None
        # the model loads after planning; a missing folder is known now
        check_preset_folder(cfg.sd_preset, DDIM_FALLBACK)
    check_out_dir(cfg.out_dir, cfg.test_dir, cfg, RESUME_KEYS, TOOL)
    scan = scan_labelled_dir(cfg.test_dir)
    scan = validate_images(scan, min_size=cfg.min_size, progress=progress)
    chosen = choose_images(scan, cfg.augm_probability, cfg.seed)
    needed = [lab for lab in scan.labels
              if any(r.relpath in chosen for r in scan.images if r.label == lab)]
    notes = []
    if table is not None:
        try:
            check_classes(table, needed, cfg.prompt_dir)
        except PromptError as err:
            raise ConfigError(str(err)) from None
    elif cfg.prompt_dir:
        notes.append("the ddim backend does not read prompts: --prompt_dir is ignored")
    models = class_models(cfg, needed)
    mask_files, mask_notes = _check_masks(cfg, scan, chosen)
    notes += mask_notes
    names = original_names(scan.images)
    items, turn = [], {lab: 0 for lab in scan.labels}
    for rec in scan.images:
        name = names[rec.relpath]
        if rec.relpath not in chosen:
            items.append(PlanItem(rec, f"{cfg.augm_type}/{name}", False))
            continue
        seed = image_seed(cfg.seed, rec.relpath)
        prompt = prompt_for(table, rec.label, turn[rec.label]) if table is not None else None
        turn[rec.label] += 1
        model = (cfg.sd_preset if cfg.backend == "keras_hub" else
                 str(Path(models[rec.label].model_dir).resolve()))
        tag = _settings_tag(cfg, rec, seed, prompt, mask_files.get(rec.relpath), model)
        stem = Path(name).stem
        items.append(PlanItem(
            rec, f"{cfg.augm_type}/{rec.label}/{stem}_{cfg.backend}_{tag}.png", True, seed,
            prompt, mask_files.get(rec.relpath),
            f"masks/{cfg.augm_type}/{rec.label}/{stem}_{tag}.png"))
    plan = InpaintPlan(cfg, scan, items, models, notes,
                       input_digests(cfg, scan, mask_files, models))
    check_resume(plan)
    return plan


def mask_spec(cfg: InpaintingConfig, item: PlanItem) -> str | dict:
    """What the manifest records as the mask: the user's file, or the generating recipe."""
    kind = cfg.mask_kind()
    if kind in ("file", "dir"):
        return item.mask_file
    if kind == "none":
        return {"mode": "none"}
    spec = {"mode": kind, "region": cfg.mask_region}
    if kind != "region":
        spec["area"] = cfg.mask_area
    return spec


def mask_weights(cfg: InpaintingConfig, item: PlanItem, shape: tuple[int, int]) -> np.ndarray:
    """The (H, W) blend weights of one image: its mask (loaded or generated from the
    image's seed), fitted to the image and feathered by --mask_blur."""
    kind = cfg.mask_kind()
    if kind in ("file", "dir"):
        mask, _ = mk.fit_mask(mk.load_mask(item.mask_file), shape, item.mask_file)
    elif kind == "none":
        return np.ones(shape, np.float32)  # img2img of the whole image
    else:
        rng = np.random.default_rng([item.seed, 1])
        mask = mk.generate_mask(shape, kind, cfg.mask_area, cfg.mask_region, rng)
    return mk.feather(mask, cfg.mask_blur)


def format_plan(plan: InpaintPlan) -> str:
    """The plan as a table per class plus what, how and where."""
    cfg = plan.cfg
    rows = []
    for label in plan.scan.labels:
        its = [it for it in plan.items if it.record.label == label]
        done = [it for it in its if it.transform]
        prompts = sorted({it.prompt for it in done if it.prompt})
        rows.append({"class": label, "images": len(its), "transformed": len(done),
                     "copied": len(its) - len(done),
                     "prompts": len(prompts) if prompts else "-"})
    kind = cfg.mask_kind()
    mask = {"file": f"file {cfg.mask_path}", "dir": f"one per image from {cfg.mask_dir}",
            "none": "none (whole image)"}.get(kind, f"{kind} in {cfg.mask_region}"
                                                  + (f", {cfg.mask_area:.0%} of the image"
                                                     if kind != "region" else ""))
    if cfg.backend == "keras_hub":
        model = f"KerasHub preset {cfg.sd_preset}"
    else:
        model = ", ".join(sorted({f"{lab}: {Path(ref.model_dir).name}"
                                  for lab, ref in plan.models.items()})) or "-"
    lines = [format_table(rows, ["class", "images", "transformed", "copied", "prompts"]),
             f"OOD set: {cfg.out_dir}/{cfg.augm_type}/ ({GENERATORS[(cfg.backend, cfg.mode)]}, "
             f"{cfg.num_steps} steps, mask {mask}, blur {cfg.mask_blur:g})",
             f"model: {model}",
             f"total: {len(plan.transformed())} image(s) to transform, "
             f"{len(plan.items) - len(plan.transformed())} to copy; "
             f"{len(plan.scan.skipped)} file(s) skipped"]
    return "\n".join(lines)


def _params(cfg: InpaintingConfig, item: PlanItem, backend_model: str) -> dict:
    params = {"prompt": item.prompt, "mask": mask_spec(cfg, item), "mask_file": item.mask_name,
              "mask_blur": cfg.mask_blur, "backend": cfg.backend, "mode": cfg.mode,
              "model": backend_model, "steps": cfg.num_steps,
              "guidance_scale": cfg.guidance_scale, "augm_type": cfg.augm_type}
    if not (cfg.backend == "ddim" and cfg.mode == "inpaint"):  # RePaint has no strength
        params["strength"] = cfg.strength
    if cfg.backend == "ddim":
        params["eta"] = cfg.eta
        if cfg.mode == "inpaint":
            params.update(jump_length=cfg.jump_length, jump_n_sample=cfg.jump_n_sample)
    return params


def _manifest_rows(plan: InpaintPlan, out_dir: Path) -> list[ManifestRow]:
    cfg = plan.cfg
    generator = GENERATORS[(cfg.backend, cfg.mode)]
    rows = []
    for it in plan.items:
        if not (out_dir / it.out_name).exists():
            continue
        rec = it.record
        origin = rec.path.resolve().as_posix()
        if not it.transform:
            rows.append(ManifestRow(it.out_name, rec.label, rec.site_id, origin, "original"))
            continue
        model = (cfg.sd_preset if cfg.backend == "keras_hub"
                 else str(Path(plan.models[rec.label].model_dir).resolve()))
        rows.append(ManifestRow(it.out_name, rec.label, rec.site_id, origin, generator,
                                it.seed, _params(cfg, it, model)))
    return rows


def _transform_batch(plan: InpaintPlan, backend: Generator, chunk: list[PlanItem],
                     out_dir: Path) -> None:
    cfg = plan.cfg
    prepared = []
    refs = [plan.models[it.record.label] for it in chunk]
    for it, ref in zip(chunk, refs):
        image = load_rgb(it.record.path)
        weights = mask_weights(cfg, it, image.shape[:2])
        bbox = crops.bounding_box(weights)
        window = crops.crop_window(image.shape[:2], bbox, backend.image_size(ref))
        model_in, model_mask = crops.to_model(image, weights, window, backend.image_size(ref))
        prepared.append((image, weights, window, model_in, model_mask))
    results = backend.generate(Request(
        refs, [it.seed for it in chunk], sources=np.stack([p[3] for p in prepared]),
        masks=np.stack([p[4] for p in prepared]), prompts=[it.prompt or "" for it in chunk]))
    for it, (image, weights, window, _, _), result in zip(chunk, prepared, results):
        # the mask first: an existing output always has its mask beside it
        save_generated(out_dir / it.mask_name, mk.to_uint8_mask(weights))
        save_generated(out_dir / it.out_name, crops.paste_back(image, weights, window, result))


def run_inpainting(plan: InpaintPlan, backend=None, progress: bool = True) -> InpaintResult:
    """Writes the OOD set, the masks, manifest.csv, samples.png and config.json.

    Args:
        plan: from `plan_inpainting`.
        backend: a ready backend (tests pass tiny ones); default: built from the config
            (a preset that cannot be loaded fails here, before anything is written).
        progress: show a progress bar.

    Raises:
        DatasetError: the output folder is unusable.
        PresetError: the Stable Diffusion preset cannot be loaded.
    """
    cfg = plan.cfg
    out_dir = check_out_dir(cfg.out_dir, cfg.test_dir, cfg, RESUME_KEYS, TOOL)
    check_resume(plan)
    remove_stale_temp_files(out_dir)  # what a killed run left half-written
    if backend is None:
        backend = build_backend(cfg, plan.models)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out_dir / CONFIG_NAME,
                     in_dir_resolved=str(Path(cfg.test_dir).resolve()), inputs=plan.inputs)
    result = InpaintResult(out_dir)
    for it in plan.items:
        if not it.transform and not (out_dir / it.out_name).exists():
            copy_original(it.record.path, out_dir / it.out_name)
            result.copied += 1
    todo = [it for it in plan.transformed() if not (out_dir / it.out_name).exists()]
    result.reused = len(plan.transformed()) - len(todo)
    # images of one model together, so that every call is a full batch of one model; a
    # batch never spans two models (they may work at different image sizes)
    def model_of(it: PlanItem) -> str:
        return backend.group_key(plan.models[it.record.label])

    todo.sort(key=model_of)
    chunks = []
    for _, group in groupby(todo, key=model_of):
        group = list(group)
        chunks += [group[i:i + cfg.batch_size] for i in range(0, len(group), cfg.batch_size)]
    bar = tqdm(total=len(todo), desc=f"{backend.name}", unit="img",
               disable=not progress or not todo)
    for chunk in chunks:
        _transform_batch(plan, backend, chunk, out_dir)
        result.generated += len(chunk)
        bar.update(len(chunk))
    bar.close()
    record_generated(out_dir, _manifest_rows(plan, out_dir))
    done = [it for it in plan.transformed() if (out_dir / it.out_name).exists()]
    if cfg.samples and done:
        triples = [(it.record.path, out_dir / it.mask_name, out_dir / it.out_name)
                   for it in done[:cfg.samples]]
        result.sheet = write_triples(triples, out_dir / "samples.png",
                                     title=f"{cfg.augm_type}: original | mask | result")
    return result
