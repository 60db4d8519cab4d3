"""Copying the user's originals into an output folder: unique names, copy or hard link.

Example:
    >>> names = original_names(records)             # relpath -> "label/S1_0001.jpg"
    >>> copy_original(rec.path, out_dir / names[rec.relpath], link=False)
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable

from dataset.atomic import atomic_path
from dataset.scan import ImageRecord


def short_hash(text: str) -> str:
    """Six hex digits identifying `text` (e.g. a source path) in a file name."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def original_names(records: Iterable[ImageRecord]) -> dict[str, str]:
    """Output names `label/<file name>` for originals; a hash is added only where two files
    of one label (in different sub-folders) share a stem."""
    records = list(records)
    stems = Counter((r.label, Path(r.relpath).stem.lower()) for r in records)
    names = {}
    for rec in records:
        src = Path(rec.relpath)
        unique = stems[(rec.label, src.stem.lower())] == 1
        stem = src.stem if unique else f"{src.stem}_{short_hash(rec.relpath)}"
        names[rec.relpath] = f"{rec.label}/{stem}{src.suffix}"
    return names


def copy_original(src: Path, dst: Path, link: bool = False) -> None:
    """Copies `src` to `dst` byte for byte (atomically), or hard-links it when `link` and
    the file system allows."""
    if link:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system, or links not allowed: copy instead
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)


def copy_missing_originals(records: Iterable[ImageRecord], names: dict[str, str],
                           out_dir: Path, link: bool = False) -> int:
    """Copies (or links) every original not yet at `out_dir / names[relpath]`; a resumed run
    copies only what is missing. Returns how many were copied."""
    copied = 0
    for rec in records:
        dst = out_dir / names[rec.relpath]
        if not dst.exists():
            copy_original(rec.path, dst, link)
            copied += 1
    return copied
