"""A config dataclass as plain JSON-able data, and which of its settings differ from a saved
config.json (pure, no project imports: `dataset.out_dir` refuses to resume a folder made with
other settings without importing the command-line layer; `cli.flags` re-exports both).

Example:
    >>> from config import BalancerConfig
    >>> saved = config_to_dict(BalancerConfig(in_dir="x", theta=5.0))
    >>> changed_settings(saved, BalancerConfig(in_dir="x", theta=7.0))
    ['theta']
"""
from __future__ import annotations

import dataclasses
from typing import Any


def config_to_dict(cfg) -> dict[str, Any]:
    """The config as plain JSON-able data, tagged with its class name."""
    data = {"_config_class": type(cfg).__name__}
    for key, value in dataclasses.asdict(cfg).items():
        data[key] = list(value) if isinstance(value, tuple) else value
    return data


def changed_settings(saved: dict[str, Any], cfg, keys=None) -> list[str]:
    """The settings of `cfg` (or only `keys`, in their order) whose value differs from a saved
    config dict (sorted by name without `keys`).

    A field missing from `saved` counts as unchanged while `cfg` holds its default: it was
    added to config.py after the file was written, and its default is what that run did.

    Args:
        saved: a config.json as read (`config_to_dict` of the run that wrote it).
        cfg: the config dataclass of the run now.
        keys: the settings to compare, most important first; None compares them all.

    Example:
        >>> changed_settings({"theta": 5.0}, BalancerConfig(in_dir="x", theta=7.0), ["theta"])
        ['theta']
    """
    now = config_to_dict(cfg)
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING
                         else f.default_factory()) for f in dataclasses.fields(cfg)}
    out = []
    for key in (keys if keys is not None else now):
        if key.startswith("_"):
            continue
        value = now.get(key)
        if key not in saved:
            default = defaults.get(key)
            if value == (list(default) if isinstance(default, tuple) else default):
                continue
        if saved.get(key) != value:
            out.append(key)
    return out if keys is not None else sorted(out)   # `keys` order: the caller's priority
