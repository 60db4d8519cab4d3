"""HTML pages of the robustness tools, built with the shared `reporting.html` helpers: the
search report (curves, boundaries, examples at the boundary, ImageNet-C style severity
table), the synthesis preview (originals vs synthetics) and the evaluation page.

Every page is one self-contained file (images inlined), readable offline.

Example:
    >>> write_search_report(result, image_set, "robustness/report.html", model_name="cnn")
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from reporting.html import (figure_data_uri, html_table, img_tag, png_data_uri, render_page,
                            write_page)
from robustness.ops import OPS, apply_op
from robustness.search import SearchResult, op_seed

SHOW_PX = 96  # example images are shown at least this wide (working sizes may be 32 px)


def _fmt(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}"


def _error_at_1(curve) -> float | str:
    """The curve's error at intensity 1, or why there is none (--no-full_curve stops an op
    at its first critical step)."""
    if not len(curve.errors):
        return float("nan")
    if curve.intensities[-1] < 1.0 - 1e-6:
        return f"not probed (stopped at {curve.intensities[-1]:.2f})"
    return float(curve.errors[-1])


def _esc(text: str) -> str:
    return html.escape(str(text))


def curves_figure(result: SearchResult):
    """Small multiples: one panel per op, mean error vs intensity, thresholds dashed, the
    band between `safe` and `limit` shaded."""
    # why: matplotlib is slow to import; only drawing needs it
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, c in result.curves.items() if len(c.intensities)]
    cols = max(1, min(6, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.0 * rows), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes.flat, names):
        c = result.curves[name]
        ax.plot([0.0, *c.intensities], [0.0, *c.errors], color="#b42318", lw=1.6)
        ax.axhline(result.noticeable_error, ls=":", color="#888", lw=1)
        ax.axhline(result.critical_error, ls="--", color="#444", lw=1)
        if c.safe is not None:
            ax.axvspan(c.safe, max(c.limit, c.safe + 1e-3), color="#f4c542", alpha=0.3, lw=0)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("intensity", fontsize=9)
    fig.supylabel("mean error vs clean prediction", fontsize=9)
    fig.tight_layout()
    return fig


def _example_index(curve) -> int:
    """The image that changes first: the largest error at the first noticeable step."""
    if curve.first_noticeable is None or curve.per_image.size == 0:
        return 0
    col = int(np.argmin(np.abs(curve.intensities - curve.first_noticeable)))
    return int(np.argmax(curve.per_image[:, col]))


def _example_row(result: SearchResult, name: str, images: np.ndarray, labels: Sequence[str],
                 seed: int) -> str:
    c = result.curves[name]
    j = _example_index(c)
    marks = [("original", 0.0), ("safe", c.safe), ("first noticeable", c.first_noticeable),
             ("limit", c.limit), ("first critical", c.first_critical)]
    # One picture per distinct intensity, named by every boundary that falls on it.
    named: dict[float, list[str]] = {}
    for what, x in marks:
        if x is not None:
            named.setdefault(round(x, 4), []).append(what)
    figs = []
    for x, whats in named.items():
        what = ", ".join(whats)
        img = apply_op(name, images[j], x, op_seed(seed, name, j))
        err = 0.0
        if x > 0 and len(c.intensities):
            col = int(np.argmin(np.abs(c.intensities - x)))
            err = float(c.per_image[j, col])
        cap = (f"{what}: i={x:.2f} ({OPS[name].unit(x)}), error {err:.2f}" if x > 0
               else f"original ({labels[j]})")
        figs.append(img_tag(png_data_uri(img), cap, width=max(SHOW_PX, img.shape[1])))
    return f"<h3>{_esc(name)}</h3>" + "".join(figs)


def severity_rows(result: SearchResult, reference: SearchResult | None = None,
                  top1: bool = False) -> list[dict]:
    """Rows of the ImageNet-C style table: error per severity, mean, and with a reference
    model the corruption error CE = sum of errors / sum of the reference's (mCE: their
    mean). `top1` uses top-1 errors against the ground truth instead of the error against
    the clean prediction."""
    def errs(r: SearchResult, name: str) -> np.ndarray | None:
        c = r.curves.get(name)
        if c is None:
            return None
        if not top1:
            return np.asarray(c.severity_errors, dtype=float)
        if c.severity_pred is None or r.truth is None:
            return None
        return (c.severity_pred != r.truth[:, None]).mean(0)

    rows, ces, means = [], [], []
    for name in result.curves:
        e = errs(result, name)
        if e is None:
            continue
        row = {"op": name, "family": OPS[name].family}
        row.update({f"s{k + 1}": float(v) for k, v in enumerate(e)})
        row["mean"] = float(e.mean())
        means.append(row["mean"])
        if reference is not None:
            ref = errs(reference, name)
            if ref is not None:
                row["reference mean"] = float(ref.mean())
                row["CE"] = float(e.sum() / ref.sum()) if ref.sum() > 0 else float("nan")
                if np.isfinite(row["CE"]):
                    ces.append(row["CE"])
        rows.append(row)
    if rows:
        last = {"op": "all ops", "family": "", "mean": float(np.mean(means))}
        if reference is not None:
            last["CE"] = float(np.mean(ces)) if ces else float("nan")
            last["op"] = "all ops (mean, mCE)"
        rows.append(last)
    return rows


def write_search_report(result: SearchResult, image_set, path: str | Path,
                        reference: SearchResult | None = None, model_name: str = "",
                        reference_name: str = "", seed: int = 42) -> Path:
    """Writes the search report (self-contained HTML). Returns its path.

    Args:
        result: the search of the model.
        image_set: the ImageSet (or images array) the search probed.
        reference: a search of a reference model over the same images and ops (the
            severities at least), for the normalised corruption errors (mCE).
    """
    images = image_set.images if hasattr(image_set, "images") else np.asarray(image_set)
    labels = list(getattr(image_set, "labels", ["image"] * len(images)))
    ordered = sorted(result.curves, key=lambda n: (result.curves[n].limit
                                                   if result.curves[n].limit is not None else 2,
                                                   n))
    rows = []
    for name in ordered:
        c = result.curves[name]
        spec = OPS[name]
        rows.append({"op": name, "family": spec.family,
                     "safe up to": f"{_fmt(c.safe)} ({spec.unit(c.safe)})" if c.safe is not None
                     else "",
                     "first noticeable": _fmt(c.first_noticeable),
                     "limit (last non-critical)": f"{_fmt(c.limit)} ({spec.unit(c.limit)})"
                     if c.limit is not None else "",
                     "first critical": _fmt(c.first_critical),
                     "error at 1": _error_at_1(c)})
    clean_top1 = result.clean_top1_error()
    summary = [
        f"<p>Model <b>{_esc(model_name or result.model_fingerprint[:12])}</b>, "
        f"{result.n_images} images, {len(result.curves)} ops, intensity step "
        f"{result.step:g}. The error of a probe is measured against the model's own clean "
        f"prediction ({_esc(result.settings.get('error', ''))}); a step is noticeable above "
        f"a mean error of {result.noticeable_error:g} and critical from "
        f"{result.critical_error:g}.</p>",
        f"<p class='note'>Probes made in this run: {result.probes}; reused from the cache: "
        f"{result.reused} (cache key {result.cache_key}).</p>"]
    if clean_top1 is not None:
        summary.append(f"<p>Top-1 error on the clean images (ground truth from the label "
                       f"folders): {clean_top1:.3f}.</p>")
    body = [f"<section id='summary'><h2>Summary</h2>{''.join(summary)}</section>",
            "<section id='boundaries'><h2>Where the model breaks</h2>"
            "<p class='note'>Most fragile first. <i>safe up to</i>: the last step before the "
            "model notices; <i>limit</i>: the last step before it fails (synthesis draws "
            "intensities between 0, safe, limit and 1 according to --realism).</p>"
            + html_table(rows) + "</section>"]
    if any(len(c.intensities) for c in result.curves.values()):
        body.append("<section id='curves'><h2>Error curves</h2><p class='note'>Mean error per "
                    "intensity; dotted: noticeable, dashed: critical; shaded: safe to limit."
                    "</p>" + img_tag(figure_data_uri(curves_figure(result)),
                                     "error curve per op") + "</section>")
        examples = "".join(_example_row(result, n, images, labels, seed) for n in ordered)
        body.append("<section id='examples'><h2>Examples at the boundary</h2><p class='note'>"
                    "The image that changes first, at the op's boundaries.</p>" + examples
                    + "</section>")
    sev = ["<p class='note'>Five fixed severities per op (ImageNet-C's parameters where the "
           "op has a counterpart); error against the clean prediction"
           + (f"; CE = the sum of errors over the severities divided by the reference model "
              f"{_esc(reference_name)}'s, mCE their mean." if reference is not None else
              "; give --reference_model for errors normalised to a reference (mCE).")
           + "</p>", html_table(severity_rows(result, reference))]
    if result.truth is not None:
        sev.append("<h3>Top-1 error against the ground truth</h3>"
                   + html_table(severity_rows(result, reference
                                              if reference is not None and
                                              reference.truth is not None else None,
                                              top1=True)))
    body.append("<section id='severity'><h2>Severity table (ImageNet-C style)</h2>"
                + "".join(sev) + "</section>")
    sections = [("summary", "Summary"), ("boundaries", "Where the model breaks"),
                ("curves", "Error curves"), ("examples", "Examples at the boundary"),
                ("severity", "Severity table")]
    html = render_page("Robustness analysis", "".join(body),
                       subtitle="Where does the model's output change, and how much?",
                       sections=[s for s in sections if f"id='{s[0]}'" in "".join(body)])
    return write_page(path, html)


def write_preview(pairs: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path,
                  settings_rows: Sequence[dict] = (), summary: str = "") -> Path:
    """The synthesis preview: a grid of (original, synthetic, caption) pairs and the
    intensity range of every op."""
    cells = []
    for original, synthetic, caption in pairs:
        w = max(SHOW_PX, original.shape[1])
        cells.append("<div style='display:inline-block;margin:4px 10px 10px 0;"
                     "vertical-align:top;max-width:" + str(2 * w + 40) + "px'>"
                     + img_tag(png_data_uri(original), "original", width=w)
                     + img_tag(png_data_uri(synthetic), "synthetic", width=w)
                     + f"<div class='note'>{_esc(caption)}</div></div>")
    body = (f"<section id='summary'><h2>Summary</h2><p>{_esc(summary)}</p></section>"
            f"<section id='pairs'><h2>Originals and synthetics</h2>{''.join(cells)}</section>"
            f"<section id='ranges'><h2>Intensity ranges</h2>{html_table(settings_rows)}"
            f"</section>")
    html = render_page("Robustness synthesis preview", body,
                       subtitle="Random op chains bounded by where the model breaks",
                       sections=[("summary", "Summary"), ("pairs", "Originals and synthetics"),
                                 ("ranges", "Intensity ranges")])
    return write_page(path, html)


def write_evaluation_page(metrics: dict, path: str | Path) -> Path:
    """The evaluation page: overall metrics and per op family, one column per model."""
    models = metrics["models"]
    overall = []
    for key in ("accuracy", "error_vs_clean", "label_changed", "n"):
        row = {"metric": key}
        for name, m in models.items():
            row[name] = m["overall"].get(key)
        if "change" in metrics and key in metrics["change"]:
            row["change (after - before)"] = metrics["change"][key]
        overall.append(row)
    fam_rows = []
    for fam in metrics["families"]:
        row = {"family": fam}
        for name, m in models.items():
            f = m["families"].get(fam, {})
            row[f"{name} accuracy"] = f.get("accuracy")
            row[f"{name} error vs clean"] = f.get("error_vs_clean")
            row["n"] = f.get("n")
        fam_rows.append(row)
    body = (f"<section id='overall'><h2>Overall</h2><p class='note'>{metrics['n']} synthetic "
            f"images from {_esc(metrics['images'])}; accuracy against the label folders "
            f"(when the model knows them), error against the model's prediction on the "
            f"origin image.</p>{html_table(overall)}</section>"
            f"<section id='families'><h2>Per op family</h2><p class='note'>An image counts in "
            f"every family its chain touches.</p>{html_table(fam_rows)}</section>")
    html = render_page("Robustness evaluation", body,
                       subtitle="The model on synthetic images",
                       sections=[("overall", "Overall"), ("families", "Per op family")])
    return write_page(path, html)
