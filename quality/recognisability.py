"""Do the synthetic images look like their label? GAN-test and GAN-train, per label.

GAN-test (Shmelkov et al. 2018): a classifier trained on real images only labels each
generated image; the share it calls by its intended label, beside the same classifier's
accuracy (recall) on real test images of that label. A ratio near 1 means the generated
images are as recognisable as real ones.

GAN-train (also "classification accuracy score", Ravuri & Vinyals 2019): a classifier
trained on synthetic images only, tested on real test images. Per label: its recall on the
real test images of that label, beside the same recipe trained on the real training images
of the same labels (the "real_train" baseline). GAN-train low while GAN-test is high means the
generated images are recognisable but not diverse (they cover a corner of the label).

Both classifiers are trained and saved by `classifier.training.train_run` (their run
folders keep config.json, weights, metrics.json and confusion matrices).

Layers: `per_label_accuracy`, `gan_test_table` and `gan_train_table` are pure (pandas);
`predict_samples`, `gan_test` and `gan_train` run Keras models.

Example:
    >>> table = gan_test("classifier_runs/real_only", synthetic, test)
    >>> table[["label", "gan_test_accuracy", "real_test_accuracy"]]
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from classifier.calibration import softmax
from classifier.data import load_images, predict_logits
from classifier.runs import METRICS_NAME, is_finished, load_run
from classifier.training import train_run
from dataset.copying import copy_original, short_hash
from dataset.manifest import ManifestRow, write_manifest
from dataset.scan import DatasetError, natural_key

GAN_TEST_COLUMNS = ["label", "n_generated", "gan_test_accuracy", "mean_p_label", "n_test",
                    "real_test_accuracy", "gan_test_relative", "note"]
GAN_TRAIN_COLUMNS = ["label", "n_synthetic_train", "n_test", "gan_train_accuracy",
                     "n_real_train", "real_train_accuracy", "gan_train_relative"]


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b == b and a == a and b > 0 else float("nan")


def per_label_accuracy(true_labels: Sequence[str], pred_labels: Sequence[str],
                       labels: Sequence[str]):
    """Per label: images, correctly labelled ones, their share (NaN without images).

    Example:
        >>> per_label_accuracy(["a", "a", "b"], ["a", "b", "b"], ["a", "b"]).accuracy.tolist()
        [0.5, 1.0]
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    t = np.asarray(list(true_labels), dtype=object)
    p = np.asarray(list(pred_labels), dtype=object)
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} true labels but {len(p)} predictions")
    rows = []
    for label in labels:
        mine = t == label
        n, correct = int(mine.sum()), int((p[mine] == label).sum())
        rows.append({"label": label, "n": n, "correct": correct,
                     "accuracy": correct / n if n else float("nan")})
    return pd.DataFrame(rows, columns=["label", "n", "correct", "accuracy"])


def gan_test_table(generated_true: Sequence[str], generated_pred: Sequence[str],
                   test_true: Sequence[str], test_pred: Sequence[str],
                   labels: Sequence[str], generated_p_label: Sequence[float] | None = None,
                   known: Sequence[str] | None = None):
    """The GAN-test table from predictions (label names).

    Args:
        generated_true / generated_pred: intended and predicted label of each generated image.
        test_true / test_pred: the same for real test images.
        labels: the rows (labels with generated images, usually).
        generated_p_label: the classifier's probability of the intended label, per image.
        known: the classifier's classes; a label outside them gets a note and NaNs.

    Example:
        >>> gan_test_table(["a", "a"], ["a", "b"], ["a"], ["a"], ["a"]).gan_test_accuracy[0]
        0.5
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    gen = per_label_accuracy(generated_true, generated_pred, labels).set_index("label")
    test = per_label_accuracy(test_true, test_pred, labels).set_index("label")
    probs = (np.asarray(generated_p_label, dtype=float) if generated_p_label is not None
             else None)
    true_arr = np.asarray(list(generated_true), dtype=object)
    rows = []
    for label in labels:
        mine = true_arr == label
        note = ""
        if known is not None and label not in known:
            note = "label unknown to the classifier"
        elif not gen.loc[label, "n"]:
            note = "no generated images"
        elif not test.loc[label, "n"]:
            note = "no real test images"
        acc = gen.loc[label, "accuracy"] if not note.startswith("label") else float("nan")
        rows.append({"label": label, "n_generated": int(gen.loc[label, "n"]),
                     "gan_test_accuracy": acc,
                     "mean_p_label": (float(probs[mine].mean()) if probs is not None
                                      and mine.any() and not note.startswith("label")
                                      else float("nan")),
                     "n_test": int(test.loc[label, "n"]),
                     "real_test_accuracy": test.loc[label, "accuracy"],
                     "gan_test_relative": _ratio(acc, test.loc[label, "accuracy"]),
                     "note": note})
    return pd.DataFrame(rows, columns=GAN_TEST_COLUMNS)


def gan_train_table(synthetic_metrics: dict, real_metrics: dict | None = None,
                    synthetic_counts: dict | None = None):
    """The GAN-train table from the `metrics.json` of the synthetic-only run (and of the
    real-only baseline), read from their real-test `per_class` recall.

    Example:
        >>> m = {"tests": {"test": {"per_class": {"a": {"recall": .5, "support": 4}}}},
        ...      "train_counts": {"a": 10}}
        >>> gan_train_table(m).gan_train_accuracy[0]
        0.5
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    syn = synthetic_metrics["tests"]["test"]["per_class"]
    real = real_metrics["tests"]["test"]["per_class"] if real_metrics else {}
    counts = synthetic_counts or synthetic_metrics.get("train_counts", {})
    real_counts = real_metrics.get("train_counts", {}) if real_metrics else {}
    rows = []
    for label, m in syn.items():
        n_test = int(m["support"])
        acc = float(m["recall"]) if n_test else float("nan")
        r = real.get(label)
        r_acc = float(r["recall"]) if r and r["support"] else float("nan")
        rows.append({"label": label, "n_synthetic_train": int(counts.get(label, 0)),
                     "n_test": n_test, "gan_train_accuracy": acc,
                     "n_real_train": int(real_counts.get(label, 0)) if real_metrics else 0,
                     "real_train_accuracy": r_acc,
                     "gan_train_relative": _ratio(acc, r_acc)})
    return pd.DataFrame(rows, columns=GAN_TRAIN_COLUMNS)


# ---------------------------------------------------------------- models


def predict_samples(model, cfg, class_names: Sequence[str], paths: Sequence[str | Path],
                    batch_size: int = 64):
    """Predicted class names and softmax probabilities of image files, loaded exactly as the
    classifier saw its training images (size, centre crop, grey).

    Returns:
        (predicted names, probabilities (N_ok, C), indices of readable paths, skip messages).
    """
    images, ok, errors = load_images([str(p) for p in paths], cfg.input_shape, cfg.grayscale,
                                     desc=None)
    logits = predict_logits(model, images, batch_size)
    probs = softmax(logits, 1.0) if len(logits) else np.zeros((0, len(class_names)))
    names = [class_names[i] for i in probs.argmax(1)] if len(probs) else []
    return names, probs, ok, errors


def gan_test(classifier, synthetic: Sequence[tuple[str, str]],
             test: Sequence[tuple[str, str]], batch_size: int = 64):
    """GAN-test of a real-only classifier.

    Args:
        classifier: a classifier run folder, or (model, ClassifierConfig, class_names) as
            `classifier.runs.load_run` returns.
        synthetic: (path, intended label) of each generated image.
        test: (path, label) of each real test image.

    Returns:
        the GAN_TEST_COLUMNS table, one row per label with generated images (natural
        order); `df.attrs["skipped"]` lists unreadable files.

    Example:
        >>> gan_test("runs/real_only", [("g/boot/1.png", "boot")], [("t/boot/9.png", "boot")])
    """
    if isinstance(classifier, (str, Path)):
        classifier = load_run(classifier)
    model, cfg, class_names = classifier
    labels = sorted({lab for _, lab in synthetic}, key=natural_key)
    skipped: list[str] = []
    probs_of = {}
    for name, items in (("generated", synthetic),
                        ("test", [t for t in test if t[1] in labels])):
        known = [(p, lab) for p, lab in items if lab in class_names]
        pred, probs, ok, errors = predict_samples(model, cfg, class_names,
                                                  [p for p, _ in known], batch_size)
        skipped += errors
        true = [known[i][1] for i in ok]
        p_label = [probs[k, class_names.index(t)] for k, t in enumerate(true)]
        probs_of[name] = (true, pred, p_label)
    g_true, g_pred, g_p = probs_of["generated"]
    t_true, t_pred, _ = probs_of["test"]
    # Images of labels the classifier does not know are counted, never predicted.
    unknown = [lab for _, lab in synthetic if lab not in class_names]
    table = gan_test_table(g_true + unknown, g_pred + [""] * len(unknown), t_true, t_pred,
                           labels, g_p + [np.nan] * len(unknown), known=class_names)
    table.attrs["skipped"] = skipped
    return table


def _link_tree(samples: Sequence[tuple[str, str]], folder: Path) -> Path:
    """`folder/<label>/<name>` links (symlinks; hard links or copies where the file system
    refuses) to the given images, so that folder-based code can read a chosen subset
    without copying a dataset. Names are made unique per label."""
    seen: set[str] = set()
    for path, label in samples:
        src = Path(path).resolve()
        name = f"{label}/{src.name}"
        if name in seen:
            name = f"{label}/{src.stem}_{short_hash(str(src))}{src.suffix}"
        seen.add(name)
        dst = folder / name
        if dst.is_symlink() or dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(src, dst)
        except OSError:
            copy_original(src, dst, link=True)
    return folder


def _run_or_reuse(cfg, verbose: int) -> dict:
    """metrics.json of the run `cfg` names: read back when it finished earlier, else trained."""
    run_dir = Path(cfg.out_dir) / cfg.run_name
    if is_finished(run_dir):
        return json.loads((run_dir / METRICS_NAME).read_text())
    return train_run(cfg, verbose=verbose).metrics


def train_real_only(real_train: Sequence[tuple[str, str]], test: Sequence[tuple[str, str]],
                    base_cfg, work_dir: str | Path, run_name: str = "real_only",
                    verbose: int = 0) -> Path:
    """Trains (or reuses a finished) real-only classifier on `real_train`; its run folder.

    The images are linked into `work_dir/data/` (never copied or moved); the split into
    training and validation images is the classifier's own (`validation_split`).
    """
    work = Path(work_dir)
    labels = {lab for _, lab in real_train}
    train_dir = _link_tree(real_train, work / "data" / f"{run_name}_train")
    test_dir = _link_tree([t for t in test if t[1] in labels], work / "data" / f"{run_name}_test")
    cfg = dataclasses.replace(base_cfg, train_dir=str(train_dir), manifest="", val_dir="",
                              test_dir=str(test_dir), ood_test_dirs=None,
                              sample_weighting="none", out_dir=str(work), run_name=run_name)
    _run_or_reuse(cfg, verbose)
    return work / run_name


def gan_train(synthetic: Sequence[tuple[str, str]], real_train: Sequence[tuple[str, str]],
              test: Sequence[tuple[str, str]], base_cfg, work_dir: str | Path,
              real_baseline: bool = True, verbose: int = 0):
    """GAN-train: a classifier trained on synthetic images only, tested on real images.

    Only the labels that have synthetic images take part (a stage-3 folder often fills a
    few labels); the real training images of those labels select the best epoch (the
    synthetic run has no real training image to hold out), and the baseline run trains the
    same recipe on them.

    Args:
        synthetic: (path, label) of the synthetic training images.
        real_train: (path, label) of real training images (validation; the baseline).
        test: (path, label) of real test images.
        base_cfg: a ClassifierConfig: the recipe (backbone, size, epochs, seed, ...).
        work_dir: where the links and the two run folders go (`gan_train`, `real_train`).
        real_baseline: also train the real-only baseline on the same labels.

    Returns:
        (GAN_TRAIN_COLUMNS table, info dict with run folders and overall accuracies).

    Raises:
        DatasetError: synthetic images of fewer than 2 labels, or a label without real
            training or test images.
    """
    work = Path(work_dir)
    labels = sorted({lab for _, lab in synthetic}, key=natural_key)
    if len(labels) < 2:
        raise DatasetError(f"GAN-train needs synthetic images of at least 2 labels, found "
                           f"{len(labels)} ({', '.join(labels) or 'none'})")
    real = [s for s in real_train if s[1] in labels]
    tests = [t for t in test if t[1] in labels]
    for what, items in (("real training", real), ("real test", tests)):
        missing = [lab for lab in labels if lab not in {x[1] for x in items}]
        if missing:
            raise DatasetError(f"GAN-train: no {what} images of label(s) {', '.join(missing)}")
    data = work / "data"
    val_dir = _link_tree(real, data / "real_train")
    test_dir = _link_tree(tests, data / "real_test")
    manifest = data / "synthetic_only.csv"
    write_manifest(manifest, [ManifestRow(str(Path(p).resolve()), lab, "", str(p), "synthetic")
                              for p, lab in synthetic])
    syn_cfg = dataclasses.replace(
        base_cfg, train_dir="", manifest=str(manifest), real_generators=[],
        val_dir=str(val_dir), test_dir=str(test_dir), ood_test_dirs=None,
        synthetic_ratio=None, sample_weighting="none", out_dir=str(work), run_name="gan_train")
    syn_metrics = _run_or_reuse(syn_cfg, verbose)
    real_metrics = None
    if real_baseline:
        real_cfg = dataclasses.replace(
            base_cfg, train_dir=str(val_dir), manifest="", val_dir="", test_dir=str(test_dir),
            ood_test_dirs=None, sample_weighting="none", out_dir=str(work),
            run_name="real_train")
        real_metrics = _run_or_reuse(real_cfg, verbose)
    table = gan_train_table(syn_metrics, real_metrics)
    info = {"labels": labels, "gan_train_run": str(work / "gan_train"),
            "gan_train_accuracy": syn_metrics["tests"]["test"]["accuracy"],
            "real_train_run": str(work / "real_train") if real_baseline else None,
            "real_train_accuracy": (real_metrics["tests"]["test"]["accuracy"]
                                    if real_metrics else None)}
    return table, info
