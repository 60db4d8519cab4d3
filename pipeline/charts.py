"""The report's charts as matplotlib figures (the report inlines them as PNG data URIs).

Example:
    >>> fig = counts_figure(rows)          # rows from pipeline.evidence
    >>> fig = comparison_figure(summary)
    >>> fig = convergence_figure(curves, "val_macro_f1")   # curves: evidence.validation_curves
"""
from __future__ import annotations

import numpy as np

from dataset.scan import natural_key

_KIND_STYLE = {"real": ("#2f6fba", None), "augmented": ("#7fb3e6", None),
               "synthetic": ("#e07b39", "//")}


ARM_COLOURS = {"original": "#9aa5b1", "rebalanced": "#6b7785", "classic": "#2f6fba",
               "classic_fill": "#5fa8d3", "diffusion_fill": "#e07b39", "synthetic": "#e07b39"}


def _plt():
    # why: matplotlib is slow to import and only the charts need it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def counts_figure(rows: list[dict], stages: list[tuple[str, str]]):
    """One panel per stage: a bar per label, stacked by site, real vs augmented vs synthetic.

    Args:
        rows: {stage, label, site_id, kind, n} (see pipeline.evidence).
        stages: (stage key, panel title) in display order; stages without rows are left out.
    """
    plt = _plt()
    stages = [(k, t) for k, t in stages if any(r["stage"] == k for r in rows)]
    labels = sorted({r["label"] for r in rows}, key=natural_key)
    sites = sorted({r["site_id"] for r in rows})
    site_colours = {s: plt.get_cmap("tab20")(i % 20) for i, s in enumerate(sites)}
    top = max(sum(r["n"] for r in rows if r["stage"] == k and r["label"] == lab)
              for k, _ in stages for lab in labels)
    with plt.style.context("default"):
        fig, axes = plt.subplots(1, len(stages), figsize=(4.6 * len(stages), 3.6),
                                 squeeze=False, sharey=True)
        for ax, (key, title) in zip(axes[0], stages):
            x = np.arange(len(labels))
            bottom = np.zeros(len(labels))
            for kind, (colour, hatch) in _KIND_STYLE.items():
                for site in sites:
                    h = np.array([sum(r["n"] for r in rows if r["stage"] == key and
                                      r["label"] == lab and r["site_id"] == site and
                                      r["kind"] == kind) for lab in labels], float)
                    if not h.any():
                        continue
                    ax.bar(x, h, 0.7, bottom=bottom, color=site_colours[site],
                           edgecolor="white" if hatch is None else colour, hatch=hatch,
                           linewidth=0.6 if hatch is None else 0.0)
                    bottom += h
            ax.set_xticks(x, labels, rotation=0 if len(labels) <= 8 else 60, fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.set_ylim(0, top * 1.08)
            ax.set_xlabel("label")
        axes[0][0].set_ylabel("images")
        handles = [plt.Rectangle((0, 0), 1, 1, color=site_colours[s]) for s in sites][:12]
        names = [f"site {s}" for s in sites][:12]
        handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="#e07b39",
                                     hatch="//"))
        names.append("synthetic")
        fig.legend(handles, names, loc="lower center", ncol=min(7, len(names)), fontsize=8,
                   frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def comparison_figure(summary: list[dict], metrics=("balanced_accuracy", "macro_f1")):
    """Bars of the mean over seeds per classifier arm, one group per metric; whiskers are
    the 95% bootstrap CI where the summary has one, else +- std over seeds."""
    plt = _plt()
    arms = [r["variant"] for r in summary]
    colours = ARM_COLOURS

    def whisker(row, m):
        mean, lo, hi = row[f"{m}_mean"], row.get(f"{m}_ci_low"), row.get(f"{m}_ci_high")
        if lo is not None and hi is not None and lo == lo and hi == hi:
            return max(0.0, mean - lo), max(0.0, hi - mean)
        std = row.get(f"{m}_std")
        std = 0.0 if std is None or std != std else std
        return std, std
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(2.4 + 1.6 * len(metrics) + 0.3 * len(arms), 3.2))
        width = 0.8 / max(1, len(arms))
        for i, row in enumerate(summary):
            x = np.arange(len(metrics)) + (i - (len(arms) - 1) / 2) * width
            means = [row[f"{m}_mean"] for m in metrics]
            err = np.array([whisker(row, m) for m in metrics]).T
            ax.bar(x, means, width * 0.92, yerr=err, capsize=3, label=row["variant"],
                   color=colours.get(row["variant"], f"C{i}"))
        ax.set_xticks(np.arange(len(metrics)), [m.replace("_", " ") for m in metrics])
        ax.set_ylim(0, 1)
        ax.set_ylabel("test score (mean over seeds)")
        # beside the axes: with many arms a legend inside covers the bars
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
    return fig


def convergence_figure(curves: list[dict], metric: str, arms: list[str] | None = None):
    """One panel per arm: the validation metric per epoch of each seed (thin), their mean
    over the seeds that ran that epoch (bold), each seed's best epoch (a dot on its curve)
    and the epoch budget (dashed). A dot on the dashed line: that run was still improving
    when the budget ended.

    Args:
        curves: {variant, seed, epochs, values, best_epoch, max_epochs} per run.
        metric: the history column plotted (for the axis label).
        arms: panel order (default: as the curves come).
    """
    plt = _plt()
    # why: matplotlib is slow to import and only the charts need it
    from matplotlib.ticker import MaxNLocator
    arms = [a for a in (arms or list(dict.fromkeys(c["variant"] for c in curves)))
            if any(c["variant"] == a for c in curves)]
    ncols = min(4, max(1, len(arms)))
    nrows = -(-len(arms) // ncols)
    with plt.style.context("default"):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.4 * nrows + 0.3),
                                 squeeze=False, sharey=True)
        for ax in axes.flat[len(arms):]:
            ax.axis("off")
        for i, (ax, arm) in enumerate(zip(axes.flat, arms)):
            colour = ARM_COLOURS.get(arm.split("+")[0], f"C{i}")
            runs = [c for c in curves if c["variant"] == arm]
            by_epoch: dict[int, list[float]] = {}
            for c in runs:
                ax.plot(c["epochs"], c["values"], color=colour, alpha=0.3, linewidth=0.8)
                for e, v in zip(c["epochs"], c["values"]):
                    by_epoch.setdefault(e, []).append(v)
                if c["best_epoch"] in c["epochs"]:
                    ax.plot(c["best_epoch"], c["values"][c["epochs"].index(c["best_epoch"])],
                            "o", color=colour, markersize=4, markeredgecolor="black",
                            markeredgewidth=0.5)
            epochs = sorted(by_epoch)
            ax.plot(epochs, [float(np.mean(by_epoch[e])) for e in epochs], color=colour,
                    linewidth=2)
            budget = max((c.get("max_epochs") or 0) for c in runs)
            if budget:
                ax.axvline(budget, color="#444", linestyle="--", linewidth=0.8)
            ax.set_title(f"{arm} ({len(runs)} runs)", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            if i % ncols == 0:
                ax.set_ylabel(metric.replace("_", " "), fontsize=8)
            if i >= len(arms) - ncols:
                ax.set_xlabel("epoch", fontsize=8)
        fig.tight_layout()
    return fig
