"""Applying a ReplayCompose with a per-image seed, and making the image again from its record.

A ReplayCompose returns, beside the image, a dict of what it drew (flip or not, the angle,
the affine matrix, ...). `encode_replay` makes that dict JSON-exact for the manifest: numpy
arrays and scalars keep their dtype (a float32 factor replayed as float64, or an int64 as a
Python int, can change a pixel), tuples come back as tuples. A few transforms draw whole
images (GaussNoise's noise map); arrays larger than MAX_ARRAY_SIZE are left out of the row,
which is then replayed from its seed and the whole pipeline (`replay_by: "seed"`, the row
holds `pipeline_spec`; exact with the same albumentations version, which the row records).

Example:
    >>> out, record = augment(build_preset("upright"), image, seed=123)
    >>> params = {"replay": record["replay"], "replay_by": record["replay_by"]}
    >>> assert (replay_params(params, image, 123) == out).all()
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from classic_fill.presets import from_pipeline_json, pipeline_json
from dataset.images import ImageLoadError, load_rgb

MAX_ARRAY_SIZE = 1024   # elements; larger drawn arrays are not stored in the manifest
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


class ReplayError(ValueError):
    """A manifest row cannot be replayed; the message says why in one line."""


def image_seed(seed: int, label: str, index: int) -> int:
    """The augmentation seed of image `index` of `label`: stable across runs and machines,
    independent of the other images (so image k can be made alone).

    Example:
        >>> image_seed(42, "1", 0) == image_seed(42, "1", 0) != image_seed(42, "1", 1)
        True
    """
    state = np.random.SeedSequence([seed, zlib.crc32(label.encode("utf-8")), index])
    return int(state.generate_state(1)[0])


def load_image(path: str | Path) -> np.ndarray:
    """Loads an image as uint8, HxW for a grey file (grey stays one channel) and HxWx3 for
    the rest (RGBA, palette, CMYK converted; EXIF rotation applied, as `load_rgb`).

    Raises:
        ImageLoadError: missing, not an image, truncated.
    """
    rgb = load_rgb(path)
    try:
        with Image.open(path) as img:
            grey = img.mode in _GREY_MODES
    except OSError as err:  # load_rgb read it a moment ago: a file changing under us
        raise ImageLoadError(f"{path}: {err}") from None
    return np.ascontiguousarray(rgb[..., 0]) if grey else rgb


# ------------------------------------------------------------------ JSON-exact parameters


def _encode(value: Any) -> tuple[Any, bool]:
    """(JSON-able value, exact?) of one drawn parameter."""
    if isinstance(value, np.ndarray):
        if value.size > MAX_ARRAY_SIZE or value.dtype.kind not in "biuf":
            return {"__ndarray_omitted__": list(value.shape), "dtype": str(value.dtype)}, False
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype),
                "shape": list(value.shape)}, True
    if isinstance(value, np.generic):
        return {"__numpy__": str(value.dtype), "value": value.item()}, True
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value, True
    if isinstance(value, (list, tuple)):
        items = [_encode(v) for v in value]
        return [v for v, _ in items], all(ok for _, ok in items)
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: _encode(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, all(ok for _, ok in items.values())
    return {"__omitted__": type(value).__name__}, False


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        if "__numpy__" in value:
            return np.dtype(value["__numpy__"]).type(value["value"])
        if "__ndarray_omitted__" in value or "__omitted__" in value:
            raise ReplayError("the row left out a drawn array; replay it by seed")
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)  # drawn parameters are tuples, never lists
    return value


def _plain(value: Any) -> Any:
    """A transform's init arguments as JSON (albumentations' own to_dict data)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode_replay(replay: dict) -> tuple[dict, bool]:
    """A ReplayCompose's replay dict as JSON-able data, and whether it replays exactly
    (False when a drawn array was too large or not numeric and was left out)."""
    exact = True
    out = {}
    for key, value in replay.items():
        if key == "params":
            out[key], ok = _encode(value)
            exact = exact and ok
        elif key == "transforms":
            children = [encode_replay(t) for t in value]
            out[key] = [c for c, _ in children]
            exact = exact and all(ok for _, ok in children)
        else:
            out[key] = _plain(value)
    return out, exact


def decode_replay(data: dict) -> dict:
    """The inverse of `encode_replay` (what `A.ReplayCompose.replay` takes).

    Raises:
        ReplayError: the data left out a drawn array (replay by seed instead).
    """
    out = {}
    for key, value in data.items():
        if key == "params":
            out[key] = None if value is None else _decode(value)
        elif key == "transforms":
            out[key] = [decode_replay(t) for t in value]
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------ apply and replay


def augment(transform, image: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """Applies a ReplayCompose to one image with its own seed.

    Args:
        transform: an `A.ReplayCompose` (reseeded here, so earlier calls do not matter).
        image: uint8 HxW (grey) or HxWx3.
        seed: the image's seed (`image_seed`).

    Returns:
        (augmented image, record): record = {"replay": JSON-able replay dict, "replay_by":
        "params" or "seed"}.

    Raises:
        ValueError: the pipeline changed the dtype or the channels (e.g. Normalize, ToGray
            to 3 channels of a grey input): it cannot be written as the same kind of image.
    """
    transform.set_random_seed(seed)
    result = transform(image=image)
    out = result["image"]
    if out.dtype != np.uint8 or out.ndim != image.ndim or out.shape[2:] != image.shape[2:]:
        raise ValueError(f"the pipeline turned a {image.dtype} image of shape {image.shape} "
                         f"into {out.dtype} {out.shape}; it must return uint8 images with the "
                         f"same channels (leave Normalize/ToFloat/ToTensorV2 out)")
    replay, exact = encode_replay(result["replay"])
    if exact:
        return np.ascontiguousarray(out), {"replay": replay, "replay_by": "params"}
    # The replay dict drops the init arguments of composes (p, OneOf's p, SomeOf's n): a
    # replay by seed needs the whole pipeline.
    return np.ascontiguousarray(out), {"replay": replay, "replay_by": "seed",
                                       "pipeline_spec": json.loads(pipeline_json(transform))}


def replay_params(params: dict, image: np.ndarray, seed: int | None) -> np.ndarray:
    """Makes an augmented image again from its manifest params (and seed).

    Args:
        params: a classic_fill row's params ("replay", "replay_by", ...).
        image: the source image, as `load_image` reads it.
        seed: the row's seed (needed when replay_by is "seed").

    Raises:
        ReplayError: params without a replay record, or a seed replay without a seed.
    """
    # why: albumentations is slow to import (OpenCV, pydantic); only the transforms need it
    import albumentations as A

    if not isinstance(params.get("replay"), dict):
        raise ReplayError("the row has no 'replay' record (not written by classic_fill?)")
    if params.get("replay_by", "params") == "params":
        return A.ReplayCompose.replay(decode_replay(params["replay"]), image=image)["image"]
    if seed is None or not isinstance(params.get("pipeline_spec"), dict):
        raise ReplayError("the row is replayed by seed but lacks its seed or pipeline_spec")

    transform = from_pipeline_json(json.dumps(params["pipeline_spec"]))
    transform.set_random_seed(seed)
    return transform(image=image)["image"]


def replay_row(row, in_root: str | Path | None = None) -> np.ndarray:
    """Regenerates the exact image of a classic_fill manifest row.

    Args:
        row: a `dataset.manifest.ManifestRow` (e.g. from `read_manifest`).
        in_root: the input folder the run read (`--in_dir`); the source is
            `in_root/params["source"]`. None: the row's absolute `origin` path.

    Example:
        >>> rows = [r for r in read_manifest("out/manifest.csv") if r.generator == "classic_fill"]
        >>> img = replay_row(rows[0], "photos")      # == the pixels of out/<rows[0].path>

    Raises:
        ReplayError: not a classic_fill row; ImageLoadError: the source is gone.
    """
    if row.generator != "classic_fill":
        raise ReplayError(f"{row.path}: generator is {row.generator!r}, not classic_fill")
    source = Path(in_root) / row.params["source"] if in_root is not None else Path(row.origin)
    return replay_params(row.params, load_image(source), row.seed)
