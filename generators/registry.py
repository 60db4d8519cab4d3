"""Every generator by name: the name a tool's flag gives (and the manifest records) -> its
class. Adding a generator means one new module and one line here.

Example:
    >>> gen = load_generator("sdedit", ["models/run1"], Settings(steps=50))
    >>> generator_class("ddim").varies_sources
    False
"""
from __future__ import annotations

from typing import Sequence

from cli.flags import ConfigError
from generators.base import Generator, Settings
from generators.ddim import DdimSampler
from generators.repaint import RePaint
from generators.sd3 import Sd3Img2Img, Sd3Inpaint
from generators.sdedit import SdEdit

GENERATORS: dict[str, type[Generator]] = {
    "ddim": DdimSampler,        # stage 3: from noise (a DDIM run or a GAN run)
    "sdedit": SdEdit,           # stage 3 and the OOD sets: variations of real images
    "sd_img2img": Sd3Img2Img,   # stage 3: Stable Diffusion 3 edits with class prompts
    "repaint": RePaint,         # the OOD sets: our DDIM inpaints the mask
    "sd3_img2img": Sd3Img2Img,  # the OOD sets: Stable Diffusion 3 edits
    "sd3_inpaint": Sd3Inpaint,  # the OOD sets: Stable Diffusion 3 inpaints the mask
}


def generator_class(name: str) -> type[Generator]:
    """The class of generator `name`.

    Raises:
        ConfigError: an unknown name, with the known ones.
    """
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r} (known: {', '.join(GENERATORS)})")
    return GENERATORS[name]


def named(generator: Generator, name: str) -> Generator:
    """`generator` recorded under `name` (one class may serve two names)."""
    generator.name = name
    return generator


def load_generator(name: str, model_dirs: Sequence[str], settings: Settings) -> Generator:
    """Generator `name` with every model of `model_dirs` loaded (and so checked) once.

    Raises:
        ConfigError: an unknown name, a damaged model folder, or a model that cannot do
            what the generator asks of it.
    """
    return named(generator_class(name).load(model_dirs, settings), name)
