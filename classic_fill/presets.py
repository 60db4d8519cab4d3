"""The albumentations pipelines classic_fill applies: named presets or a user's file.

Every pipeline is returned as an `A.ReplayCompose`, so each call records the parameters it
drew (see `classic_fill.replay`). Presets pad with reflected pixels instead of black corners:
a black wedge is a cue a classifier can learn that no real image has.

Example:
    >>> transform = build_preset("micro")
    >>> transform = load_pipeline_file("my_policy.yaml")   # as A.save(..., data_format="yaml")
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from cli.flags import ConfigError

PRESETS = {
    "upright": "horizontal flips only, shift/scale/rotate (10 deg, 5%, 0.9-1.1), "
               "brightness/contrast 0.15: photos with an up (scenes, animals, products)",
    "light": "horizontal and vertical flips, shift/scale/rotate (10 deg, 5%, 0.9-1.1), "
             "brightness/contrast 0.15: objects without a fixed orientation",
    "micro": "rotation by any angle, both flips, zoom 0.9-1.15, brightness/contrast 0.2: "
             "microscopy, satellite and other top-down images",
}


def preset_transforms(name: str) -> list:
    """The transforms of a named preset (fresh objects, for any Compose).

    Raises:
        ConfigError: an unknown name.
    """
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    import cv2

    reflect = cv2.BORDER_REFLECT_101
    # keep_ratio: one scale for both axes (a squashed object is not a real one). p=1: every
    # image is moved by a continuous amount, so none is a plain copy of its source.
    shift_scale_rotate = A.Affine(translate_percent=(-0.05, 0.05), scale=(0.9, 1.1),
                                  keep_ratio=True, rotate=(-10, 10), border_mode=reflect, p=1.0)
    brightness = A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5)
    if name == "upright":
        return [A.HorizontalFlip(p=0.5), shift_scale_rotate, brightness]
    if name == "light":
        return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), shift_scale_rotate, brightness]
    if name == "micro":
        return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5),
                A.Affine(rotate=(-180, 180), scale=(0.9, 1.15), keep_ratio=True,
                         border_mode=reflect, p=1.0),
                A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5)]
    raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")


def build_preset(name: str):
    """The ReplayCompose of a named preset (see PRESETS).

    Raises:
        ConfigError: an unknown name.
    """
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    return A.ReplayCompose(preset_transforms(name))


def as_replay_compose(transform):
    """Wraps any albumentations transform (a Compose, OneOf, a single op) as ReplayCompose,
    keeping a top-level Compose's probability."""
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    if isinstance(transform, A.ReplayCompose):
        return transform
    if type(transform) is A.Compose:
        return A.ReplayCompose(list(transform.transforms), p=transform.p)
    return A.ReplayCompose([transform])


def load_pipeline_file(path: str | Path):
    """Reads an albumentations pipeline saved by `A.save` (JSON, or YAML by suffix).

    Args:
        path: a `.json`, `.yaml` or `.yml` file.

    Example:
        >>> A.save(A.Compose([A.HorizontalFlip(p=0.5)]), "flip.json")
        >>> load_pipeline_file("flip.json")

    Raises:
        ConfigError: one line naming the file and what is wrong with it.
    """
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A

    path = Path(path)
    where = f"--pipeline {path}"
    if not path.is_file():
        raise ConfigError(f"{where}: file not found")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"{where}: expected a .json, .yaml or .yml file (as A.save writes)")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        kind = "JSON" if suffix == ".json" else "YAML"
        reason = " ".join(str(err).split())
        raise ConfigError(f"{where}: not valid {kind} ({reason})") from None
    if not isinstance(data, dict) or not isinstance(data.get("transform"), dict):
        raise ConfigError(f"{where}: not an albumentations pipeline (expected an object with "
                          f"a 'transform' key, as A.save writes)")
    try:
        transform = A.from_dict(data)
    except KeyError as err:
        raise ConfigError(f"{where}: unknown transform or missing key {err} (albumentations "
                          f"{A.__version__})") from None
    except (TypeError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"{where}: invalid transform settings ({reason})") from None
    return as_replay_compose(transform)


def resolve_pipeline(preset: str | None, pipeline: str | None, default: str = "upright"):
    """The ReplayCompose to apply: the pipeline file if given, else the preset (or default)."""
    return load_pipeline_file(pipeline) if pipeline else build_preset(preset or default)


def pipeline_json(transform) -> str:
    """The transform's albumentations serialisation as canonical JSON (what workers rebuild
    and what identifies the pipeline, whatever the file's formatting)."""
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    return json.dumps(A.to_dict(transform), sort_keys=True)


def pipeline_sha(spec: str) -> str:
    """sha1 of a `pipeline_json` string."""
    return hashlib.sha1(spec.encode("utf-8")).hexdigest()


def from_pipeline_json(spec: str) -> Any:
    """Rebuilds the ReplayCompose serialised by `pipeline_json`."""
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A
    return as_replay_compose(A.from_dict(json.loads(spec)))
