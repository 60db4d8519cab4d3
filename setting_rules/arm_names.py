"""The names of `classifier.compare`'s arms and the grammar they obey: which are generative,
which fill, which start from another arm's run (pure, no Keras, no project imports: config.py
checks `--variants` and `--fill_dirs` with these rules, `classifier.arms` re-exports them).

Arm names:
- `original`: the real training images, shuffled, no augmentation.
- `rebalanced`: the same images in class-balanced batches (what the counts alone give).
- `classic`: the real images with online classic augmentation (strength chosen on validation).
- `logit_adjusted`: the real images, logit-adjusted loss (Menon et al. 2021, --la_tau).
- `crt`: the `original` run's encoder with its head re-trained in class-balanced batches
  (Kang et al. 2020, --crt_epochs): trained once, never twice.
- `classic_fill`: the gap filled with classic augmentations of real images (--classic_fill_dir).
- `diffusion_fill`: the gap filled with generated images (--balanced_dir); `synthetic` is an
  old name for it.
- `feature_fill`: the `original` run's encoder, a diffusion model over its features fills
  every label up to the largest, and the head is re-trained on real + generated features
  (LDMLR); `feature_fill+la` starts from the `logit_adjusted` run instead and re-trains the
  head with the logit-adjusted loss.
- any NAME of `--fill_dirs NAME=DIR`: another generated fill (e.g. `sdedit_fill`).
- a fill arm with `+classic` (online classic augmentation on top), `+diagen` (DIAGen
  weights of its non-real images) and/or `+la` (the logit-adjusted loss), e.g.
  `diffusion_fill+classic+la`.

Example:
    >>> normalise_arm("synthetic+diagen")
    'diffusion_fill+diagen'
    >>> is_generative("classic_fill+classic")
    False
"""
from __future__ import annotations

import re
from typing import Sequence

NON_GENERATIVE = ("original", "rebalanced", "classic", "logit_adjusted", "crt", "classic_fill")
FILL_ARMS = ("classic_fill", "diffusion_fill")
FEATURE_ARMS = ("feature_fill",)          # generated in feature space, from a finished run
BASE_ARMS = NON_GENERATIVE + ("diffusion_fill",) + FEATURE_ARMS
SUFFIXES = ("classic", "diagen", "la")    # canonical order in names
# The arm whose finished run (same seed) an arm starts from instead of training an encoder.
STARTS_FROM = {"crt": "original", "feature_fill": "original", "feature_fill+la": "logit_adjusted"}
ALIASES = {"synthetic": "diffusion_fill"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ArmError(ValueError):
    """An arm name that does not parse; the message lists what would."""


def split_arm(name: str, fill_names: Sequence[str] = ()) -> tuple[str, tuple[str, ...]]:
    """(base arm, suffixes in canonical order) of an arm name; aliases resolved.

    Raises:
        ArmError: unknown base, unknown or repeated suffix, or a suffix on a non-fill arm.
    """
    base, *suffixes = name.strip().split("+")
    base = ALIASES.get(base, base)
    fills = FILL_ARMS + tuple(fill_names)
    if base not in BASE_ARMS and base not in fill_names:
        raise ArmError(f"unknown arm {name!r}: arms are {', '.join(BASE_ARMS)}"
                       + (f", {', '.join(fill_names)} (--fill_dirs)" if fill_names else "")
                       + ", and fill arms with +classic and/or +diagen")
    bad = [s for s in suffixes if s not in SUFFIXES]
    if bad or len(set(suffixes)) != len(suffixes):
        raise ArmError(f"arm {name!r}: suffixes are +classic, +diagen and +la, each at most "
                       f"once")
    if suffixes and base not in fills + FEATURE_ARMS:
        raise ArmError(f"arm {name!r}: only fill arms ({', '.join(fills + FEATURE_ARMS)}) "
                       f"take +classic, +diagen or +la ('classic' is already the augmented "
                       f"real-only arm, 'logit_adjusted' the real-only arm with that loss)")
    if base in FEATURE_ARMS and set(suffixes) - {"la"}:
        raise ArmError(f"arm {name!r}: {base} works on features, not images: of the suffixes "
                       f"only +la applies")
    return base, tuple(s for s in SUFFIXES if s in suffixes)


def normalise_arm(name: str, fill_names: Sequence[str] = ()) -> str:
    """The canonical spelling of an arm name (alias resolved, suffixes ordered)."""
    base, suffixes = split_arm(name, fill_names)
    return "+".join((base, *suffixes))


def is_generative(name: str) -> bool:
    """Whether an arm trains on generated images: every fill arm except classic_fill (an
    arm name that fails to parse, e.g. a --fill_dirs name, counts as generative)."""
    base = ALIASES.get(name.split("+")[0], name.split("+")[0])
    return base not in NON_GENERATIVE


def starts_from(name: str) -> str | None:
    """The arm whose finished run of the same seed `name` starts from (crt, feature_fill),
    or None for an arm that trains its own network.

    Example:
        >>> starts_from("feature_fill+la"), starts_from("original")
        ('logit_adjusted', None)
    """
    return STARTS_FROM.get(name)


def uses_classic(name: str) -> bool:
    """Whether an arm applies online classic augmentation (`classic` and `+classic` arms)."""
    parts = name.split("+")
    return parts[0] == "classic" or "classic" in parts[1:]


def parse_fill_dirs(specs: Sequence[str] | None) -> dict[str, str]:
    """`NAME=DIR` specs of extra generated fills -> {name: dir}.

    Raises:
        ArmError: a malformed spec, a name that is not lower_snake_case, a name of a built-in
            arm, or a repeated name.

    Example:
        >>> parse_fill_dirs(["sdedit_fill=runs/sdedit"])
        {'sdedit_fill': 'runs/sdedit'}
    """
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, folder = spec.partition("=")
        name = name.strip()
        if not sep or not folder.strip():
            raise ArmError(f"--fill_dirs expects NAME=DIR, got {spec!r}")
        if not _NAME.match(name) or name in BASE_ARMS or name in ALIASES:
            raise ArmError(f"--fill_dirs name {name!r}: use lower_snake_case, not a built-in "
                           f"arm name ({', '.join(BASE_ARMS)})")
        if name in out:
            raise ArmError(f"--fill_dirs: {name} is given twice")
        out[name] = folder.strip()
    return out

