"""Generation and RePaint inpainting with a trained run folder, written with provenance.

Every image gets a manifest row in `out_dir/manifest.csv` (generator `ddim` or `repaint`,
seed, params {eta, steps, model, ...}). File names keep the label and the provenance and never
collide: `ddim_<label>_<run>_seed<seed>-<k>_<content hash>.png` (the part before the first
`_`, `ddim`, is the site_id that stage 1's file-name rule reads); inpainted images are named
`<original stem>_repaint_<run>_seed<seed>-<k>_<hash>.png` and keep the original's site.

Example:
    >>> cfg = DiffusionConfig(runtime="inference", model_dir="results/L2_2025...", out_dir="gen")
    >>> written = generate_to_folder(cfg)
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli.flags import ConfigError
from config import DiffusionConfig
from dataset.generated import record_generated, save_generated
from dataset.images import ImageLoadError, is_image_name, to_uint8
from dataset.manifest import ManifestRow
from dataset.out_dir import check_outside_inputs
from dataset.scan import DatasetError, natural_key, site_from_name
from diffusion.data import load_image, load_mask
from diffusion.training import read_run, safe_name, setup_runtime, with_architecture_of
from model_folder.folder import ModelFolder

SYNTHETIC_SITE = "ddim"


def sampling_runtime(model_dir: str | Path, cfg: DiffusionConfig | None = None) -> str:
    """Chooses devices and precision for sampling, once, before any model is loaded:
    `cfg`'s settings, else the ones the run folder trained with. Returns the dtype policy.

    Example:
        >>> sampling_runtime("models/run1")
        'mixed_bfloat16'
    """
    if Path(model_dir).is_file():
        model_dir = Path(model_dir).parent
    settings = cfg if cfg is not None else read_run(model_dir)[0]
    policy, _ = setup_runtime(dataclasses.replace(settings, distribute="none"))
    return policy


def load_model(model_dir: str | Path, which: str = "best", cfg: DiffusionConfig | None = None):
    """Rebuilds a run folder's model and loads its weights; sets no global state.

    The network comes from the folder's model.json (its own description), or, in folders
    written before that existed, from the architecture settings in its config.json. Devices
    and precision are the caller's: call `sampling_runtime` first to choose them.

    Args:
        model_dir: the run folder, or one of its `.weights.h5` files (then that one loads).
        which: "best" (falls back to "last" when there is no best yet) or "last".
        cfg: settings of this run; the architecture comes from the folder.

    Returns:
        (model, cfg with the saved architecture, metadata dict with _label, _class_names).
    """
    folder = ModelFolder.open(model_dir, "diffusion")   # a stray file is named, not its folder
    saved, meta = read_run(folder.path)
    cfg = with_architecture_of(cfg, saved, quiet=True) if cfg is not None else saved
    model = folder.load(which)
    return model, cfg, meta


def require_method(model, method: str, model_dir, what: str) -> None:
    """Fails in one line when a loaded model cannot do `method` (a GAN neither inpaints nor
    varies real images).

    Raises:
        ConfigError: naming the folder, the model's kind and what it cannot do.
    """
    if not hasattr(model, method):
        raise ConfigError(f"model {model_dir} is a {type(model).__name__}, which cannot "
                          f"{what}: use a diffusion model's folder")


def _content_hash(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()[:10]


def _targets(cfg: DiffusionConfig, meta: dict) -> list[tuple[str, int | None]]:
    """(label name, label id or None) pairs to generate for."""
    names = meta.get("_class_names") or [meta.get("_label", "unknown")]
    if not cfg.conditional:
        return [(meta.get("_label", names[0]), None)]
    wanted = cfg.generate_labels or names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ConfigError(f"--generate_labels {', '.join(unknown)} not among the model's labels "
                          f"({', '.join(names)})")
    return [(w, names.index(w)) for w in wanted]


def generate_to_folder(cfg: DiffusionConfig, progress: bool = True) -> list[Path]:
    """Generates `cfg.images_to_generate` images (per label) into `cfg.out_dir/<label>/`.

    Returns:
        The paths of all requested images, in order (existing identical ones included).
    """
    sampling_runtime(cfg.model_dir, cfg)
    model, cfg, meta = load_model(cfg.model_dir, cfg=cfg)
    out_dir = check_outside_inputs(cfg)   # cfg.in_dir is now the model's training data
    run_name = safe_name(Path(cfg.model_dir).resolve().name)
    written = []
    existing = 0
    for label, label_id in _targets(cfg, meta):
        n = cfg.images_to_generate
        bar = tqdm(total=n, desc=f"generating {label}", unit="img", disable=not progress)
        images = model.generate(n, steps=cfg.generate_diffusion_steps, eta=cfg.eta,
                                seed=cfg.seed, labels=label_id,
                                guidance_scale=cfg.guidance_scale,
                                label_noise_std=cfg.label_noise_std,
                                batch_size=cfg.generate_batch_size,
                                progress=lambda done: bar.update(done - bar.n))
        bar.close()
        params = {"eta": cfg.eta, "steps": cfg.generate_diffusion_steps,
                  "model": str(cfg.model_dir)}
        if label_id is not None:
            params.update(guidance_scale=cfg.guidance_scale, label_noise_std=cfg.label_noise_std)
        rows = []
        for k, img in enumerate(images):
            pixels = to_uint8(img)
            name = (f"{SYNTHETIC_SITE}_{safe_name(label)}_{run_name}_seed{cfg.seed}-{k}_"
                    f"{_content_hash(pixels)}.png")
            path = out_dir / safe_name(label) / name
            written.append(path)
            if path.exists():  # same name = same pixels, already listed: keep it as it is
                existing += 1
                continue
            save_generated(path, pixels)
            rows.append(ManifestRow(path.relative_to(out_dir).as_posix(), label, SYNTHETIC_SITE,
                                    str(cfg.model_dir), "ddim", cfg.seed,
                                    {**params, "index": k}))
        record_generated(out_dir, rows, append=True)
    if existing:
        print(f"{existing} of the images existed already (same model, seed and settings); "
              f"give another --seed for new ones")
    return written


def find_inpainting_pairs(inpainting_dir: str | Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs from `images/` and `masks/` matched by file stem.

    Raises:
        DatasetError: missing folders, or images without a mask.
    """
    root = Path(inpainting_dir)
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir() or not mask_dir.is_dir():
        raise DatasetError(f"{root} needs the sub-folders images/ and masks/ (same file names)")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.is_file() and is_image_name(p)}
    images = sorted((p for p in img_dir.iterdir() if p.is_file() and is_image_name(p)),
                    key=lambda p: natural_key(p.name))
    if not images:
        raise DatasetError(f"no images in {img_dir}")
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise DatasetError(f"{len(missing)} image(s) have no mask of the same name in "
                           f"{mask_dir}, e.g. {missing[0]}")
    return [(p, masks[p.stem]) for p in images]


def inpaint_folder(cfg: DiffusionConfig, progress: bool = True) -> list[Path]:
    """RePaints every image of `cfg.inpainting_dir/images` where its mask is white.

    Images and masks are centre-cropped and resized to the model's size; results go to
    `cfg.out_dir/inpainted/` with manifest rows (generator `repaint`).
    """
    check_outside_inputs(cfg)
    pairs = find_inpainting_pairs(cfg.inpainting_dir)
    sampling_runtime(cfg.model_dir, cfg)
    model, cfg, meta = load_model(cfg.model_dir, cfg=cfg)
    require_method(model, "inpaint", cfg.model_dir, "inpaint")
    images, masks, used, skipped = [], [], [], []
    for img_path, mask_path in pairs:
        try:
            images.append(load_image(img_path, cfg.image_size))
            masks.append(load_mask(mask_path, cfg.image_size))
            used.append((img_path, mask_path))
        except ImageLoadError as err:
            skipped.append(str(err))
    for reason in skipped:
        print(f"skipped: {reason}")
    if not used:
        raise DatasetError(f"no readable image/mask pair in {cfg.inpainting_dir}")
    label_id = None
    targets = _targets(cfg, meta)
    if cfg.conditional:
        label_id = targets[0][1]
    bar = tqdm(total=len(used), desc="inpainting", unit="img", disable=not progress)
    result = model.inpaint(np.stack(images), np.stack(masks), steps=cfg.generate_diffusion_steps,
                           jump_length=cfg.jump_length, jump_n_sample=cfg.jump_n_sample,
                           eta=cfg.eta, seed=cfg.seed, labels=label_id,
                           guidance_scale=cfg.guidance_scale, batch_size=cfg.generate_batch_size,
                           progress=lambda done: bar.update(done - bar.n))
    bar.close()
    out_dir = Path(cfg.out_dir)
    run_name = safe_name(Path(cfg.model_dir).resolve().name)
    label = targets[0][0]
    rows, written = [], []
    for k, ((img_path, mask_path), img) in enumerate(zip(used, result)):
        pixels = to_uint8(img)
        # Starts with the original's name, so the stage-1 rule reads the original's site.
        name = f"{img_path.stem}_repaint_{run_name}_seed{cfg.seed}-{k}_{_content_hash(pixels)}.png"
        path = out_dir / "inpainted" / name
        written.append(path)
        if path.exists():  # the same result is already there and listed
            continue
        save_generated(path, pixels)
        rows.append(ManifestRow(path.relative_to(out_dir).as_posix(), label,
                                site_from_name(img_path.name), str(img_path), "repaint", cfg.seed,
                                {"eta": cfg.eta, "steps": cfg.generate_diffusion_steps,
                                 "jump_length": cfg.jump_length,
                                 "jump_n_sample": cfg.jump_n_sample, "mask": str(mask_path),
                                 "model": str(cfg.model_dir), "index": k}))
    record_generated(out_dir, rows, append=True)
    return written
