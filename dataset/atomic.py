"""Atomic file writes: a temp file in the target folder, then one rename.

A reader (or a resumed run) never sees a half-written file: the path either does not exist
or holds complete content.

Example:
    >>> with atomic_path("out/a.png") as tmp:
    ...     image.save(tmp, format="PNG")
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Iterator

from dataset.errors import DatasetError


# What `atomic_path` names its temp files: a kill -9 mid-write leaves one behind.
_TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{8}-.")


def is_temp_file(path: Path) -> bool:
    """Whether `path` is a temp file of `atomic_path` (one a killed write left behind).

    Example:
        >>> is_temp_file(Path("out/.tmp-0badc0de-a.png"))   # when that file exists
        True
    """
    return bool(_TEMP_NAME.match(path.name)) and path.is_file()


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    Args:
        path: final destination.
        overwrite: when False, an existing `path` raises FileExistsError before any work.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"refusing to overwrite {path}")
    if not path.parent.is_dir():  # one stat where mkdir(exist_ok) costs two and a raise
        path.parent.mkdir(parents=True, exist_ok=True)
    # The whole name is kept at the end so that libraries choosing a format by extension
    # (or insisting on one, as Keras does on `.weights.h5`) still work.
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")  # _TEMP_NAME
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes `data` to `path` atomically and returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Writes UTF-8 `text` to `path` atomically and returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def weights_file_bytes(model) -> int:
    """A generous estimate of the size of `model.save_weights`' file: the values plus an
    HDF5 header allowance per variable."""
    total = 0
    for v in model.weights:
        n = 1
        for d in v.shape:
            n *= int(d)
        total += n * (2 if "16" in str(v.dtype) else 8 if "64" in str(v.dtype) else 4)
    return total + 4096 * len(model.weights) + (64 << 10)


def save_weights_atomic(model, path: str | Path) -> Path:
    """`model.save_weights(path)` through a temp file + rename: a crash mid-save never leaves
    a truncated `.weights.h5` where the last good one was.

    Raises:
        OSError: ENOSPC before anything is written when the folder lacks the space (h5py
            swallows a full disk's write errors and the process later crashes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    need = weights_file_bytes(model)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device ({need >> 10} KiB needed, "
                                    f"{free >> 10} KiB free)", str(path))
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
    return path


def load_weights_checked(model, path: str | Path) -> None:
    """`model.load_weights(path)`, where any failure is one line naming the file.

    Truncated or empty files, a pickle renamed `.weights.h5`, another architecture's weights,
    and weights that only partly match (Keras loads what it can, warns, and keeps random
    values for the rest: a model that then generates or predicts noise) all raise.

    Raises:
        DatasetError: the file cannot be loaded into `model`.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*(Skipping|freshly-initialized).*")
            model.load_weights(path)
    except (OSError, ValueError, KeyError, TypeError, UserWarning) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise DatasetError(f"{path} cannot be loaded into the model its config.json "
                           f"describes ({first}); the file is damaged or from another run"
                           ) from None
