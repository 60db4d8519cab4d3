"""Output folders that are new, or the resumable output of an earlier run of the same job.

Example:
    >>> check_out_dir(cfg.out_dir, cfg.in_dir, cfg, ("theta", "seed"), "site_id_balancer.py")
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

from dataset.atomic import is_temp_file
from dataset.scan import DatasetError
from setting_rules.saved_settings import changed_settings

CONFIG_NAME = "config.json"


def check_location(out_dir: str | Path, in_dir: str | Path, in_flag: str = "--in_dir") -> Path:
    """The resolved out_dir, refused when it lies inside the input or is a file.

    Raises:
        DatasetError: one line saying why (nothing is changed).
    """
    out, src = Path(out_dir).resolve(), Path(in_dir).resolve()
    if out == src or src in out.parents:
        raise DatasetError(f"--out_dir {out_dir} is inside {in_flag} {in_dir}: "
                           f"choose a folder outside the input")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out_dir {out_dir} exists and is not a folder")
    return out


# Settings that name data or models a command reads (never written into): a command's out_dir
# must lie outside every one, or its outputs (curves, grids, PNGs) become training images next
# time, an unknown class of the next evaluation, or files inside a model folder.
INPUT_FIELDS = ("in_dir", "train_dir", "val_dir", "test_dir", "ood_test_dirs", "balanced_dir",
                "classic_fill_dir", "fill_dirs", "manifest", "inpainting_dir", "mask_dir",
                "model_dir", "model", "weight_paths", "label_models", "classifier_run",
                "filter_model", "from_run", "ood_dir")
# Entries written NAME=DIR (or LABEL=DIR): the folder is after the first '='.
_NAMED_FIELDS = ("fill_dirs", "label_models")


def input_folders(cfg) -> list[tuple[str, str]]:
    """(flag, folder) of every input folder `cfg` names (a file, such as a manifest or a
    weights file: its folder; NAME=DIR entries: the DIR). A field with fixed choices (e.g.
    DiffusionConfig.model, ddim or gan) names no folder.

    Example:
        >>> input_folders(CompareConfig(train_dir="data/train", test_dir="data/test"))
        [('--train_dir', 'data/train'), ('--test_dir', 'data/test')]
    """
    choices = {f.name for f in dataclasses.fields(cfg) if f.metadata.get("choices")} \
        if dataclasses.is_dataclass(cfg) else set()
    found = []
    for name in INPUT_FIELDS:
        value = getattr(cfg, name, None)
        if name in choices:
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            path = str(item or "")
            if name in _NAMED_FIELDS:
                path = path.split("=", 1)[-1]
            if path and (path.endswith((".csv", ".h5", ".keras")) or Path(path).is_file()):
                path = str(Path(path).parent)
            if path:
                found.append((f"--{name}", path))
    return found


def check_outside_inputs(cfg, out_dir: str | Path | None = None) -> Path:
    """`check_location` of out_dir (default: `cfg.out_dir`) against every input folder
    `cfg` names: the one output-location rule of stages 2 and 4. Returns the resolved out_dir.

    Raises:
        DatasetError: one line naming the input the out_dir lies in (nothing is changed).
    """
    out = cfg.out_dir if out_dir is None else out_dir
    for flag, folder in input_folders(cfg):
        check_location(out, folder, flag)
    return Path(out).resolve()


def remove_stale_temp_files(out_dir: str | Path) -> int:
    """Deletes the `.tmp-*` files a killed run left in its own out_dir (atomic writes that never
    reached their rename) and returns how many; call it only once the folder is known to be
    this command's (after `check_out_dir`)."""
    stale = [p for p in Path(out_dir).rglob(".tmp-*") if is_temp_file(p)] \
        if Path(out_dir).is_dir() else []
    for path in stale:
        path.unlink()
    return len(stale)


def holds_files(out: Path) -> bool:
    """Whether folder `out` holds anything but the temp files of a killed write: a run killed
    while writing its first file (config.json) left only those, and is still resumable."""
    return out.is_dir() and any(not is_temp_file(p) for p in out.iterdir())


def saved_config(out_dir: Path) -> dict:
    """The config.json an earlier run left in out_dir ({} when there is none or it is damaged)."""
    try:
        return json.loads((Path(out_dir) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return {}


def check_out_dir(out_dir: str | Path, in_dir: str | Path, cfg, resume_keys: Sequence[str],
                  tool: str) -> Path:
    """Accepts a new/empty out_dir, or one whose config.json shows the same input and the same
    `resume_keys` settings (a resumed run). Returns the resolved out_dir.

    Raises:
        DatasetError: out_dir is inside in_dir, holds files not written by `tool`, or was made
            from another input or with other settings. Nothing is changed in any case.
    """
    check_outside_inputs(cfg, out_dir)   # first: it names the flag (--test_dir, --model_dir)
    out = check_location(out_dir, in_dir)
    src = Path(in_dir).resolve()
    refuse_foreign(out, out_dir, (type(cfg).__name__,), tool)
    if holds_files(out):
        saved = saved_config(out)
        if saved.get("_in_dir_resolved") != str(src):
            raise DatasetError(f"--out_dir {out_dir} was made from another input "
                               f"({saved.get('_in_dir_resolved')}): choose a new folder")
        refuse_changed(out_dir, saved, cfg, resume_keys)
    return out


def refuse_foreign(out: Path, out_dir: str | Path, owners: Sequence[str], tool: str) -> None:
    """A non-empty output folder must hold the config.json of one of `owners` (config class
    names): it is then a run of this tool to resume, never somebody else's files.

    Raises:
        DatasetError: one line naming the folder and the tool.
    """
    if holds_files(out) and \
            saved_config(out).get("_config_class") not in owners:
        raise DatasetError(f"--out_dir {out_dir} already holds files not written by "
                           f"{tool}: choose a new folder (nothing changed)")


def refuse_changed(out_dir: str | Path, saved: dict, cfg, keys: Sequence[str]) -> None:
    """A folder is resumed only with the settings `keys` it was made with (a field added to
    config.py since then counts as unchanged at its default:
    `setting_rules.saved_settings.changed_settings`).

    Raises:
        DatasetError: naming the first changed setting, its old and its new value.
    """
    changed = changed_settings(saved, cfg, keys)
    if changed:
        key = changed[0]
        raise DatasetError(f"--out_dir {out_dir} was made with {key}={saved.get(key)!r}, "
                           f"now {getattr(cfg, key)!r}: choose a new folder or the same "
                           f"settings to resume")
