"""Writes a run's outputs atomically: metrics.json, history.csv, confusion-matrix PNGs.

Example:
    >>> write_json(run_dir / "metrics.json", metrics)
    >>> plot_confusion(m["confusion_matrix"], m["class_names"], run_dir / "confusion.png")
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset.atomic import atomic_path, atomic_write_text


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        # JSON has no NaN; null says "not defined" (e.g. a std of one run).
        return None if math.isnan(float(obj)) else float(obj)
    return obj


def write_json(path: str | Path, data: dict) -> Path:
    """Writes `data` as indented JSON atomically (NaN becomes null)."""
    return atomic_write_text(Path(path), json.dumps(_jsonable(data), indent=2) + "\n")


def write_csv(path: str | Path, df) -> Path:
    """Writes a pandas DataFrame as CSV atomically."""
    return atomic_write_text(Path(path), df.to_csv(index=False))


def plot_confusion(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path,
                   title: str = "") -> Path:
    """Saves the confusion matrix (rows: true class, columns: predicted) as a PNG, with
    counts in the cells and colours normalised per true class (so rare classes show)."""
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib
    matplotlib.use("Agg")
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    side = max(4.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side, side), dpi=100)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=class_names, rotation=0 if n <= 3 else 45 if n <= 8 else 90,
                  ha="center" if n <= 3 else "right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def contact_sheet(images: np.ndarray, captions: Sequence[str], path: str | Path, title: str,
                  columns: int = 8, limit: int = 64) -> Path:
    """Saves up to `limit` uint8 images (N, S, S, 3) in a grid, each with its caption.

    Example:
        >>> contact_sheet(images[:4], ["boot: predicted", "bag: farther"] * 2, "sheet.png",
        ...               "dropped images")
    """
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib
    matplotlib.use("Agg")
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib.pyplot as plt

    n = min(len(images), limit)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.4), dpi=100,
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k])
            ax.set_title(captions[k], fontsize=6)
    fig.suptitle(title + (f" (first {n} of {len(images)})" if len(images) > n else ""),
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
