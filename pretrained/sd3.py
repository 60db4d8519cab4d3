"""KerasHub Stable Diffusion 3: load a preset, edit one image at a time from its own seed.

`load_sd3_task` builds `StableDiffusion3ImageToImage` or `StableDiffusion3Inpaint` from a
preset name (downloaded from Kaggle / Hugging Face: gated, several GB) or a local preset
folder (`task.save_to_preset(DIR)`), and fails in one line, before any work, when it cannot.

`sd3_img2img` is SD3's image-to-image step written out (encode the image, noise it to
`strength`, denoise with the prompt, decode), so that each image takes its noise from its own
seed and the encoded prompt can carry DIAGen's Gaussian noise (`prompt_noise_std`: varied
images of one class from one prompt).

Example:
    >>> task = load_sd3_task("stable_diffusion_3_medium", "img2img", image_size=512)
    >>> out = sd3_img2img(task, photo, "a photo of a bicycle", seed=7, strength=0.5,
    ...                   prompt_noise_std=0.05)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cli.flags import ConfigError

OFFLINE_HINT = ("Stable Diffusion 3 presets download from Kaggle / Hugging Face (gated, several "
                "GB): pass a local preset folder with --sd_preset")


class PresetError(ConfigError):
    """A Stable Diffusion preset cannot be used; the message says why and what works instead."""


def _looks_like_folder(preset: str) -> bool:
    return "://" not in preset and ("/" in preset or "\\" in preset or preset.startswith("."))


def check_preset_folder(preset: str, fallback: str = "") -> None:
    """Fails at once when `preset` names a local folder that does not exist (a preset name is
    only known to be reachable once it loads).

    Args:
        fallback: what works offline instead, appended to the message.

    Raises:
        PresetError: one line.
    """
    if _looks_like_folder(preset) and not Path(preset).is_dir():
        raise PresetError(f"--sd_preset {preset}: no such folder. {OFFLINE_HINT}{fallback}")


def load_sd3_task(preset: str, mode: str, image_size: int | None = None,
                  dtype: str | None = None, fallback: str = ""):
    """Loads `StableDiffusion3Inpaint` (mode inpaint) or `StableDiffusion3ImageToImage`.

    Args:
        preset: a KerasHub preset name (downloaded) or a local preset folder.
        mode: "inpaint" or "img2img".
        image_size: square size the model works at (default: the preset's).
        dtype: weights' dtype, e.g. "float16" (default: the preset's).
        fallback: what works offline instead (e.g. "; or use --backend ddim"), appended
            to the error.

    Raises:
        PresetError: at once, in one line, when the preset cannot be loaded (no such
            folder, offline, gated, not an SD3 preset).
    """
    check_preset_folder(preset, fallback)
    # why: keras_hub is optional and slow to import (TensorFlow, tensorflow-text)
    import keras_hub

    cls = (keras_hub.models.StableDiffusion3Inpaint if mode == "inpaint"
           else keras_hub.models.StableDiffusion3ImageToImage)
    kwargs = {}
    if image_size:
        kwargs["image_shape"] = (int(image_size), int(image_size), 3)
    if dtype:
        kwargs["dtype"] = dtype
    try:
        return cls.from_preset(preset, **kwargs)
    except Exception as err:  # network, auth, file and format errors all mean "cannot load"
        text = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise PresetError(f"--sd_preset {preset} could not be loaded ({type(err).__name__}: "
                          f"{text}). {OFFLINE_HINT}{fallback}") from None


def image_size_of(task) -> tuple[int, int]:
    """(height, width) the task's model works at."""
    return tuple(int(v) for v in task.backbone.image_shape[:2])


def noisy_embeddings(embeddings, std: float, seed: int):
    """DIAGen's prompt variation: Gaussian noise on the encoded (positive) prompt.

    `std` is relative to each tensor's root mean square, so one value means the same on any
    text encoder. The negative prompt's embeddings stay as they are.

    Args:
        embeddings: SD3's (context, negative context, pooled, negative pooled).
        std: relative noise level (0 = unchanged).
        seed: the noise's seed.
    """
    if std <= 0:
        return embeddings
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    from keras import ops
    rng = np.random.default_rng([int(seed), 1])
    out = list(embeddings)
    for k in (0, 2):
        x = ops.convert_to_numpy(embeddings[k]).astype(np.float32)
        rms = float(np.sqrt(np.mean(np.square(x)))) or 1.0
        noisy = x + std * rms * rng.standard_normal(x.shape).astype(np.float32)
        out[k] = ops.cast(ops.convert_to_tensor(noisy), embeddings[k].dtype)
    return tuple(out)


def sd3_img2img(task, image: np.ndarray, prompt: str, seed: int, strength: float = 0.5,
                num_steps: int = 28, guidance_scale: float = 7.0,
                prompt_noise_std: float = 0.0) -> np.ndarray:
    """One SD3 image-to-image edit, reproducible from `seed` alone.

    Args:
        task: a `StableDiffusion3ImageToImage` (or any SD3 task: only its backbone and
            preprocessor are used).
        image: (H, W, 3) floats in [0, 1] at the task's image size.
        prompt: the text the edit follows.
        seed: draws the latent noise (and the prompt noise).
        strength: how far the image is noised (0 = returned unchanged, 1 = a fresh image).
        num_steps: flow-matching steps of a full generation; `strength` of them are taken.
        guidance_scale: classifier-free guidance against the empty prompt (<= 1: none).
        prompt_noise_std: DIAGen's noise on the encoded prompt (`noisy_embeddings`).

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    from keras import ops

    image = np.asarray(image, np.float32)
    if image.shape[:2] != image_size_of(task) or image.shape[-1] != 3:
        raise ValueError(f"image of shape {image.shape}; the model works at "
                         f"{image_size_of(task)} x 3")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    start = int(num_steps * (1.0 - strength))
    if start >= num_steps:  # no step to take: the input is the answer
        return image.copy()
    backbone = task.backbone
    tokens = task.preprocessor.generate_preprocess([prompt])
    empty = task.preprocessor.generate_preprocess([""])
    latents = backbone.encode_image_step(ops.convert_to_tensor(image[None] * 2.0 - 1.0))
    noise = np.random.default_rng([int(seed), 0]).standard_normal(
        tuple(ops.shape(latents))).astype(np.float32)
    # KerasHub's scheduler layers take the step numbers as tensors only
    steps = [ops.convert_to_tensor(k, "int32") for k in range(num_steps + 1)]
    latents = backbone.add_noise_step(latents, ops.convert_to_tensor(noise), steps[start],
                                      steps[num_steps])
    embeddings = noisy_embeddings(backbone.encode_text_step(tokens, empty),
                                  prompt_noise_std, seed)
    guidance = float(guidance_scale) if guidance_scale > 1.0 else None
    for step in range(start, num_steps):
        latents = backbone.denoise_step(latents, embeddings, steps[step], steps[num_steps],
                                        guidance)
    decoded = ops.convert_to_numpy(backbone.decode_step(latents))[0].astype(np.float32)
    return np.clip((decoded + 1.0) / 2.0, 0.0, 1.0)
