"""How much does a classifier lose on the OOD set? Per-class recall and F1, in-distribution
vs OOD, and the drop; written as CSV and Markdown, with a sheet of sample triples.

Both folders are evaluated with `classifier.evaluate.evaluate_model` (the same metrics as
stage 4) into `out_dir/in_distribution/` and `out_dir/ood/`; an evaluation already there
for the same model and folder is reused.

Example:
    >>> rows = drop_table(metrics_in, metrics_ood)
    >>> print(format_markdown(rows))
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from classifier.evaluate import evaluate_model
from config import InpaintingCompareConfig
from dataset.atomic import atomic_write_text
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.out_dir import check_location
from dataset.scan import DatasetError
from inpainting.sheet import write_triples

COLUMNS = ("class", "support_in", "support_ood", "recall_in", "recall_ood", "recall_drop",
           "f1_in", "f1_ood", "f1_drop")
OVERALL = "all (balanced acc. / macro-F1)"


@dataclass
class CompareResult:
    rows: list[dict]
    files: list[Path] = field(default_factory=list)


# What a comparison writes: re-running into the same folder is fine, any other file is not.
_OURS = {"in_distribution", "ood", "compare.csv", "compare.md", "samples.png"}


def drop_table(m_in: dict, m_ood: dict) -> list[dict]:
    """One row per class of the model present in either folder, then an overall row (balanced accuracy as the
    recall, macro-F1 as the F1). drop = in-distribution - OOD (positive = worse on OOD).

    Args:
        m_in, m_ood: metrics dicts of `classifier.metrics.classification_metrics`.

    Example:
        >>> m = {"class_names": ["a"], "n": 2, "balanced_accuracy": 1.0, "macro_f1": 1.0,
        ...      "per_class": {"a": {"recall": 1.0, "f1": 1.0, "support": 2}}}
        >>> drop_table(m, m)[0]["recall_drop"]
        0.0
    """
    rows = []
    for name in m_in["class_names"]:
        a, b = m_in["per_class"][name], m_ood["per_class"][name]
        if a["support"] == 0 and b["support"] == 0:
            continue  # a class the model knows but neither folder holds: nothing to compare
        rows.append({"class": name, "support_in": a["support"], "support_ood": b["support"],
                     "recall_in": a["recall"], "recall_ood": b["recall"],
                     "recall_drop": a["recall"] - b["recall"], "f1_in": a["f1"],
                     "f1_ood": b["f1"], "f1_drop": a["f1"] - b["f1"]})
    rows.append({"class": OVERALL, "support_in": m_in["n"], "support_ood": m_ood["n"],
                 "recall_in": m_in["balanced_accuracy"],
                 "recall_ood": m_ood["balanced_accuracy"],
                 "recall_drop": m_in["balanced_accuracy"] - m_ood["balanced_accuracy"],
                 "f1_in": m_in["macro_f1"], "f1_ood": m_ood["macro_f1"],
                 "f1_drop": m_in["macro_f1"] - m_ood["macro_f1"]})
    return rows


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def format_markdown(rows: list[dict], title: str = "") -> str:
    """The table in Markdown (values to 3 decimals)."""
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _evaluate(model: str, folder: str, out: Path, batch_size: int, workers: int | None) -> dict:
    """evaluate_model into `out`, or the metrics already there for this model and folder."""
    done = out / "metrics.json"
    if done.is_file():
        metrics = json.loads(done.read_text())
        if metrics.get("model") == str(model) and metrics.get("folder") == str(folder):
            return metrics
        raise DatasetError(f"{out} holds an evaluation of another model or folder: choose a "
                           f"new --out_dir")
    metrics, _ = evaluate_model(model, folder, out, batch_size, workers)
    return metrics


def sample_triples(ood_dir: str | Path, limit: int) -> list[tuple[Path, Path, Path]]:
    """(original, mask, inpainted) files of the first `limit` transformed images, from the
    manifest beside the OOD set (OUT/manifest.csv for OUT/<augm_type>); [] without one."""
    ood_dir = Path(ood_dir)
    manifest = ood_dir.parent / MANIFEST_NAME
    if limit <= 0 or not manifest.is_file():
        return []
    out = []
    for row in read_manifest(manifest):
        if row.generator == "original" or not row.path.startswith(f"{ood_dir.name}/"):
            continue
        mask = row.params.get("mask_file")
        if mask:
            out.append((Path(row.origin), ood_dir.parent / mask, ood_dir.parent / row.path))
        if len(out) >= limit:
            break
    return out


def compare_ood(cfg: InpaintingCompareConfig) -> CompareResult:
    """Evaluates the classifier on both folders and writes compare.csv, compare.md and
    samples.png into cfg.out_dir.

    Raises:
        DatasetError: a missing folder or model, classes the model does not know, an
            out_dir inside one of the two folders, or one holding evaluations of something
            else.
    """
    for flag, folder in (("--test_dir", cfg.test_dir), ("--ood_dir", cfg.ood_dir)):
        check_location(cfg.out_dir, folder, flag)  # never write into the user's folders
        if not Path(folder).is_dir():
            raise DatasetError(f"{flag} {folder} is not a folder")
    # The OOD images come with their generate run (manifest, masks, sheets) one level up:
    # that folder is an input too.
    run = Path(cfg.ood_dir).parent
    if (run / MANIFEST_NAME).is_file():
        check_location(cfg.out_dir, run, "the inpainting run that holds --ood_dir")
    out = Path(cfg.out_dir)
    if out.is_dir() and any(p.name not in _OURS and not p.name.startswith(".")
                            for p in out.iterdir()):
        raise DatasetError(f"--out_dir {cfg.out_dir} holds files that compare did not write "
                           f"(e.g. a generate run's): choose a new folder")
    m_in = _evaluate(cfg.model, cfg.test_dir, out / "in_distribution", cfg.batch_size,
                     cfg.workers)
    m_ood = _evaluate(cfg.model, cfg.ood_dir, out / "ood", cfg.batch_size, cfg.workers)
    rows = drop_table(m_in, m_ood)
    title = f"{Path(cfg.model).name}: {Path(cfg.test_dir).name} vs {Path(cfg.ood_dir).name}"
    files = [atomic_write_text(out / "compare.csv", format_csv(rows)),
             atomic_write_text(out / "compare.md", format_markdown(rows, title))]
    triples = sample_triples(cfg.ood_dir, cfg.samples)
    if triples:
        files.append(write_triples(triples, out / "samples.png",
                                   title=f"{Path(cfg.ood_dir).name}: original | mask | inpainted"))
    return CompareResult(rows, files)
