"""Reads a pipeline run's folders back into the numbers the report and the benchmark show.

Counts per label and site at each stage, the stage-3 plan, the classifier comparison
(summary, paired differences, confusion matrices summed over seeds, per-run validation
curves and test predictions) and the KID of the
generated images against real test images, next to the KID of real training images against
the same test images (the value a perfect generator would reach on this little data).

Example:
    >>> rows = stage_counts(layout, "data/train")
    >>> kid = synthetic_kid("run/balanced_data", "data/test")
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from config import ClassifierConfig
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.scan import natural_key, scan_labelled_dir
from diffusion.data import load_image
from diffusion.kid import build_feature_extractor, kid_from_features

# What stage 4 counts as real by default (originals and their rotations/flips).
REAL_GENERATORS = tuple(ClassifierConfig().real_generators)


def count_rows(in_dir: str | Path, stage: str, site_regex: str | None = None,
               site_csv: str | None = None) -> list[dict]:
    """Rows {stage, label, site_id, kind, n} for a labelled folder (kind 'real')."""
    scan = scan_labelled_dir(in_dir, None, site_regex, site_csv)
    return [{"stage": stage, "label": lab, "site_id": site, "kind": "real", "n": n}
            for lab, sites in scan.counts().items() for site, n in sites.items()]


def manifest_count_rows(folder: str | Path, stage: str) -> list[dict]:
    """Rows {stage, label, site_id, kind, n} from a stage's manifest.csv; kind is 'real',
    'augmented' (rotations/flips) or 'synthetic' (generated)."""
    def kind(gen: str) -> str:
        return "real" if gen == "original" else "augmented" if gen == "rotate_flip" \
            else "synthetic"
    counts = Counter((r.label, r.site_id, kind(r.generator))
                     for r in read_manifest(Path(folder) / MANIFEST_NAME))
    return [{"stage": stage, "label": lab, "site_id": site, "kind": k, "n": n}
            for (lab, site, k), n in sorted(counts.items())]


def gap_plan_rows(balanced_dir: str | Path, categories: list[list[str]]) -> list[dict]:
    """Per label: its category, real and synthetic images, and the total after stage 3."""
    counts = Counter((r.label, r.generator in REAL_GENERATORS)
                     for r in read_manifest(Path(balanced_dir) / MANIFEST_NAME))
    where = {lab: i + 1 for i, cat in enumerate(categories) for lab in cat}
    order = [lab for cat in categories for lab in cat]
    labels = sorted({lab for lab, _ in counts},
                    key=lambda s: (order.index(s) if s in order else len(order), natural_key(s)))
    return [{"label": lab, "category": where.get(lab, "-"), "real": counts[(lab, True)],
             "synthetic": counts[(lab, False)],
             "total": counts[(lab, True)] + counts[(lab, False)]} for lab in labels]


def synthetic_kid(balanced_dir: str | Path, test_dir: str | Path,
                  image_size: tuple[int, int] = (64, 64), features: str = "auto",
                  max_images: int = 200, seed: int = 0) -> tuple[list[dict], str]:
    """KID per label of generated images, and of real training images, against real test
    images of that label (same extractor, same size; lower is closer).

    Args:
        balanced_dir: stage 3's folder (manifest.csv with originals and synthetic images).
        test_dir: real test images, one sub-folder per label.
        image_size: every image is centre-cropped and resized to this first.
        features: "auto" (InceptionV3 when its weights load, else the random net), "random",
            "inception".
        max_images: at most this many images per set (a seeded sample).

    Returns:
        (rows {label, n_generated, n_test, kid_generated, kid_real_train}, feature kind used).
    """

    rows_by_label: dict[str, dict[str, list[Path]]] = {}
    for r in read_manifest(Path(balanced_dir) / MANIFEST_NAME):
        key = "real" if r.generator in REAL_GENERATORS else "synthetic"
        rows_by_label.setdefault(r.label, {"real": [], "synthetic": []})[key].append(
            Path(balanced_dir) / r.path)
    tests = scan_labelled_dir(test_dir).by_label()
    extractor = build_feature_extractor(features)
    rng = np.random.default_rng(seed)

    def feats(paths: list[Path]) -> np.ndarray:
        if len(paths) > max_images:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), max_images, replace=False))]
        return extractor(np.stack([load_image(p, image_size) for p in paths]))

    out = []
    for label, sets in rows_by_label.items():
        test = [rec.path for rec in tests.get(label, [])]
        if len(sets["synthetic"]) < 2 or len(test) < 2:
            continue
        test_f = feats(test)
        out.append({"label": label, "n_generated": len(sets["synthetic"]), "n_test": len(test),
                    "kid_generated": kid_from_features(test_f, feats(sets["synthetic"])),
                    "kid_real_train": (kid_from_features(test_f, feats(sets["real"]))
                                       if len(sets["real"]) >= 2 else float("nan"))})
    return out, extractor.kind


def comparison(results_dir: str | Path, test_set: str = "test"):
    """(summary rows, paired rows) of stage 4 for one test set, read from its CSV files."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    results_dir = Path(results_dir)
    summary = pd.read_csv(results_dir / "summary.csv")
    summary = summary[summary["set"] == test_set].to_dict("records")
    paired_path = results_dir / "paired.csv"
    paired = []
    if paired_path.is_file() and paired_path.stat().st_size > 1:
        df = pd.read_csv(paired_path)
        paired = df[df["set"] == test_set].to_dict("records") if len(df) else []
    return summary, paired


def summed_confusions(results_dir: str | Path, test_set: str = "test") -> dict[str, dict]:
    """Per arm: the test confusion matrix summed over its seeds, with the class names."""
    out: dict[str, dict] = {}
    for metrics_path in sorted(Path(results_dir).glob("*/seed*/metrics.json")):
        m = json.loads(metrics_path.read_text())
        test = (m.get("tests") or {}).get(test_set)
        if not test:
            continue
        arm = metrics_path.parent.parent.name
        cm = np.asarray(test["confusion_matrix"], dtype=int)
        if arm in out:
            out[arm]["matrix"] = out[arm]["matrix"] + cm
            out[arm]["seeds"] += 1
        else:
            out[arm] = {"matrix": cm, "class_names": m["class_names"], "seeds": 1}
    return out


# The history.csv column of each --evaluation_type (the metric that picked the best epoch).
_HISTORY_COLUMN = {"f1": "val_macro_f1", "accuracy": "val_accuracy",
                   "balanced_accuracy": "val_balanced_accuracy", "loss": "val_loss"}


def _arm_runs(results_dir: Path):
    """(arm, seed, run folder) of every finished run of the comparison, by arm then seed
    (the strength search under classic_select/ is not an arm)."""
    found = []
    for metrics_path in Path(results_dir).glob("*/seed*/metrics.json"):
        run = metrics_path.parent
        seed = run.name[len("seed"):]
        if seed.isdigit():
            found.append((run.parent.name, int(seed), run))
    return sorted(found, key=lambda t: (t[0], t[1]))


def validation_curves(results_dir: str | Path) -> tuple[str, list[dict]]:
    """Per finished run of stage 4: the validation metric that selected its best epoch, per
    epoch (its history.csv), with the best epoch and the epoch budget.

    Returns:
        (history column plotted, e.g. "val_macro_f1";
         [{variant, seed, epochs, values, best_epoch, epochs_run, max_epochs}]).
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    results_dir = Path(results_dir)
    cfg_path = results_dir / "compare_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    column = _HISTORY_COLUMN.get(cfg.get("evaluation_type", "f1"), "val_macro_f1")
    out = []
    for arm, seed, run in _arm_runs(results_dir):
        history = run / "history.csv"
        if not history.is_file():
            continue
        df = pd.read_csv(history)
        if column not in df or "epoch" not in df:
            continue
        m = json.loads((run / "metrics.json").read_text())
        out.append({"variant": arm, "seed": seed, "epochs": df["epoch"].astype(int).tolist(),
                    "values": df[column].astype(float).tolist(),
                    "best_epoch": int(m["best_epoch"]), "epochs_run": int(m["epochs_run"]),
                    "max_epochs": cfg.get("number_epochs")})
    return column, out


def run_predictions(results_dir: str | Path) -> dict[str, dict[tuple, "object"]]:
    """{test set: {(arm, seed): DataFrame(path, label, predicted)}} from the finished runs'
    predictions_<set>.csv."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    out: dict[str, dict] = {}
    for arm, seed, run in _arm_runs(Path(results_dir)):
        for path in sorted(run.glob("predictions_*.csv")):
            out.setdefault(path.stem[len("predictions_"):], {})[(arm, seed)] = pd.read_csv(path)
    return out
