"""A model on a synthetic set: accuracy against the labels, error against its own prediction on
each image's origin, overall and per op family; two models (before / after retraining) side
by side.

The synthetic set is a `python3 -m robustness synthesize` output: its manifest.csv gives
each image's label, origin and op chain.

Example:
    >>> metrics = evaluate_synthetic({"before": "old.keras", "after": "new.keras"},
    ...                              "robustness_synthetic")
    >>> metrics["change"]["accuracy"]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from dataset.images import ImageLoadError, load_rgb
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.scan import DatasetError
from robustness.data import load_fitted
from robustness.errors import batch_errors, label_change, resolve_error
from robustness.ops import FAMILIES, OPS
from robustness.predict import load_predictor
from robustness.synthesize import GENERATOR


def load_synthetic_set(folder: str | Path):
    """(synthetic images, origin images, labels, families per image, skipped) of a
    synthesize output folder.

    Raises:
        DatasetError: no manifest, or no readable synthetic rows.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetError(f"--images {folder} has no {MANIFEST_NAME}: give the out_dir of "
                           f"'python3 -m robustness synthesize'")
    try:
        rows = [r for r in read_manifest(manifest) if r.generator == GENERATOR]
    except ValueError as err:
        raise DatasetError(str(err)) from None
    if not rows:
        raise DatasetError(f"{manifest} lists no '{GENERATOR}' images")
    synth, origins, labels, families, skipped = [], [], [], [], []
    origin_cache: dict[tuple, np.ndarray] = {}
    for r in rows:
        size = tuple(r.params.get("image_size", ()))
        try:
            img = load_rgb(folder / r.path)
            key = (r.params.get("origin", ""), size)
            if key not in origin_cache:
                origin_cache[key] = load_fitted(key[0], size)
        except (ImageLoadError, OSError) as err:
            skipped.append((r.path, str(err)))
            continue
        if img.shape[:2] != size:
            skipped.append((r.path, f"size {img.shape[:2]} is not the recorded {size}"))
            continue
        synth.append(img)
        origins.append(origin_cache[key])
        labels.append(r.label)
        families.append(sorted({OPS[s["op"]].family for s in r.params.get("ops", [])
                                if s.get("op") in OPS}))
    if not synth:
        raise DatasetError(f"none of the {len(rows)} synthetic images in {folder} could be "
                           f"read with its origin; first problem: {skipped[0][0]}: "
                           f"{skipped[0][1]}")
    return np.stack(synth), np.stack(origins), labels, families, skipped


def _metrics(errors, changed, correct, mask) -> dict:
    out = {"n": int(mask.sum()),
           "error_vs_clean": float(errors[mask].mean()) if mask.any() else None,
           "label_changed": float(changed[mask].mean()) if mask.any() else None}
    out["accuracy"] = (float(correct[mask].mean()) if correct is not None and mask.any()
                       else None)
    return out


def evaluate_synthetic(models: Mapping[str, Any], folder: str | Path,
                       diff_error: str | Callable | None = None, batch_size: int = 64,
                       input_scale: float = 255.0, output: str = "auto") -> dict:
    """Evaluates each model on the synthetic set in `folder`.

    Args:
        models: {name: model path / keras.Model / Predictor}; with two, the second is
            "after" and `change` holds after - before.
        folder: a synthesize output folder (manifest.csv + label folders).

    Returns:
        {"images", "n", "families", "models": {name: {"overall", "families"}}, "change"?,
         "skipped"}.
    """
    synth, origins, labels, families, skipped = load_synthetic_set(folder)
    diff = resolve_error(diff_error)
    fams = [f for f in FAMILIES if any(f in fs for fs in families)]
    out: dict = {"images": str(folder), "n": len(synth), "families": fams, "models": {},
                 "skipped": skipped}
    for name, model in models.items():
        predictor = load_predictor(model, batch_size=batch_size, input_scale=input_scale,
                                   output=output)
        clean, aug = predictor(origins), predictor(synth)
        errors = batch_errors(diff, clean, aug)
        changed = (label_change(clean, aug) if isinstance(clean, np.ndarray)
                   else np.zeros(len(synth)))
        correct = None
        classes = predictor.class_names
        if classes and isinstance(aug, np.ndarray) and aug.ndim == 2 and \
                all(lab in classes for lab in labels):
            truth = np.array([classes.index(lab) for lab in labels])
            correct = (aug.argmax(1) == truth).astype(float)
        everything = np.ones(len(synth), bool)
        out["models"][name] = {
            "overall": _metrics(errors, changed, correct, everything),
            "families": {f: _metrics(errors, changed, correct,
                                     np.array([f in fs for fs in families]))
                         for f in fams}}
    if len(models) == 2:
        before, after = (out["models"][n]["overall"] for n in models)
        out["change"] = {k: (after[k] - before[k]) for k in ("accuracy", "error_vs_clean",
                                                              "label_changed")
                         if after[k] is not None and before[k] is not None}
    return out
