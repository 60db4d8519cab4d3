"""The quality commands' folders: read the inputs, call the audit / recognisability code,
write the results atomically into a new out_dir (never into an input).

    out_dir/config.json           resolved settings (a re-run with the same settings resumes)
            audit.csv             one row per synthetic image and feature space
            audit_summary.csv     per label: memorisation share, threshold, distances
            audit_summary.txt     the same for people, with the threshold rule
            closest_pairs.png     the closest (synthetic | nearest real) pairs
            gan_test.csv          per label: GAN-test accuracy beside real-test accuracy
            gan_train.csv         per label: GAN-train accuracy beside the real baseline
            recognisability.json  overall numbers and the classifier run folders
            classifiers/          classifier run folders trained here (and their data links)

Example:
    >>> run_audit(AuditConfig(balanced_dir="run/balanced_data", test_dir="data/test",
    ...                       out_dir="quality_audit"))
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from classifier.report import write_json
from cli.flags import (ConfigError, config_from_dict, config_to_dict, read_json_object,
                       save_config_json, validate_config)
from cli.tables import format_table
from config import ClassifierConfig
from dataset.atomic import atomic_path, atomic_write_text
from dataset.manifest import MANIFEST_NAME, read_manifest
from dataset.out_dir import check_location, holds_files, remove_stale_temp_files, saved_config
from dataset.scan import DatasetError, scan_labelled_dir
from quality.audit import audit_synthetic, closest_pairs_sheet, summarise
from quality.features import classifier_space, kid_space, pixel_space
from quality.recognisability import gan_test, gan_train, train_real_only

CONFIG_NAME = "config.json"
# Settings that may change between a run and its resumption (they change no result).
_FREE_KEYS = {"verbose"}


def _inputs(cfg) -> list[tuple[str, str]]:
    return [(flag, value) for flag, value in
            (("--balanced_dir", cfg.balanced_dir), ("--train_dir", cfg.train_dir),
             ("--test_dir", cfg.test_dir), ("--classifier_run", cfg.classifier_run))
            if value]


def prepare_out_dir(cfg) -> Path:
    """The resolved out_dir, created: refused inside any input folder, or when it holds
    files this command did not write, or was made with other settings.

    Raises:
        DatasetError: one line saying why; nothing is changed.
    """
    for flag, value in _inputs(cfg):
        if not Path(value).exists():
            raise DatasetError(f"{flag} {value} does not exist")
        check_location(cfg.out_dir, value, flag)
    out = Path(cfg.out_dir).resolve()
    if holds_files(out):
        saved = saved_config(out)
        if saved.get("_config_class") != type(cfg).__name__:
            raise DatasetError(f"--out_dir {cfg.out_dir} already holds files not written by "
                               f"this command: choose a new folder (nothing changed)")
        now = config_to_dict(cfg)
        changed = sorted(k for k in now if k not in _FREE_KEYS and not k.startswith("_")
                         and saved.get(k) != now[k])
        if changed or saved.get("_inputs_resolved") != _resolved(cfg):
            what = ", ".join(changed) or "input folders"
            raise DatasetError(f"--out_dir {cfg.out_dir} was made with other settings "
                               f"({what}): choose a new folder or the same settings")
    remove_stale_temp_files(out)  # what a killed run left half-written
    out.mkdir(parents=True, exist_ok=True)
    return out


def _resolved(cfg) -> dict[str, str]:
    return {flag: str(Path(value).resolve()) for flag, value in _inputs(cfg)}


def _save_config(cfg, out: Path) -> None:
    save_config_json(cfg, out / CONFIG_NAME, inputs_resolved=_resolved(cfg))


def read_inputs(cfg) -> tuple[list[tuple[str, str]], list[tuple[str, str]],
                              list[tuple[str, str]]]:
    """(synthetic, real training, real test) images as (path, label) lists.

    Synthetic images are the manifest rows whose generator is not in `real_generators`;
    real training images come from --train_dir, else from the manifest's real rows.

    Raises:
        DatasetError: no manifest, no synthetic rows, listed files missing, empty folders.
    """
    manifest = Path(cfg.balanced_dir) / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetError(f"--balanced_dir {cfg.balanced_dir} has no {MANIFEST_NAME}")
    try:
        rows = read_manifest(manifest)
    except ValueError as err:
        raise DatasetError(str(err)) from None
    root = manifest.parent
    real_gens = set(cfg.real_generators)
    synthetic = [(str(root / r.path), r.label) for r in rows if r.generator not in real_gens]
    if not synthetic:
        raise DatasetError(f"{manifest} lists no synthetic images (every generator is one of "
                           f"--real_generators {' '.join(cfg.real_generators)})")
    missing = [p for p, _ in synthetic if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"{manifest} lists {len(missing)} missing synthetic file(s), "
                           f"e.g. {missing[0]}")
    if cfg.train_dir:
        train = [(str(r.path), r.label) for r in scan_labelled_dir(cfg.train_dir).images]
    else:
        train = [(str(root / r.path), r.label) for r in rows if r.generator in real_gens]
        if not train:
            raise DatasetError(f"{manifest} has no real rows: give --train_dir")
    test = [(str(r.path), r.label) for r in scan_labelled_dir(cfg.test_dir).images]
    return synthetic, train, test


def _write_csv(path: Path, df) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def audit_text(table, summary) -> str:
    """audit_summary.txt: the threshold rule, shares per label and space, skipped files."""
    attrs = table.attrs
    lines = [f"memorisation audit: a synthetic image is flagged when its nearest real training "
             f"image (any label) is closer than the threshold ({attrs.get('metric')} distance "
             f"on L2-normalised features); reference: {attrs.get('reference')} distances"]
    thresholds = (table.groupby(["space", "label"], sort=False).threshold.first()
                  if len(table) else {})
    for space, rules in attrs.get("rules", {}).items():
        if len(set(rules.values())) == 1:  # one global threshold: say it once
            label = next(iter(rules))
            lines.append(f"  {space}: threshold = {thresholds[(space, label)]:.4g}, the "
                         f"{next(iter(rules.values()))} (all labels)")
            continue
        for label, rule in rules.items():
            lines.append(f"  {space} / {label}: threshold = {thresholds[(space, label)]:.4g}, "
                         f"the {rule}")
    rows = [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()}
            for r in summary.to_dict("records")]
    lines.append(format_table(rows, list(summary.columns)))
    skipped = attrs.get("skipped") or []
    if skipped:
        lines.append(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(skipped[:5]))
    return "\n".join(lines) + "\n"


def run_audit(cfg, progress: bool = True) -> dict:
    """Audits every synthetic image in every feature space asked for; writes audit.csv,
    audit_summary.csv/.txt and closest_pairs.png into out_dir.

    Returns:
        {"out_dir", "n_synthetic", "n_flagged" (flagged in any space), "share", "spaces"}.

    Raises:
        DatasetError: unusable inputs or out_dir.
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    synthetic, train, test = read_inputs(cfg)
    out = prepare_out_dir(cfg)
    _save_config(cfg, out)
    train_by_label: dict[str, list[str]] = {}
    for p, lab in train:
        train_by_label.setdefault(lab, []).append(p)
    test_by_label: dict[str, list[str]] = {}
    for p, lab in test:
        test_by_label.setdefault(lab, []).append(p)
    spaces = [pixel_space] if cfg.pixels else []
    if cfg.kid_features != "none":
        spaces.append(lambda: kid_space(cfg.kid_features))
    if cfg.classifier_run:
        spaces.append(lambda: classifier_space(cfg.classifier_run))
    tables, rules, skipped = [], {}, []
    for make in spaces:
        space = make()
        if progress:
            print(f"audit: {len(synthetic)} synthetic vs {len(train)} training images in the "
                  f"{space.name} space")
        t = audit_synthetic([p for p, _ in synthetic], train_by_label, test_by_label, space,
                            synthetic_labels=[lab for _, lab in synthetic],
                            percentile=cfg.percentile, metric=cfg.metric,
                            min_reference=cfg.min_reference, scope=cfg.scope)
        rules[space.name] = t.attrs["rule"]
        skipped += [s for s in t.attrs["skipped"] if s not in skipped]
        reference = t.attrs["reference"]
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    table.attrs.update(rules=rules, skipped=skipped, reference=reference, metric=cfg.metric)
    summary = summarise(table)
    _write_csv(out / "audit.csv", table)
    _write_csv(out / "audit_summary.csv", summary)
    atomic_write_text(out / "audit_summary.txt", audit_text(table, summary))
    sheet = closest_pairs_sheet(table, cfg.sheet_pairs,
                                title="closest pairs: synthetic (left) | nearest real training "
                                      "image (right)")
    with atomic_path(out / "closest_pairs.png") as tmp:
        sheet.save(tmp, format="PNG")
    flagged = table.groupby("path").flagged.any()
    return {"out_dir": str(out), "n_synthetic": int(len(flagged)),
            "n_flagged": int(flagged.sum()),
            "share": float(flagged.mean()) if len(flagged) else float("nan"),
            "spaces": list(rules), "summary": summary}


def recipe(cfg):
    """The ClassifierConfig the classifiers of `cfg` are trained with: the defaults, then
    --classifier_run's settings or --classifier_config, then this command's overrides."""
    names = set(ClassifierConfig.__dataclass_fields__)
    base = ClassifierConfig(train_dir=".")
    for source in (cfg.classifier_run and Path(cfg.classifier_run) / "config.json",
                   cfg.classifier_config):
        if source and Path(source).is_file():
            data = read_json_object(source)
            base = config_from_dict(ClassifierConfig, {k: v for k, v in data.items()
                                                       if k in names}, base)
    overrides = {k: getattr(cfg, k) for k in ("backbone", "weights", "input_shape",
                                              "number_epochs", "batch_size", "seed")
                 if getattr(cfg, k) is not None}
    base = dataclasses.replace(base, **overrides, train_dir=".", manifest="",
                               sample_weighting="none")
    try:
        validate_config(base)
    except ConfigError as err:
        raise DatasetError(f"classifier recipe: {err}") from None
    return base


def run_recognisability(cfg) -> dict:
    """GAN-test with --classifier_run (or a real-only classifier trained here) and GAN-train;
    writes gan_test.csv, gan_train.csv and recognisability.json into out_dir.

    Returns:
        {"gan_test": DataFrame, "gan_train": DataFrame or None, plus the JSON's keys}.

    Raises:
        DatasetError: unusable inputs or out_dir.
    """
    synthetic, train, test = read_inputs(cfg)
    if cfg.classifier_config and not Path(cfg.classifier_config).is_file():
        raise DatasetError(f"--classifier_config {cfg.classifier_config} does not exist")
    base = recipe(cfg)
    out = prepare_out_dir(cfg)
    _save_config(cfg, out)
    work = out / "classifiers"
    run = cfg.classifier_run or str(train_real_only(train, test, base, work,
                                                    verbose=cfg.verbose))
    table = gan_test(run, synthetic, test)
    _write_csv(out / "gan_test.csv", table)
    result = {"classifier_run": str(Path(run).resolve()), "gan_test": table,
              "gan_train": None, "gan_train_note": "", "skipped": table.attrs["skipped"]}
    if cfg.gan_train:
        try:
            gt, info = gan_train(synthetic, train, test, base, work, cfg.real_baseline,
                                 verbose=cfg.verbose)
            _write_csv(out / "gan_train.csv", gt)
            result.update(gan_train=gt, **info)
        except DatasetError as err:  # e.g. one label filled: GAN-test still stands
            result["gan_train_note"] = str(err)
    write_json(out / "recognisability.json",
               {k: (v.to_dict("records") if hasattr(v, "to_dict") else v)
                for k, v in result.items()})
    result["out_dir"] = str(out)
    return result
