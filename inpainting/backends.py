"""The generators behind `python3 -m inpainting`: which one a resolved `InpaintingConfig`
asks for, and which DDIM run serves each class. The generators themselves are
`generators/` (shared with stage 3):

    backend ddim,      mode inpaint -> repaint      (RePaint with our DDIM)
    backend ddim,      mode img2img -> sdedit       (SDEdit with our DDIM)
    backend keras_hub, mode inpaint -> sd3_inpaint  (KerasHub Stable Diffusion 3)
    backend keras_hub, mode img2img -> sd3_img2img

Example:
    >>> refs = resolve_ddim_models(cfg, ["1", "2"])
    >>> generator = build_backend(cfg, refs)        # a `generators.base.Generator`, loaded
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

from cli.flags import ConfigError
from generators.base import Generator, Settings
from generators.model_refs import ModelRef, resolve_label_models
from generators.registry import load_generator

GENERATORS = {("keras_hub", "inpaint"): "sd3_inpaint", ("keras_hub", "img2img"): "sd3_img2img",
              ("ddim", "inpaint"): "repaint", ("ddim", "img2img"): "sdedit"}
DDIM_FALLBACK = (", or use --backend ddim, which works offline with your own DDIM runs "
                 "(--model_dir)")


def sampling_settings(cfg) -> Settings:
    """How the generator samples, from a resolved `InpaintingConfig`."""
    return Settings(steps=cfg.num_steps, eta=cfg.eta, guidance_scale=cfg.guidance_scale,
                    strength=cfg.strength, jump_length=cfg.jump_length,
                    jump_n_sample=cfg.jump_n_sample, batch_size=cfg.batch_size,
                    sd_image_size=cfg.sd_image_size, sd_dtype=cfg.sd_dtype,
                    fallback=DDIM_FALLBACK)


def resolve_ddim_models(cfg, labels: Sequence[str]) -> dict:
    """Which DDIM run serves each class, from the run folders' config.json (no Keras).

    Stage 3's rules: a `--model_dir` run serves the class(es) in its config.json (a
    conditional model serves all its classes); `--label_models CLASS=DIR` pairs win.

    Raises:
        ConfigError: a folder is not a trained run, or a class has no model.
    """
    view = SimpleNamespace(weight_paths=cfg.model_dir, label_model_pairs=cfg.label_model_pairs)
    try:
        return resolve_label_models(view, list(labels))
    except ConfigError as err:
        raise ConfigError(str(err).replace("--weight_paths", "--model_dir")) from None


def class_models(cfg, labels: Sequence[str]) -> dict[str, ModelRef]:
    """class -> the model that transforms its images: its DDIM run (`resolve_ddim_models`),
    or the Stable Diffusion 3 preset for every class."""
    if cfg.backend == "ddim":
        return resolve_ddim_models(cfg, labels)
    return {label: ModelRef(cfg.sd_preset, None) for label in labels}


def build_backend(cfg, refs: dict) -> Generator:
    """The generator a resolved `InpaintingConfig` asks for, loaded (fails before any work).

    Args:
        cfg: the resolved config (`InpaintingConfig.resolved()`).
        refs: class -> ModelRef, from `class_models`.
    """
    name = GENERATORS[(cfg.backend, cfg.mode)]
    dirs = [cfg.sd_preset] if cfg.backend == "keras_hub" else [r.model_dir for r in refs.values()]
    return load_generator(name, dirs, sampling_settings(cfg))
