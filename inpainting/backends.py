"""The two generators behind `python3 -m inpainting`: KerasHub Stable Diffusion 3 and our DDIM.

Both take a batch at the model's size and return it regenerated:

    backend.run(images, masks, prompts, labels, seeds) -> float32 (N, h, w, 3) in [0, 1]

images are floats in [0, 1], masks (h, w) with 1 = regenerate, one prompt, class name and
seed per image. `image_size_for(label)` is the (h, w) the pipeline crops and resizes to,
`group_key(label)` says which images can share a model call.

- `KerasHubBackend`: `keras_hub.models.StableDiffusion3Inpaint` / `...ImageToImage` (KerasHub
  carries KerasCV's Stable Diffusion; KerasCV 0.9 has no inpainting any more). Built from a
  preset by `pretrained.sd3.load_sd3_task`, or from any task object (tests pass a tiny random
  one).
- `DdimBackend`: the project's DDIM runs; RePaint (`DiffusionModel.inpaint`) or SDEdit
  (`DiffusionModel.img2img`), batched, each image with its own seed.

Example:
    >>> backend = KerasHubBackend(load_sd3_task("path/to/sd3_preset", "inpaint"),
    ...                           "inpaint", num_steps=28, guidance_scale=7.0, strength=1.0)
    >>> out = backend.run(images, masks, ["a red kayak"] * 2, ["1", "1"], [11, 12])
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from cli.flags import ConfigError
from pretrained.sd3 import load_sd3_task, sd3_img2img

GENERATORS = {("keras_hub", "inpaint"): "sd3_inpaint", ("keras_hub", "img2img"): "sd3_img2img",
              ("ddim", "inpaint"): "repaint", ("ddim", "img2img"): "sdedit"}
DDIM_FALLBACK = (", or use --backend ddim, which works offline with your own DDIM runs "
                 "(--model_dir)")


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


class KerasHubBackend:
    """Stable Diffusion 3 through a KerasHub task object.

    One image per `generate` call: KerasHub draws the noise of a whole call from one seed,
    so batching would tie an image's result to its batch mates; one call per image keeps
    image k reproducible alone from its own seed.

    Args:
        task: a built `StableDiffusion3Inpaint` (mode inpaint) or `...ImageToImage`.
        mode: "inpaint" or "img2img".
        num_steps, guidance_scale, strength: as in KerasHub's `generate`.
    """

    name = "keras_hub"

    def __init__(self, task, mode: str, num_steps: int, guidance_scale: float,
                 strength: float, model_name: str = "keras_hub task"):
        self.task = task
        self.mode = mode
        self.num_steps = int(num_steps)
        self.guidance_scale = float(guidance_scale)
        self.strength = float(strength)
        self.model_name = model_name
        self.generator = GENERATORS[(self.name, mode)]
        self._size = tuple(int(v) for v in task.backbone.image_shape[:2])

    def image_size_for(self, label: str) -> tuple[int, int]:
        return self._size

    def group_key(self, label: str) -> str:
        return ""

    def model_for(self, label: str) -> str:
        return self.model_name

    def run(self, images: np.ndarray, masks: np.ndarray, prompts: Sequence[str],
            labels: Sequence[str], seeds: Sequence[int],
            progress: Callable[[int], None] | None = None) -> np.ndarray:
        # KerasHub 0.32 turns a guidance scale <= 1 into None and then fails on it;
        # 1 + 1e-6 gives the same result (cond + (g - 1) * (cond - uncond)).
        guidance = max(self.guidance_scale, 1.0 + 1e-6)
        out = np.empty(np.shape(images), np.float32)
        for k, (image, mask, prompt, seed) in enumerate(zip(images, masks, prompts, seeds)):
            if self.mode == "img2img":  # the same edit as stage 3's sd_img2img
                out[k] = sd3_img2img(self.task, image, prompt, int(seed), self.strength,
                                     self.num_steps, self.guidance_scale)
            else:
                inputs = {"images": np.asarray(image, np.float32)[None] * 2.0 - 1.0,
                          "prompts": [prompt], "masks": latent_aligned(mask)[None]}
                result = self.task.generate(inputs, num_steps=self.num_steps,
                                            strength=self.strength, guidance_scale=guidance,
                                            seed=int(seed))
                out[k] = np.asarray(result, np.float32).reshape(out[k].shape) / 255.0
            if progress is not None:
                progress(k + 1)
        return out


class DdimBackend:
    """The project's DDIM runs: RePaint inpainting or SDEdit img2img, batched per model.

    Args:
        refs: class name -> `gap_filling.run.ModelRef` (run folder, class index if the
            model is conditional).
        models: run folder -> loaded `DiffusionModel`.
        mode: "inpaint" (RePaint) or "img2img" (SDEdit).
        num_steps, eta, guidance_scale, strength, jump_length, jump_n_sample, batch_size:
            as in `DiffusionModel.inpaint` / `img2img`.
    """

    name = "ddim"

    def __init__(self, refs: dict, models: dict, mode: str, num_steps: int, eta: float,
                 guidance_scale: float, strength: float, jump_length: int = 10,
                 jump_n_sample: int = 10, batch_size: int = 8):
        self.refs, self.models, self.mode = refs, models, mode
        self.num_steps, self.eta = int(num_steps), float(eta)
        self.guidance_scale, self.strength = float(guidance_scale), float(strength)
        self.jump_length, self.jump_n_sample = int(jump_length), int(jump_n_sample)
        self.batch_size = int(batch_size)
        self.generator = GENERATORS[(self.name, mode)]

    @classmethod
    def from_refs(cls, refs: dict, mode: str, **settings) -> "DdimBackend":
        """Loads every run folder of `refs` once (several classes may share one)."""
        from diffusion.inference import load_model, require_method, sampling_runtime
        models = {}
        if refs:
            sampling_runtime(next(iter(refs.values())).model_dir)
        for ref in refs.values():
            if ref.model_dir not in models:
                models[ref.model_dir] = load_model(ref.model_dir)[0]
                require_method(models[ref.model_dir], "inpaint" if mode == "inpaint"
                               else "img2img", ref.model_dir, "inpaint or vary real images")
        return cls(refs, models, mode, **settings)

    def _model(self, label: str):
        return self.models[self.refs[label].model_dir]

    def image_size_for(self, label: str) -> tuple[int, int]:
        return tuple(self._model(label).image_size)

    def group_key(self, label: str) -> str:
        return str(self.refs[label].model_dir)

    def model_for(self, label: str) -> str:
        return str(Path(self.refs[label].model_dir).resolve())

    def run(self, images: np.ndarray, masks: np.ndarray, prompts: Sequence[str],
            labels: Sequence[str], seeds: Sequence[int],
            progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.empty(np.shape(images), np.float32)
        groups: dict[str, list[int]] = {}
        for k, label in enumerate(labels):
            groups.setdefault(self.group_key(label), []).append(k)
        done = 0
        for idx in groups.values():
            model = self._model(labels[idx[0]])
            classes = [self.refs[labels[k]].class_index for k in idx]
            common = dict(steps=self.num_steps, eta=self.eta, seed=[int(seeds[k]) for k in idx],
                          labels=None if classes[0] is None else classes,
                          guidance_scale=self.guidance_scale, batch_size=self.batch_size)
            batch = np.stack([images[k] for k in idx])
            if self.mode == "inpaint":
                result = model.inpaint(batch, np.stack([masks[k] for k in idx]),
                                       jump_length=self.jump_length,
                                       jump_n_sample=self.jump_n_sample, **common)
            else:
                result = model.img2img(batch, strength=self.strength, **common)
            out[idx] = result
            done += len(idx)
            if progress is not None:
                progress(done)
        return out


def resolve_ddim_models(cfg, labels: Sequence[str]) -> dict:
    """Which DDIM run serves each class, from the run folders' config.json (no Keras).

    Stage 3's rules: a `--model_dir` run serves the class(es) in its config.json (a
    conditional model serves all its classes); `--label_models CLASS=DIR` pairs win.

    Raises:
        ConfigError: a folder is not a trained run, or a class has no model.
    """
    from gap_filling.run import resolve_label_models
    view = SimpleNamespace(weight_paths=cfg.model_dir, label_model_pairs=cfg.label_model_pairs)
    try:
        return resolve_label_models(view, list(labels))
    except ConfigError as err:
        raise ConfigError(str(err).replace("--weight_paths", "--model_dir")) from None


def build_backend(cfg, refs: dict | None = None):
    """The backend a resolved `InpaintingConfig` asks for, loaded (fails before any work).

    Args:
        cfg: the resolved config (`InpaintingConfig.resolved()`).
        refs: for ddim, class -> ModelRef from `resolve_ddim_models`.
    """
    if cfg.backend == "keras_hub":
        task = load_sd3_task(cfg.sd_preset, cfg.mode, cfg.sd_image_size, cfg.sd_dtype,
                             DDIM_FALLBACK)
        return KerasHubBackend(task, cfg.mode, cfg.num_steps, cfg.guidance_scale, cfg.strength,
                               model_name=cfg.sd_preset)
    return DdimBackend.from_refs(refs or {}, cfg.mode, num_steps=cfg.num_steps, eta=cfg.eta,
                                 guidance_scale=cfg.guidance_scale, strength=cfg.strength,
                                 jump_length=cfg.jump_length, jump_n_sample=cfg.jump_n_sample,
                                 batch_size=cfg.batch_size)
