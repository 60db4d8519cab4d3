"""Before/after bar charts of images per site, one panel per label.

Example:
    >>> plot_site_counts(plan_rows(plan), "diffusion_data/balance_counts.png")
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dataset.atomic import atomic_path


def plot_site_counts(rows: list[dict], path: str | Path) -> Path:
    """Draws grouped bars (before, after, target line) per site for every label.

    Args:
        rows: dicts with label, site_id, before, after, target (see balancing.run.plan_rows).
        path: PNG to write (atomically).
    """
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib
    matplotlib.use("Agg")
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in rows))
    cols = min(3, len(labels))
    nrows = math.ceil(len(labels) / cols)
    with plt.style.context("default"):  # the same picture whatever rcParams others set
        fig, axes = plt.subplots(nrows, cols, figsize=(4.5 * cols, 3.2 * nrows), squeeze=False)
        for ax, label in zip(axes.flat, labels):
            sub = [r for r in rows if r["label"] == label]
            x = np.arange(len(sub))
            ax.bar(x - 0.2, [r["before"] for r in sub], 0.4, label="before", color="#9aa5b1")
            ax.bar(x + 0.2, [r["after"] for r in sub], 0.4, label="after", color="#2f6fba")
            ax.axhline(sub[0]["target"], color="#c0392b", lw=1, ls="--", label="target")
            ax.set_xticks(x, [r["site_id"] for r in sub], rotation=45 if len(sub) > 6 else 0,
                          fontsize=8)
            ax.set_title(f"label {label}")
            ax.set_ylabel("images")
        for ax in list(axes.flat)[len(labels):]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="upper right", ncol=3, fontsize=8, frameon=False)
        fig.suptitle("Images per site, before and after site balancing", x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
    return Path(path)
