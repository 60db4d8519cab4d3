"""Stable Diffusion 3 through KerasHub (pretrained; KerasHub carries KerasCV's Stable
Diffusion): each real image edited (`sd_img2img`, DA-Fusion) or its masked part inpainted
(`sd3_inpaint`), following a prompt.

One image per model call: KerasHub draws the noise of a whole call from one seed, so
batching would tie an image's result to its batch mates; one call per image keeps image k
reproducible alone from its own seed.

Example:
    >>> gen = Sd3Img2Img.load(["path/to/sd3_preset"], Settings(steps=28, strength=0.6))
    >>> out = gen.generate(Request((ref,), seed=[11], sources=images, prompts=["a kayak"]))
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from generators.base import Generator, Request, Settings
from generators.model_refs import ModelRef
from pretrained.sd3 import image_size_of, load_sd3_task, sd3_img2img


def latent_aligned(mask: np.ndarray, factor: int = 8) -> np.ndarray:
    """The mask grown to whole `factor` x `factor` cells (SD3's latent pixels).

    KerasHub shrinks the mask to the latent grid by nearest neighbour, which samples one
    pixel per cell and can miss a small or thin mask; a cell touched by the mask is masked
    whole here, so the model regenerates everything the paste-back will use.

    Example:
        >>> m = np.zeros((16, 16)); m[9, 2] = 1
        >>> latent_aligned(m)[8:16, 0:8].all(), latent_aligned(m).sum()
        (True, 64.0)
    """
    h, w = mask.shape
    if h % factor or w % factor:
        return np.asarray(mask, np.float32)
    cells = np.asarray(mask, np.float32).reshape(h // factor, factor, w // factor, factor)
    touched = cells.max(axis=(1, 3))
    return np.repeat(np.repeat(touched, factor, axis=0), factor, axis=1)


class Sd3Img2Img(Generator):
    """A KerasHub SD3 task (one for every label) edits each source after its prompt.

    Args:
        models: preset (or any name) -> a built `StableDiffusion3ImageToImage` (or
            `...Inpaint` for `Sd3Inpaint`); tests pass tiny random ones.
        settings: steps, strength, guidance_scale, prompt_noise_std.
    """
    name = "sd_img2img"
    varies_sources = True
    follows_prompts = True
    trained_models = False
    mode = "img2img"

    @classmethod
    def load(cls, model_dirs: Sequence[str], settings: Settings) -> "Sd3Img2Img":
        """Loads each preset (a KerasHub name or a local folder) once.

        Raises:
            PresetError: a preset that cannot be loaded, with `settings.fallback`.
        """
        return cls({preset: load_sd3_task(preset, cls.mode, settings.sd_image_size,
                                          settings.sd_dtype, settings.fallback)
                    for preset in dict.fromkeys(model_dirs)}, settings)

    def model(self, ref: ModelRef):
        # one task serves every label; a task passed in directly serves any preset name
        if ref.model_dir in self.models:
            return self.models[ref.model_dir]
        return next(iter(self.models.values()))

    def image_size(self, ref: ModelRef) -> tuple[int, int]:
        return image_size_of(self.model(ref))

    def channels(self, ref: ModelRef) -> int:
        return 3

    def group_key(self, ref: ModelRef) -> str:
        return ""

    def edit(self, task, image, mask, prompt: str, seed: int) -> np.ndarray:
        s = self.settings
        return sd3_img2img(task, image, prompt, seed, s.strength, s.steps, s.guidance_scale,
                           s.prompt_noise_std)

    def generate(self, request: Request) -> np.ndarray:
        masks = request.masks if request.masks is not None else [None] * request.count
        out = [self.edit(self.model(ref), image, mask, prompt, int(seed))
               for ref, image, mask, prompt, seed in zip(request.refs, request.sources, masks,
                                                         request.prompts, request.seed)]
        return np.stack(out).astype(np.float32)

    def manifest_params(self, ref: ModelRef, site_id: str | None) -> dict:
        s = self.settings  # SD3's flow-matching sampler has no eta
        return {**super().manifest_params(ref, site_id), "strength": s.strength,
                "guidance_scale": s.guidance_scale, "prompt_noise_std": s.prompt_noise_std}


class Sd3Inpaint(Sd3Img2Img):
    """A KerasHub `StableDiffusion3Inpaint` regenerates each source where its mask is 1."""
    name = "sd3_inpaint"
    mode = "inpaint"

    def edit(self, task, image, mask, prompt: str, seed: int) -> np.ndarray:
        s = self.settings
        # KerasHub 0.32 turns a guidance scale <= 1 into None and then fails on it;
        # 1 + 1e-6 gives the same result (cond + (g - 1) * (cond - uncond)).
        guidance = max(s.guidance_scale, 1.0 + 1e-6)
        inputs = {"images": np.asarray(image, np.float32)[None] * 2.0 - 1.0,
                  "prompts": [prompt], "masks": latent_aligned(mask)[None]}
        result = task.generate(inputs, num_steps=s.steps, strength=s.strength,
                               guidance_scale=guidance, seed=seed)
        return np.asarray(result, np.float32).reshape(np.shape(image)) / 255.0
