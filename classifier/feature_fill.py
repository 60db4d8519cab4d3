"""The feature fill (LDMLR, Han et al. 2024): new training samples made in the classifier's
feature space instead of pixels.

The real training images' penultimate features train a small class-conditional diffusion
model (`feature_diffusion`), which then generates, per label, the features that bring it to
the largest label's count. The run folder keeps everything needed to check or redo it:

    <run>/feature_model/              the feature diffusion run (config.json, model.json, weights)
    <run>/generated_features.npz      the generated vectors and their labels
    <run>/generated_features.csv      one row per vector: label, seed, source run
    <run>/feature_quality.csv         per label: KID and memorisation share against the real
                                      features (are the generated features real-like?)

Example:
    >>> gen, gen_labels, info = fill_features(cfg, run_dir, class_names, feats, labels, 1)
"""
from __future__ import annotations

import dataclasses
import io
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from classifier import longtail
from classifier.report import write_csv
from config import FeatureDiffusionConfig
from dataset.atomic import atomic_path
from feature_diffusion.quality import feature_quality
from feature_diffusion.train import train_feature_model

FEATURE_MODEL_DIR = "feature_model"
FEATURES_NAME = "generated_features.npz"


def feature_model_config(cfg):
    """The feature diffusion settings of a classifier run: the defaults of
    FeatureDiffusionConfig (config.py), with the run's step budget and seed."""
    return dataclasses.replace(FeatureDiffusionConfig(), train_steps=cfg.feature_fill_steps,
                               seed=cfg.seed)


def _save_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def fill_features(cfg, run_dir: Path, class_names: Sequence[str], features: np.ndarray,
                  labels: np.ndarray, verbose: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Trains (or reloads) the feature diffusion model on the real features and generates
    the fill.

    Args:
        cfg: the classifier run's settings (seed, feature_fill_steps, from_run).
        run_dir: the classifier run folder.
        features, labels: the real training images' features (N, D) and class indices.

    Returns:
        (generated features (M, D), their class indices (M,), info for metrics.json:
        counts per label, wall times, feature quality per label).
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    names = [class_names[i] for i in labels]
    counts = Counter(names)
    need = {c: n for c, n in longtail.fill_counts(
        {c: counts.get(c, 0) for c in class_names if counts.get(c, 0)}).items() if n}
    t0 = time.time()
    model = train_feature_model(features, np.asarray(labels), list(class_names),
                                feature_model_config(cfg), run_dir / FEATURE_MODEL_DIR)
    t1 = time.time()
    gen, gen_names, seeds = model.generate(need, seed=cfg.seed)
    t2 = time.time()
    index = {c: i for i, c in enumerate(class_names)}
    gen_labels = np.array([index[c] for c in gen_names], dtype=np.int64)
    _save_npz(run_dir / FEATURES_NAME, features=gen.astype(np.float32), labels=gen_labels)
    write_csv(run_dir / "generated_features.csv", pd.DataFrame({
        "row": np.arange(len(gen_names)), "label": gen_names, "seed": seeds,
        "generator": "feature_ddim", "source_run": cfg.from_run or str(run_dir)}))
    quality = feature_quality(features, names, gen, list(gen_names))
    write_csv(run_dir / "feature_quality.csv", pd.DataFrame(quality))
    if verbose:
        print(f"feature fill: {len(gen_names)} features generated "
              f"({', '.join(f'{c} +{n}' for c, n in need.items())}); diffusion trained in "
              f"{t1 - t0:.1f} s, sampled in {t2 - t1:.1f} s")
    return gen.astype(np.float32), gen_labels, {
        "feature_fill": {"generated_per_label": need, "n_generated": int(len(gen_names)),
                         "seconds_train": round(t1 - t0, 2),
                         "seconds_generate": round(t2 - t1, 2), "quality": quality}}
