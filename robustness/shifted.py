"""An out-of-distribution copy of a labelled test folder: each image under one common
corruption (ImageNet-C style) at a fixed severity, so an evidence run can put in- and
out-of-distribution accuracy side by side without a second photo collection.

Image k of the sorted listing gets op `ops[k % len(ops)]` (every op covers every class about
equally) with the seed `[seed, k]`, so a rerun writes the same bytes; a finished file is kept,
so an interrupted build resumes. `shift.csv` records each image's source, op, intensity and
op seed (`robustness.ops.apply_op` rebuilds it from that row).

Example:
    >>> build_shifted_set("data/test", "work/ood_corrupted", severity=3)
    PosixPath('work/ood_corrupted')
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset.atomic import atomic_write_text
from dataset.images import load_rgb, save_rgb
from dataset.scan import DatasetError
from robustness.data import list_images
from robustness.ops import OPS, apply_op

# Corruptions a camera really meets (weather, light, focus, motion, sensor, compression);
# none changes what the object is.
DEFAULT_SHIFT_OPS = ("fog", "brightness_down", "contrast_down", "defocus_blur", "motion_blur",
                     "gaussian_noise", "jpeg", "pixelate")


def build_shifted_set(test_dir: str | Path, out_dir: str | Path, severity: int = 3,
                      ops: Sequence[str] = DEFAULT_SHIFT_OPS, seed: int = 0) -> Path:
    """Writes out_dir/<label>/<name>.png, each test image under one corruption.

    Args:
        test_dir: a labelled folder (one sub-folder per label); only read.
        out_dir: where the shifted copy goes (outside test_dir).
        severity: 1..5, ImageNet-C's severity scale (each op's calibrated intensity).
        ops: names from `robustness.ops.OPS`, used in turn.
        seed: image k's op seed is derived from [seed, k].

    Returns:
        out_dir.
    """
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise DatasetError(f"unknown shift ops {unknown}; choose from {', '.join(OPS)}")
    if not 1 <= severity <= 5:
        raise DatasetError(f"severity must be 1..5, got {severity}")
    test_dir, out_dir = Path(test_dir), Path(out_dir)
    if out_dir.resolve().is_relative_to(test_dir.resolve()):
        raise DatasetError(f"{out_dir} is inside the test folder {test_dir}")
    items, labelled, _ = list_images(test_dir)
    if not labelled:
        raise DatasetError(f"{test_dir} has no label sub-folders")
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["source", "label", "file", "op", "intensity", "op_seed"])
    for k, (path, label, _) in enumerate(items):
        op = ops[k % len(ops)]
        intensity = float(OPS[op].severities[severity - 1])
        op_seed = int(np.random.default_rng([seed, k]).integers(0, 2**31 - 1))
        target = out_dir / label / f"{Path(path).stem}.png"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            save_rgb(target, apply_op(op, load_rgb(path), intensity, op_seed))
        rows.writerow([path, label, target.relative_to(out_dir), op, intensity, op_seed])
    atomic_write_text(out_dir / "shift.csv", table.getvalue())
    return out_dir
