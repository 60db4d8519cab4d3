"""The report's quality panel: memorisation and recognisability per label, beside KID, and
the closest (synthetic | nearest real) pairs, as one HTML fragment (images inlined).

Example:
    >>> fragment = quality_panel("run/quality_audit", "run/quality_recognisability",
    ...                          kid_rows=kid_rows)      # rows of pipeline.evidence.synthetic_kid
    >>> body += f'<section id="quality"><h2>Synthetic image quality</h2>{fragment}</section>'
"""
from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Sequence

from dataset.scan import natural_key
from quality.audit import closest_pairs_sheet, summarise
from reporting.html import html_table, img_tag, png_data_uri


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def per_label_rows(audit_summary=None, gan_test=None, gan_train=None,
                   kid_rows: Sequence[dict] | None = None) -> list[dict]:
    """One row per label joining what is known: memorisation share per feature space,
    GAN-test vs real-test accuracy, GAN-train vs the real baseline, KID.

    Args:
        audit_summary: `quality.audit.summarise` output (or audit_summary.csv read back).
        gan_test, gan_train: the recognisability tables (or their CSVs read back).
        kid_rows: `pipeline.evidence.synthetic_kid` rows (label, kid_generated, ...).
    """
    rows: dict[str, dict] = {}

    def row(label) -> dict:
        return rows.setdefault(str(label), {"label": str(label)})
    if audit_summary is not None:
        for r in audit_summary.to_dict("records"):
            if r["label"] == "(all)":
                continue
            out = row(r["label"])
            out["synthetic"] = int(r["n_synthetic"])
            out[f"memorised ({r['space']})"] = r["memorisation_share"]
    if gan_test is not None:
        for r in gan_test.to_dict("records"):
            out = row(r["label"])
            out.setdefault("synthetic", int(r["n_generated"]))
            out.update({"GAN-test": r["gan_test_accuracy"],
                        "real test (same classifier)": r["real_test_accuracy"],
                        "GAN-test / real": r["gan_test_relative"]})
    if gan_train is not None:
        for r in gan_train.to_dict("records"):
            row(r["label"]).update({"GAN-train": r["gan_train_accuracy"],
                                    "real-train baseline": r["real_train_accuracy"]})
    for r in kid_rows or []:
        row(r["label"]).update({"KID generated": r.get("kid_generated"),
                                "KID real train": r.get("kid_real_train")})
    return [rows[k] for k in sorted(rows, key=natural_key)]


def _pairs_uri(audit, pairs_png, max_pairs: int) -> str | None:
    if pairs_png is not None and Path(pairs_png).is_file():
        return png_data_uri(pairs_png)
    if audit is None or len(audit) == 0:
        return None
    buf = io.BytesIO()
    closest_pairs_sheet(audit, max_pairs, cell=72).save(buf, format="PNG")
    return png_data_uri(buf.getvalue())


def panel_html(audit=None, audit_summary=None, gan_test=None, gan_train=None,
               kid_rows: Sequence[dict] | None = None, pairs_png: str | Path | None = None,
               threshold_text: str = "", gan_train_note: str = "", max_pairs: int = 8) -> str:
    """The panel from tables in memory (any of them may be missing).

    Example:
        >>> panel_html(audit=table, audit_summary=summarise(table), gan_test=gt)
    """
    if audit is not None and audit_summary is None and len(audit):
        audit_summary = summarise(audit)
    rows = per_label_rows(audit_summary, gan_test, gan_train, kid_rows)
    if not rows:
        return _note("No quality measurements (memorisation audit, GAN-test, GAN-train) "
                     "were made in this run.")
    digits = 4 if kid_rows else 3
    parts = [html_table(rows, digits=digits), _note(
        "memorised: share of synthetic images closer to a real training image than the "
        "threshold (a low percentile of how close real held-out images come to the training "
        "images, or, in stage 3, the training images to each other); under 5% is the "
        "target. GAN-test: share of generated images a real-only classifier calls by their "
        "label, beside its accuracy on real test images of the label. GAN-train: accuracy "
        "on real test images of a classifier trained on synthetic images only, beside the "
        "same recipe trained on the real images of the same labels. KID: lower is closer.")]
    if threshold_text:
        parts.append(_note(threshold_text))
    if gan_train_note:
        parts.append(_note(f"GAN-train not run: {gan_train_note}"))
    uri = _pairs_uri(audit, pairs_png, max_pairs)
    if uri:
        parts.append("<h3>Closest pairs: synthetic (left) | nearest real training image "
                     "(right)</h3>" + img_tag(uri, "closest pairs, most suspect first; "
                                                   "red captions are flagged"))
    return "".join(parts)


def quality_panel(audit_dir: str | Path | None = None,
                  recognisability_dir: str | Path | None = None,
                  kid_rows: Sequence[dict] | None = None, max_pairs: int = 8) -> str:
    """The panel from the folders `python3 -m quality audit` / `recognisability` wrote
    (either may be None or not yet exist).

    Example:
        >>> quality_panel("run/quality_audit", None, kid_rows)
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    def read(folder, name):
        path = Path(folder) / name if folder else None
        return pd.read_csv(path) if path is not None and path.is_file() else None

    audit = read(audit_dir, "audit.csv")
    threshold_text, note = "", ""
    summary_txt = Path(audit_dir) / "audit_summary.txt" if audit_dir else None
    if summary_txt is not None and summary_txt.is_file():
        rules = [ln.strip() for ln in summary_txt.read_text().splitlines()
                 if "threshold =" in ln]
        threshold_text = "Thresholds: " + "; ".join(rules[:6]) if rules else ""
    rec_json = Path(recognisability_dir) / "recognisability.json" if recognisability_dir \
        else None
    if rec_json is not None and rec_json.is_file():
        note = json.loads(rec_json.read_text()).get("gan_train_note") or ""
    return panel_html(audit=audit, audit_summary=read(audit_dir, "audit_summary.csv"),
                      gan_test=read(recognisability_dir, "gan_test.csv"),
                      gan_train=read(recognisability_dir, "gan_train.csv"),
                      kid_rows=kid_rows,
                      pairs_png=Path(audit_dir) / "closest_pairs.png" if audit_dir else None,
                      threshold_text=threshold_text, gan_train_note=note, max_pairs=max_pairs)
