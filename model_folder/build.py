"""Stage-2 networks built from their description: model.json's constructor arguments, or
the settings (a DiffusionConfig) with every argument taken from the field of its name.

No hand-kept list maps settings to arguments: `constructor_arguments` reads the model's
constructor. A setting named differently carries the model's prefix (`unet_dropout` is the
DiffusionModel's `dropout`, `gan_latent_dim` the ConditionalGan's `latent_dim`); an
argument with no setting keeps its default only when listed in `_DEFAULT_ONLY`.

Example:
    >>> model = build_image_model(DiffusionConfig(channels="1"), num_classes=3)
    >>> type(model).__name__, model.channels
    ('DiffusionModel', 1)
"""
from __future__ import annotations

import inspect

from cli.flags import ConfigError

# Settings named with the model's prefix where the constructor has the plain name.
_PREFIX = {"DiffusionModel": "unet_", "ConditionalGan": "gan_"}
# Constructor arguments that no setting chooses: the model's default is used.
_DEFAULT_ONLY = {"ConditionalGan": ("diffaugment",)}


def image_model_classes() -> dict:
    """{class name: class} of the stage-2 models (imported here: they bring TensorFlow)."""
    # why: the network modules import Keras (TensorFlow, seconds)
    from diffusion_model import DiffusionModel
    from gan_model import ConditionalGan
    return {cls.__name__: cls for cls in (DiffusionModel, ConditionalGan)}


def constructor_arguments(cls, settings, given: dict) -> dict:
    """The keyword arguments of `cls(...)`: `given` first, then each remaining parameter
    from the field of `settings` of its name (with the class's prefix, if that field exists).

    Raises:
        TypeError: a parameter that no field, `given` or `_DEFAULT_ONLY` provides (a new
            model argument needs a setting, or a decision that it has none).

    Example:
        >>> constructor_arguments(ConditionalGan, cfg, {"num_classes": 3})["latent_dim"]
        64
    """
    prefix, defaults = _PREFIX.get(cls.__name__, ""), _DEFAULT_ONLY.get(cls.__name__, ())
    args = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if name in given:
            args[name] = given[name]
        elif hasattr(settings, prefix + name):
            args[name] = getattr(settings, prefix + name)
        elif hasattr(settings, name):
            args[name] = getattr(settings, name)
        elif name not in defaults:
            raise TypeError(f"{cls.__name__} takes {name}, which no setting of "
                            f"{type(settings).__name__} provides")
    return args


def build_image_model(cfg, num_classes: int = 0, num_sites: int = 0,
                      augment_dims: int = 0):
    """A DiffusionModel (or, with `cfg.model == "gan"`, a ConditionalGan) with the
    architecture of `cfg` (the dtype policy must already be set).

    Args:
        cfg: a DiffusionConfig with `channels` resolved ('1' or '3').
        num_classes: labels of a conditional model (0: unconditional).
        num_sites: sites, used when `cfg.site_conditioning` is on (DDIM only).
        augment_dims: length of the augmentation vector (DDIM only).

    Raises:
        ConfigError: channels not resolved; ValueError: arguments the model refuses.
    """
    if cfg.channels not in ("1", "3"):
        raise ConfigError(f"channels must be resolved to 1 or 3 before building, got "
                         f"{cfg.channels!r}")
    cls = image_model_classes()["ConditionalGan" if cfg.model == "gan" else "DiffusionModel"]
    given = {"num_classes": int(num_classes), "channels": int(cfg.channels)}
    if cfg.model != "gan":
        given.update(num_sites=int(num_sites) if cfg.site_conditioning else 0,
                     augment_dims=int(augment_dims))
    return cls(**constructor_arguments(cls, cfg, given))
