"""The interface every generator implements, and the settings and requests it takes.

A generator is built from its loaded models (`Generator.load`, once per run) and then turns
requests into images:

    generator.generate(Request(refs, seed, ...)) -> float32 (N, h, w, c) in [0, 1]
    generator.manifest_params(ref, site_id)      -> its settings, as the manifest records them

A request is one call's worth of images of one model: image k is for the cell
(`refs[k]`'s class, `sites[k]`), drawn from its own seed, and, for a generator that
varies real images, from `sources[k]` (at `image_size(ref)`, read by `load_source`).

Example:
    >>> gen = generator_class("sdedit").load(["models/run1"], Settings(steps=50))
    >>> src = np.stack([gen.load_source("data/1/S1_a.jpg", ref)])
    >>> images = gen.generate(Request((ref,), seed=(7,), sources=src, sites=("S1",)))
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from diffusion.data import load_image
from generators.model_refs import ModelRef, model_id


@dataclass(frozen=True)
class Settings:
    """How a generator samples: one name per setting, whatever the tool calls its flag.

    Args:
        steps: sampling steps of a full generation (an edit takes `strength` of them).
        eta: DDIM noise (0 = deterministic).
        guidance_scale, guidance_rescale, guidance_max_noise: classifier-free guidance
            (`DiffusionModel.generate`).
        batch_size: images per network call.
        strength: SDEdit / Stable Diffusion edits: how far each source is noised.
        weights: which weights of a run folder load ("best" or "last").
        prompt_noise_std: Stable Diffusion: DIAGen's noise on the encoded prompt.
        jump_length, jump_n_sample: RePaint's resampling.
        sd_image_size, sd_dtype: Stable Diffusion: the size and precision it loads at.
        fallback: appended to a preset's load error (what to use instead).
    """
    steps: int
    eta: float = 0.0
    guidance_scale: float = 1.0
    guidance_rescale: float = 0.0
    guidance_max_noise: float = 0.0
    batch_size: int = 32
    strength: float = 0.6
    weights: str = "best"
    prompt_noise_std: float = 0.0
    jump_length: int = 10
    jump_n_sample: int = 10
    sd_image_size: int | None = None
    sd_dtype: str | None = None
    fallback: str = ""


@dataclass(frozen=True)
class Request:
    """One generator call: `len(refs)` images, all of one model (`Generator.group_key`).

    Args:
        refs: image k's model and class.
        seed: an int (image k draws from numpy's default_rng([seed, start_index + k]), so
            it can be regenerated alone with start_index=k) or one seed per image.
        start_index: see `seed`.
        sites: image k's site (None: any site); used by site-conditioned models.
        sources: (N, h, w, c) floats in [0, 1]: the images to vary or inpaint.
        masks: (N, h, w), 1 = regenerate (inpainting).
        prompts: one per image (Stable Diffusion).
    """
    refs: Sequence[ModelRef]
    seed: int | Sequence[int]
    start_index: int = 0
    sites: Sequence[str | None] | None = None
    sources: np.ndarray | None = None
    masks: np.ndarray | None = None
    prompts: Sequence[str] | None = None

    @property
    def count(self) -> int:
        return len(self.refs)


class Generator(ABC):
    """Makes images for (label, site) cells with loaded models.

    Subclasses set `name` (the manifest's generator column) and what their requests need
    (`varies_sources`: each image varies a real image, which the manifest names;
    `follows_prompts`; `trained_models`: run folders, not a preset), implement `load` and
    `generate`, and are listed in `generators.registry`.

    Args:
        models: model folder (or preset) -> loaded model.
        settings: how to sample.
    """
    name = ""
    varies_sources = False   # needs Request.sources: an edit of a real image of the cell
    follows_prompts = False  # needs Request.prompts: one text per image
    trained_models = True    # samples stage-2 run folders (False: a pretrained preset)

    def __init__(self, models: dict, settings: Settings):
        self.models = models
        self.settings = settings

    @classmethod
    @abstractmethod
    def load(cls, model_dirs: Sequence[str], settings: Settings) -> "Generator":
        """Loads every model once (and so checks it) before anything is written.

        Raises:
            ConfigError: a damaged model folder or a model that cannot do this, named.
        """

    def model(self, ref: ModelRef):
        return self.models[ref.model_dir]

    def image_size(self, ref: ModelRef) -> tuple[int, int]:
        """(height, width) the model of `ref` works at."""
        return tuple(self.model(ref).image_size)

    def channels(self, ref: ModelRef) -> int:
        return int(self.model(ref).channels)

    def group_key(self, ref: ModelRef) -> str:
        """Images with equal keys may share one `generate` call."""
        return str(ref.model_dir)

    def load_source(self, path: str | Path, ref: ModelRef) -> np.ndarray:
        """A real image, centre-cropped and resized for `ref`'s model, floats in [0, 1]."""
        return load_image(path, self.image_size(ref), self.channels(ref))

    @abstractmethod
    def generate(self, request: Request) -> np.ndarray:
        """float32 (N, h, w, c) in [0, 1]: image k for request image k."""

    def manifest_params(self, ref: ModelRef, site_id: str | None) -> dict:
        """The settings this generator records in a manifest row of an image of `ref`'s
        class at `site_id`; the caller adds the image's own fields (index, source, ...)."""
        return {"steps": self.settings.steps, "model": model_id(ref)}
