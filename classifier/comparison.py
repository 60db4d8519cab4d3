"""The comparison (`python3 -m classifier.compare`): every arm x every seed at one step
budget, the classic augmentation's strength chosen on validation, and the evidence tables.

    out_dir/classic_select/strength=<s>_seed<S>/   the strength search (first seed only)
    out_dir/recipe_select/<arm>/<recipe>/seed<S>/  the recipe search (--recipe_grid, on
                                                   --recipe_seed only), recipes.json the choice
    out_dir/<arm>/seed<S>/                         one run folder per arm and seed (crt and
                                                   feature_fill load <original>/seed<S>)
    out_dir/runs.csv, summary.csv, paired.csv, compare.md
    out_dir/tail_labels.json                       the tail labels and the real counts
    out_dir/shots.csv                              many / medium / few-shot accuracy per run
                                                   (long-tailed data only, shot_groups.py)

Fairness: every arm trains the same classifier for the same number of steps per epoch (one
pass over the largest arm's training set) and epochs, with the same seeds; the classic
augmentation gets a small validation grid so that the baseline is tuned, not strawmanned.
Evidence: a bootstrap CI per arm over seeds and test images; the paired difference of every
arm to the strongest non-generative arm (by mean test balanced accuracy), whose one paired
bootstrap distribution gives both its p-value (Holm-corrected across arms) and its interval
(at the level of the arm's Holm step); the verdict is read off that interval (VERDICT_RULE).

Example:
    >>> summary, paired, failures = run_compare(cfg)   # cfg: a validated CompareConfig
"""
from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from classifier import sampling, shot_groups, statistics
from classifier.arms import (is_generative, parse_fill_dirs, split_arm, starts_from,
                             strongest_non_generative, uses_classic)
from classifier.data import samples_from_dir, samples_from_manifest
from classifier.experiments import _execute, _rows_from_runs, to_classifier_config
from classifier.grid import combo_name, expand_grid, parse_grid, summarize
from classifier.metrics import SUMMARY_METRICS, higher_is_better, paired_comparison
from classifier.report import write_csv
from classifier.runs import CONFIG_NAME, METRICS_NAME, is_finished
from cli.flags import config_to_dict, save_config_json
from config import REAL_ONLY_SETTINGS
from dataset.atomic import atomic_write_text
from dataset.out_dir import check_outside_inputs
from dataset.scan import DatasetError, natural_key

TABLE_METRICS = SUMMARY_METRICS + ("tail_recall",)
PAIRED_METRICS = statistics.BOOT_METRICS          # balanced accuracy, macro-F1, tail recall
VERDICT_METRIC = "balanced_accuracy"
ALPHA = 0.05
VERDICT_RULE = (
    "Verdict rule: the paired bootstrap of (arm - reference) over seeds and test images gives "
    "a two-sided p-value, Holm-corrected across the arms of each test set and metric, and an "
    "interval at the level of the arm's Holm step; 'better'/'worse' exactly when that printed "
    "interval excludes 0 (Holm p < 0.05), 'n/a (no bootstrap)' without per-image predictions "
    "or resamples.")


# --- planning ---------------------------------------------------------------------------

def fill_folders(cfg) -> dict[str, str]:
    """{fill arm base: folder} of the fills the config names."""
    out = {"classic_fill": cfg.classic_fill_dir, "diffusion_fill": cfg.balanced_dir}
    out.update(parse_fill_dirs(cfg.fill_dirs))
    return {k: v for k, v in out.items() if v}


def arm_settings(cfg, arm: str, strength: float | None) -> dict:
    """The ClassifierConfig changes that make `arm` (strength: the classic augmentation's).
    An arm that starts from another arm's run also needs `from_run` (see `_job`)."""
    fills = fill_folders(cfg)
    base, suffixes = split_arm(arm, [k for k in fills if k not in ("classic_fill",
                                                                   "diffusion_fill")])
    classic = dict(augm_type=cfg.classic_augm_type, augm_strength=strength)
    real = dict(train_dir=cfg.train_dir, manifest="", sample_weighting="none",
                **REAL_ONLY_SETTINGS)
    if base in ("original", "rebalanced", "logit_adjusted", "crt"):
        out = dict(real, augm_type="base", class_balanced=base == "rebalanced",
                   logit_adjusted=base == "logit_adjusted")
        if base == "crt":
            out["finetune_head_epochs"] = cfg.crt_epochs
        return out
    if base == "classic":
        return dict(real, **classic)
    if base == "feature_fill":
        return dict(real, augm_type="base", feature_fill=True,
                    finetune_head_epochs=cfg.crt_epochs, logit_adjusted="la" in suffixes)
    out = dict(train_dir="", manifest=fills[base], augm_type="base",
               sample_weighting="diagen" if "diagen" in suffixes else cfg.sample_weighting,
               logit_adjusted="la" in suffixes)
    if "classic" in suffixes:
        out.update(classic)
    return out


def _n_train(labels_real: Sequence[str], n_synthetic_by_label: Mapping[str, int], cfg) -> int:
    """Training images of one arm after the validation split and --synthetic_ratio."""
    n_real = len(labels_real)
    if not cfg.val_dir:
        index = {c: i for i, c in enumerate(sorted(set(labels_real)))}
        _, val = sampling.stratified_split([index[c] for c in labels_real],
                                           cfg.validation_split, np.random.default_rng(0))
        n_real -= len(val)        # the counts per class do not depend on the rng
    n_syn = sum(n_synthetic_by_label.values())
    if cfg.synthetic_ratio is not None:
        n_syn = min(n_syn, int(round(cfg.synthetic_ratio * n_real)))
    return n_real + n_syn


def source_counts(cfg) -> dict[str, dict]:
    """Per source (`train_dir` and each fill arm's folder): real labels and added images per
    label, read from the folders and manifests (no image is decoded).

    Raises:
        DatasetError: a missing folder or manifest, a manifest listing missing files.
    """
    samples, _ = samples_from_dir(cfg.train_dir, what="--train_dir")
    out = {"train_dir": {"real": [s.label for s in samples], "added": {}}}
    used = {a.split("+")[0] for a in cfg.arms()}
    for base, folder in fill_folders(cfg).items():
        if base not in used:
            continue
        path = Path(folder)
        if not (path / "manifest.csv").is_file() and not path.is_file():
            # Checked before any run: a fill arm would otherwise fail after hours.
            raise DatasetError(f"{folder}: no manifest.csv (a folder in stage 3's layout is "
                               f"expected for the {base} arm)")
        rows, _ = samples_from_manifest(folder, cfg.real_generators)
        out[base] = {"real": [s.label for s in rows if not s.synthetic],
                     "added": dict(Counter(s.label for s in rows if s.synthetic))}
    return out


def step_budget(cfg, arms: Sequence[str], counts: dict[str, dict]) -> int:
    """Steps per epoch for every arm: --steps_per_epoch, else one pass over the largest
    arm's training images (so no arm trains longer than another)."""
    if cfg.steps_per_epoch:
        return int(cfg.steps_per_epoch)
    sizes = []
    for arm in arms:
        base = arm.split("+")[0]
        src = counts[base] if base in counts else counts["train_dir"]
        sizes.append(_n_train(src["real"], src["added"], cfg))
    return max(1, math.ceil(max(sizes) / cfg.batch_size))


def _job(cfg, arm: str, seed: int, run_dir: Path, strength: float | None, steps: int,
         params: Mapping | None = None, start_root: Path | None = None) -> dict:
    """One run of `arm`; `params`: its recipe (settings chosen on validation); an arm that
    starts from another arm's run finds it in start_root/<that arm>/seed<S> (default
    out_dir)."""
    start = starts_from(arm)
    root = Path(cfg.out_dir) if start_root is None else start_root
    from_run = str(root / start / f"seed{seed}") if start else ""
    # one dict, later keys winning: the arm's real-only reset already names from_run
    settings = {**arm_settings(cfg, arm, strength), **(params or {}), "seed": seed,
                "steps_per_epoch": steps, "out_dir": str(run_dir.parent),
                "run_name": run_dir.name, "from_run": from_run}
    run_cfg = to_classifier_config(cfg, **settings)
    return {"variant": arm, "seed": seed, "run_dir": str(run_dir), "cfg": run_cfg}


def strength_jobs(cfg, steps: int) -> list[dict]:
    """The classic-strength search: one run per --classic_strengths value on the first seed
    (none with a single value, or when no arm uses classic augmentation)."""
    if len(cfg.classic_strengths) < 2 or not any(uses_classic(a) for a in cfg.arms()):
        return []
    seed = cfg.seeds[0]
    return [{**_job(cfg, "classic", seed, Path(cfg.out_dir) / "classic_select" /
                    f"strength={s:g}_seed{seed}", s, steps), "strength": s}
            for s in cfg.classic_strengths]


def chosen_strength(cfg, selection: list[dict]) -> float | None:
    """The strength whose run scored best on validation (--evaluation_type; first of equals),
    the only strength when there is one, None while a search run is unfinished."""
    if not selection:
        return float(cfg.classic_strengths[0])
    higher = higher_is_better(cfg.evaluation_type)
    best, best_value = None, None
    for job in selection:
        path = Path(job["run_dir"]) / METRICS_NAME
        if not path.is_file():
            return None
        value = json.loads(path.read_text())["best_value"]
        if best_value is None or (value > best_value if higher else value < best_value):
            best, best_value = job["strength"], value
    return best


def recipe_combos(cfg) -> list[dict]:
    """The combinations of --recipe_grid (empty without one; CompareConfig.validate has
    checked that it names only config.RECIPE_FIELDS).

    Raises:
        ConfigError: a malformed spec or value.
    """
    grid = parse_grid(cfg.recipe_grid, type(cfg))
    return expand_grid(grid) if grid else []


def recipe_jobs(cfg, strength: float | None, steps: int) -> list[dict]:
    """The recipe search on --recipe_seed: every generative arm x every combination (each
    job carries `combo` and `params`), plus the runs they start from (crt's and
    feature_fill's encoders), under out_dir/recipe_select/."""
    combos = recipe_combos(cfg)
    root = Path(cfg.out_dir) / "recipe_select"
    seed, jobs, starts = cfg.recipe_seed, [], {}
    for arm in cfg.arms():
        if not is_generative(arm) or (uses_classic(arm) and strength is None):
            continue
        if starts_from(arm):
            start = starts_from(arm)
            starts[start] = _job(cfg, start, seed, root / start / f"seed{seed}", None, steps)
        for params in combos:
            job = _job(cfg, arm, seed, root / arm / combo_name(params) / f"seed{seed}",
                       strength if uses_classic(arm) else None, steps, params, root)
            jobs.append({**job, "combo": combo_name(params), "params": params})
    return list(starts.values()) + jobs


def chosen_recipes(cfg, jobs: list[dict]) -> dict[str, dict] | None:
    """{arm: params} of the combination each arm scored best with on validation
    (--evaluation_type; first of equals); None while a search run is unfinished."""
    higher = higher_is_better(cfg.evaluation_type)
    best: dict[str, tuple] = {}
    for job in (j for j in jobs if "params" in j):
        path = Path(job["run_dir"]) / METRICS_NAME
        if not path.is_file():
            return None
        value = json.loads(path.read_text())["best_value"]
        arm = job["variant"]
        if arm not in best or (value > best[arm][0] if higher else value < best[arm][0]):
            best[arm] = (value, job["params"], job["combo"])
    return {arm: params for arm, (_, params, _) in best.items()}


def recipe_markdown(jobs: list[dict], recipes: Mapping[str, dict]) -> str:
    """The recipe search as Markdown: validation score of every arm x combination, the
    chosen one marked."""
    lines = ["| arm | recipe | validation score | chosen |", "|---|---|---|---|"]
    for job in (j for j in jobs if "params" in j):
        path = Path(job["run_dir"]) / METRICS_NAME
        value = json.loads(path.read_text())["best_value"] if path.is_file() else math.nan
        chosen = combo_name(recipes.get(job["variant"], {})) == job["combo"]
        lines.append(f"| {job['variant']} | {job['combo']} | {value:.4f} | "
                     f"{'yes' if chosen else ''} |")
    return "\n".join(lines)


def compare_jobs(cfg, strength: float | None = None, steps: int | None = None,
                 counts: dict | None = None, recipes: Mapping[str, dict] | None = None
                 ) -> tuple[list[dict], list[str]]:
    """(jobs, arms waiting for the strength search): each arm x each seed, a generative
    arm with its recipe (`recipes`, chosen on validation) when there is one.

    Arms with classic augmentation wait (are left out) until `strength` is known."""
    arms = cfg.arms()
    if steps is None:
        steps = step_budget(cfg, arms, counts or source_counts(cfg))
    jobs, waiting = [], []
    for arm in arms:
        if uses_classic(arm) and strength is None:
            waiting.append(arm)
            continue
        for seed in cfg.seeds:
            jobs.append(_job(cfg, arm, seed, Path(cfg.out_dir) / arm / f"seed{seed}",
                             strength if uses_classic(arm) else None, steps,
                             (recipes or {}).get(arm)))
    return jobs, waiting


def fill_count_notes(counts: dict[str, dict]) -> list[str]:
    """Warnings when fill arms add different numbers of images per label: a gain of one
    fill over another could then come from the counts, not from the images."""
    fills = {k: v["added"] for k, v in counts.items() if k != "train_dir"}
    if len(fills) < 2:
        return []
    names = sorted(fills)
    ref = names[0]
    return [f"{name} adds {sum(fills[name].values())} images per label {dict(fills[name])}, "
            f"{ref} adds {sum(fills[ref].values())} {dict(fills[ref])}: not the same counts"
            for name in names[1:] if fills[name] != fills[ref]]


# --- tables -----------------------------------------------------------------------------

def _aligned(preds: dict[tuple, "object"]) -> tuple[list[str], np.ndarray, dict, list[str]]:
    """(class names, y_true, {key: y_pred}, paths) on the test images every run predicted."""
    paths = sorted(set.intersection(*(set(df["path"]) for df in preds.values())))
    names = sorted({c for df in preds.values() for c in (*df["label"], *df["predicted"])})
    index = {c: i for i, c in enumerate(names)}
    out, y_true = {}, None
    for key, df in preds.items():
        df = df.drop_duplicates("path").set_index("path").loc[paths]
        out[key] = df["predicted"].map(index).to_numpy()
        if y_true is None:
            y_true = df["label"].map(index).to_numpy()
    return names, y_true, out, paths


def _run_key(key: tuple) -> tuple:
    """(arm, classifier seed, generator seed or None) of a predictions key: (arm, seed) or
    (arm, seed, generator seed)."""
    return (key[0], key[1], key[2] if len(key) > 2 else None)


def _gen_order(g) -> tuple:
    return (g is not None, 0 if g is None else g)


def bootstrap_set(preds: dict[tuple, "object"], arms: Sequence[str], reference: str | None,
                  tail: Sequence[str], n_boot: int, seed: int = 0) -> tuple[dict, dict]:
    """CIs of one test set from per-image predictions {(arm, seed): DataFrame}, or
    {(arm, seed, generator seed): DataFrame} for arms trained on several generators' images.

    Returns:
        ({arm: {metric: (low, high)}} 95% CIs, {arm: {metric: (n_boot,) replicates of
        arm - reference}}) for `statistics.paired_verdicts`; the same image resamples serve
        every arm, the same seed resamples every pair, and the generators of an arm are
        resampled too (crossed with the classifier seeds), so a generator's own variance
        widens the arm's CI.

    Example:
        >>> per_arm, diffs = bootstrap_set(preds, ["original", "classic"], "classic", [], 2000)
        >>> statistics.bootstrap_p(diffs["original"]["balanced_accuracy"])
    """
    if not preds or n_boot <= 0:
        return {}, {}
    names, y_true, y_pred, paths = _aligned(preds)
    if not paths:
        return {}, {}
    keys = [_run_key(k) for k in y_pred]
    tail_idx = [names.index(c) for c in tail if c in names]
    boot = statistics.image_bootstrap(y_true, np.stack(list(y_pred.values())), len(names),
                                      n_boot, seed, tail_idx)
    col = {k: i for i, k in enumerate(keys)}
    seeds_of = {a: sorted({s for (arm, s, _) in keys if arm == a}) for a in arms}
    gens_of = {a: sorted({g for (arm, _, g) in keys if arm == a}, key=_gen_order)
               for a in arms}

    def scores(m: str, arm: str, seeds: Sequence[int]) -> np.ndarray:
        out = np.full((n_boot, len(gens_of[arm]), len(seeds)), np.nan)
        for gi, g in enumerate(gens_of[arm]):
            for si, s in enumerate(seeds):
                if (arm, s, g) in col:
                    out[:, gi, si] = boot[m][:, col[(arm, s, g)]]
        return out

    def gen_counts(arm: str) -> np.ndarray:
        n_gen = len(gens_of[arm])
        # Shared by every arm with as many generators: they used the same generators.
        return (np.ones((n_boot, 1), dtype=np.int64) if n_gen == 1
                else statistics.seed_counts(n_boot, n_gen, seed + 2))

    per_arm, diffs = {}, {}
    for arm in arms:
        if not seeds_of[arm]:
            continue
        counts = statistics.seed_counts(n_boot, len(seeds_of[arm]), seed)
        per_arm[arm] = {m: statistics.percentile_interval(statistics.crossed_resampled_means(
            scores(m, arm, seeds_of[arm]), gen_counts(arm), counts)) for m in boot}
        common = sorted(set(seeds_of[arm]) & set(seeds_of.get(reference, [])))
        if arm == reference or not common:
            continue
        counts = statistics.seed_counts(n_boot, len(common), seed + 1)
        diffs[arm] = {m: statistics.crossed_resampled_means(
            scores(m, arm, common), gen_counts(arm), counts)
            - statistics.crossed_resampled_means(scores(m, reference, common),
                                                 gen_counts(reference), counts)
            for m in boot}
    return per_arm, diffs


def compare_tables(rows: Sequence[dict], predictions: dict | None = None,
                   tail: Sequence[str] = (), n_boot: int = 0, seed: int = 0):
    """(summary, paired) DataFrames of a comparison.

    Args:
        rows: one per run and evaluation set ({variant, seed, set, <metrics>}), as in
            runs.csv; `tail_recall` is used when present. Rows of an arm trained on the
            images of several generators also carry `generator_seed` (see
            `pool_generator_runs`): its runs are (generator seed x classifier seed) pairs.
        predictions: {(set, arm, seed): DataFrame(path, label, predicted)} for the CIs
            ({(set, arm, seed, generator seed): ...} for such arms).
        tail: the tail labels (for the bootstrap's tail recall).
        n_boot: bootstrap resamples (0: no CIs and the verdict 'n/a (no bootstrap)').

    Returns:
        summary: per set and arm: kind, reference (the strongest non-generative arm of the
            set), n (runs), <metric>_mean/_std over runs, and <metric>_ci_low/_ci_high (95%)
            for PAIRED_METRICS; with `generator_seed` rows also `generators` (how many).
        paired: per test set, arm (other than the reference) and metric in PAIRED_METRICS:
            baseline, mean/std of the per-seed difference (an arm's score of a seed is its
            mean over generators), generators, wins/ties/losses, the descriptive seed-level
            test (seed_t, seed_p, seed_test: paired t or sign test; it decides nothing),
            and the verdict rule's columns (`statistics.paired_verdicts`, VERDICT_RULE):
            p_value (two-sided paired bootstrap p), test, p_holm (Holm across the arms of
            that set and metric), ci_level, ci_low/ci_high (the interval at that level; the
            bootstrap also resamples the generators) and verdict ("better", "worse",
            "no clear difference", "n/a (no bootstrap)").

    Example:
        >>> summary, paired = compare_tables(pd.read_csv("compare/runs.csv").to_dict("records"))
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    df = pd.DataFrame(list(rows))
    metrics = [m for m in TABLE_METRICS if m in df]
    summary = summarize(df, ["set", "variant"], metrics)
    # Test sets first (in-distribution, then OOD, as evaluated), validation last.
    sets = [s for s in dict.fromkeys(df["set"]) if s != "val"] + ["val"]
    summary = pd.concat([summary[summary["set"] == s] for s in sets]).reset_index(drop=True)
    summary.insert(2, "kind", ["generative" if is_generative(v) else "non-generative"
                               for v in summary["variant"]])
    if "generator_seed" in df:
        n_gen = df.groupby(["set", "variant"], sort=False)["generator_seed"].nunique()
        summary["generators"] = [max(1, int(n_gen.get((st, v), 0)))
                                 for st, v in zip(summary["set"], summary["variant"])]
    summary["reference"] = False
    for m in PAIRED_METRICS:
        summary[f"{m}_ci_low"] = math.nan
        summary[f"{m}_ci_high"] = math.nan
    paired = []
    for test_set in [s for s in dict.fromkeys(df["set"]) if s != "val"]:
        in_set = summary["set"] == test_set
        sub = summary[in_set]
        arms = list(sub["variant"])
        reference = strongest_non_generative(sub.to_dict("records"))
        if reference is not None:
            summary.loc[in_set & (summary["variant"] == reference), "reference"] = True
        preds = {key[1:]: v for key, v in (predictions or {}).items()
                 if key[0] == test_set and key[1] in arms}
        per_arm, diffs = bootstrap_set(preds, arms, reference, tail, n_boot, seed)
        for arm, cis in per_arm.items():
            sel = in_set & (summary["variant"] == arm)
            for m, (lo, hi) in cis.items():
                summary.loc[sel, f"{m}_ci_low"] = lo
                summary.loc[sel, f"{m}_ci_high"] = hi
        if reference is None:
            continue
        runs = df[df["set"] == test_set]
        gen_col = "generator_seed" in runs
        block = []
        for arm in arms:
            if arm == reference:
                continue
            for m in PAIRED_METRICS:
                if m not in runs:
                    continue
                # Pairs are classifier seeds; an arm of several generators enters with its
                # mean over them (its CI resamples the generators as well).
                base = runs[runs["variant"] == reference].groupby("seed")[m].mean()
                other = runs[runs["variant"] == arm].groupby("seed")[m].mean()
                common = sorted(set(other.index) & set(base.index))
                if not common:
                    continue
                res = paired_comparison(base.loc[common].to_numpy(),
                                        other.loc[common].to_numpy())
                # The seed-level test is kept to read, renamed so that it is not taken for
                # the p-value that Holm corrects.
                seed_test = {"seed_t": res.pop("t"), "seed_p": res.pop("p_value"),
                             "seed_test": res.pop("test")}
                n_gen = (runs.loc[runs["variant"] == arm, "generator_seed"].nunique()
                         if gen_col else 0)
                block.append({"set": test_set, "variant": arm, "kind": "generative"
                              if is_generative(arm) else "non-generative",
                              "baseline": reference, "metric": m, **res, **seed_test,
                              "generators": max(1, int(n_gen)),
                              "_replicates": diffs.get(arm, {}).get(m)})
        for m in PAIRED_METRICS:
            family = [r for r in block if r["metric"] == m]
            decided = statistics.paired_verdicts([r.pop("_replicates") for r in family], ALPHA)
            for r, d in zip(family, decided):
                r.update(d, test="none" if d["p_value"] != d["p_value"] else "paired bootstrap")
        paired += block
    return summary, pd.DataFrame(paired)


def recall_by_label(predictions: Mapping[tuple, "object"], arms: Sequence[str]) -> list[dict]:
    """Per label of one test set: its test images and each arm's recall, the mean over the
    arm's runs (seeds, or generator x classifier seed pairs).

    Args:
        predictions: {(arm, seed) or (arm, seed, generator seed): DataFrame(label,
            predicted)}, the runs' predictions_<set>.csv.
        arms: the columns, in this order (arms without predictions are left out).

    Returns:
        [{"label", "test images", <arm>: mean recall}], labels in natural order.

    Example:
        >>> df = pd.DataFrame({"label": ["a", "a", "b"], "predicted": ["a", "b", "b"]})
        >>> recall_by_label({("original", 0): df}, ["original"])
        [{'label': 'a', 'test images': 2, 'original': 0.5}, {'label': 'b', 'test images': 1, 'original': 1.0}]
    """
    per_arm: dict[str, dict[str, list[float]]] = {}
    support: dict[str, int] = {}
    for key, df in predictions.items():
        recalls = statistics.label_recalls(df["label"].astype(str), df["predicted"].astype(str))
        for label, (recall, n) in recalls.items():
            per_arm.setdefault(key[0], {}).setdefault(label, []).append(recall)
            support[label] = max(support.get(label, 0), n)
    shown = [a for a in arms if a in per_arm]
    return [{"label": label, "test images": support[label],
             **{a: (float(np.mean(per_arm[a][label])) if label in per_arm[a] else math.nan)
                for a in shown}}
            for label in sorted(support, key=natural_key)]


def convergence_summary(runs: Sequence[dict]) -> list[dict]:
    """Per arm, from its runs' {variant, best_epoch, epochs_run, max_epochs}: how many runs,
    the best epoch (median, min, max), the median epochs run, how many stopped early, and
    how many had their best validation epoch at the end of the budget (under-trained: the
    curve may still rise, so the budget should grow).

    Example:
        >>> convergence_summary([{"variant": "original", "best_epoch": 20, "epochs_run": 20,
        ...                       "max_epochs": 20}])[0]["best_is_last"]
        1
    """
    out: dict[str, dict] = {}
    for r in runs:
        out.setdefault(r["variant"], []).append(r)
    rows = []
    for arm, rs in out.items():
        best = [int(r["best_epoch"]) for r in rs]
        ran = [int(r["epochs_run"]) for r in rs]
        last = sum(int(r["best_epoch"]) >= int(r["epochs_run"]) for r in rs)
        rows.append({"arm": arm, "runs": len(rs), "best_epoch_median": float(np.median(best)),
                     "best_epoch_min": min(best), "best_epoch_max": max(best),
                     "epochs_run_median": float(np.median(ran)),
                     "max_epochs": max(int(r.get("max_epochs") or 0) for r in rs) or None,
                     "stopped_early": sum(int(r["epochs_run"]) < int(r.get("max_epochs") or 0)
                                          for r in rs),
                     "best_is_last": last})
    return rows


def tail_labels_of(results_dir: str | Path) -> list[str]:
    """The tail labels a comparison used: its tail_labels.json, else (comparisons older than
    that file) recomputed from compare_config.json's --train_dir and --tail_fraction; [] when
    neither can be read."""
    results_dir = Path(results_dir)
    path = results_dir / "tail_labels.json"
    if path.is_file():
        return list(json.loads(path.read_text())["tail"])
    cfg_path = results_dir / "compare_config.json"
    if not cfg_path.is_file():
        return []
    cfg = json.loads(cfg_path.read_text())
    try:
        samples, _ = samples_from_dir(cfg["train_dir"])
    except (DatasetError, KeyError):
        return []
    return statistics.tail_labels(Counter(s.label for s in samples),
                                  cfg.get("tail_fraction", 0.33))


def pool_generator_runs(results: Sequence[tuple[int, str | Path]]):
    """Rows and predictions of comparisons that differ only in the generator's seed, pooled
    so that each generative arm's runs are (generator seed x classifier seed) pairs.

    Args:
        results: (generator seed, comparison out_dir) pairs; the first comparison supplies
            the non-generative arms (they do not depend on the generator), every one its
            generative arms.

    Returns:
        (rows, predictions) for `compare_tables`: rows of runs.csv with `generator_seed` set
        on generative arms (NaN on the others); predictions keyed (set, arm, seed) for
        non-generative arms and (set, arm, seed, generator seed) for generative ones.

    Example:
        >>> rows, preds = pool_generator_runs([(42, "run/results"), (43, "run_gen43/results")])
        >>> summary, paired = compare_tables(rows, preds, tail_labels_of("run/results"), 2000)
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    rows, preds = [], {}
    for k, (gen, folder) in enumerate(results):
        df = pd.read_csv(Path(folder) / "runs.csv")
        for r in df.to_dict("records"):
            generative = is_generative(r["variant"])
            if k and not generative:
                continue
            r["generator_seed"] = gen if generative else math.nan
            rows.append(r)
            if r["set"] == "val":
                continue
            path = Path(r["run_dir"]) / f"predictions_{r['set']}.csv"
            if path.is_file():
                key = (r["set"], r["variant"], int(r["seed"])) + ((gen,) if generative else ())
                preds[key] = pd.read_csv(path)
    return rows, preds


def _cell(r, m: str) -> str:
    mean, std = r[f"{m}_mean"], r.get(f"{m}_std", math.nan)
    if mean != mean:
        return "n/a"
    text = f"{mean:.3f}" + ("" if std != std else f" ± {std:.3f}")
    lo, hi = r.get(f"{m}_ci_low", math.nan), r.get(f"{m}_ci_high", math.nan)
    return text + ("" if lo != lo else f" [{lo:.3f}, {hi:.3f}]")


def markdown_table(summary, metrics=("balanced_accuracy", "macro_f1", "tail_recall")) -> str:
    """The summary as Markdown: mean ± std over seeds [95% bootstrap CI] per arm and set; the
    reference arm (strongest non-generative) is marked with *."""
    metrics = [m for m in metrics if f"{m}_mean" in summary]
    head = "| set | arm | kind | n | " + " | ".join(m.replace("_", " ") for m in metrics) + " |"
    lines = [head, "|" + "---|" * (4 + len(metrics))]
    for _, r in summary.iterrows():
        name = f"{r['variant']} *" if r.get("reference", False) else r["variant"]
        lines.append(f"| {r['set']} | {name} | {r.get('kind', '')} | {r['n']} | "
                     + " | ".join(_cell(r, m) for m in metrics) + " |")
    return "\n".join(lines)


def ci_text(low: float, high: float, level: float) -> str:
    """A difference's interval with its level, as the tables print it.

    Example:
        >>> ci_text(-0.101, -0.016, 1 - 0.05 / 3)
        ' [-0.101, -0.016] (98.33%)'
        >>> ci_text(-0.107, 6.4e-05, 0.95)
        ' [-0.107, +6.4e-05] (95%)'
    """
    if low != low or high != high:
        return ""
    return (f" [{_bound(low)}, {_bound(high)}]"
            + ("" if level != level else f" ({100 * level:.4g}%)"))


def _bound(x: float) -> str:
    # A bound just off 0 keeps its digits: "+0.000" would hide which side of 0 it is on,
    # and the verdict is read off that side.
    return f"{x:+.2g}" if 0 < abs(x) < 0.0005 else f"{x:+.3f}"


def _p_text(p) -> str:
    return "n/a" if p is None or p != p else f"{p:.3g}"


def paired_markdown(paired, metrics=("balanced_accuracy", "macro_f1", "tail_recall")) -> str:
    """The paired differences to the reference arm as Markdown: the mean difference over
    seeds with its Holm-matched bootstrap interval and level, the bootstrap p and its Holm
    correction, the verdict, and the seed-level test as a descriptive last column."""
    lines = ["| set | arm | vs | metric | mean diff [interval] (level) | wins/ties/losses | "
             "bootstrap p | Holm p | verdict | seeds: p (test) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in paired[paired["metric"].isin(metrics)].iterrows():
        seed_p = r.get("seed_p")
        seeds = "n/a" if seed_p is None or seed_p != seed_p \
            else f"{seed_p:.3g} ({r['seed_test']})"
        lines.append(f"| {r['set']} | {r['variant']} | {r['baseline']} | {r['metric']} | "
                     f"{r['mean_diff']:+.3f}"
                     f"{ci_text(r['ci_low'], r['ci_high'], r.get('ci_level', math.nan))} | "
                     f"{r['wins']}/{r['ties']}/{r['losses']} | {_p_text(r['p_value'])} | "
                     f"{_p_text(r['p_holm'])} | {r['verdict']} | {seeds} |")
    return "\n".join(lines)


def _predictions(jobs: Sequence[dict]) -> dict[tuple, "object"]:
    """{(test set, arm, seed): DataFrame} from the runs' predictions_<set>.csv files."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    out = {}
    for job in jobs:
        for path in Path(job["run_dir"]).glob("predictions_*.csv"):
            out[(path.stem[len("predictions_"):], job["variant"], job["seed"])] = \
                pd.read_csv(path)
    return out


def _convergence_notes(rows: Sequence[dict]) -> list[str]:
    """Arms whose best validation epoch was the last one run: the budget may be too short."""
    last = Counter(r["variant"] for r in rows if r["set"] == "val"
                   and r["best_epoch"] == r["epochs_run"])
    total = Counter(r["variant"] for r in rows if r["set"] == "val")
    return [f"{arm}: the best epoch was the last in {k} of {total[arm]} runs (more epochs "
            f"might still help)" for arm, k in last.items() if k]


def shots_section(out: Path, predictions: Mapping[tuple, "object"],
                  real_counts: Mapping[str, int], arms: Sequence[str]) -> str:
    """Many / medium / few-shot accuracy (classifier.shot_groups) when the real training
    data is long-tailed: writes out/shots.csv (one row per run, test set, split and group)
    and returns compare.md's section; "" (and no file) otherwise."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    if not predictions or not shot_groups.is_long_tailed(real_counts):
        return ""
    rows = shot_groups.shot_rows(predictions, real_counts)
    write_csv(out / "shots.csv", pd.DataFrame(rows))
    return ("\n## Many / medium / few-shot accuracy\n\nMean per-class test accuracy over "
            "each group's labels, mean ± std over seeds; groups by real training images.\n\n"
            + shot_groups.shots_markdown(shot_groups.shot_summary(rows, arms), real_counts)
            + "\n")


# --- running ----------------------------------------------------------------------------

_RUN_ONLY = {"out_dir", "run_name", "workers", "tensorboard"}  # where and how, not what
_PATHS = {"train_dir", "val_dir", "test_dir", "manifest", "filter_model", "from_run"}


def _same(key: str, a, b) -> bool:
    if key in _PATHS and a and b:
        return Path(a).resolve() == Path(b).resolve()
    if key == "ood_test_dirs" and a and b:
        return [Path(x).resolve() for x in a] == [Path(x).resolve() for x in b]
    return a == b


def check_finished_runs(jobs: Sequence[dict]) -> None:
    """A finished run is reused only if it was trained as its job asks now: a table mixing
    runs of two settings (e.g. a --quick run resumed by a full one) would be wrong silently.

    Raises:
        DatasetError: naming the run folder and the first settings that differ.
    """
    for job in jobs:
        path = Path(job["run_dir"]) / CONFIG_NAME
        if not is_finished(job["run_dir"]) or not path.is_file():
            continue
        saved = json.loads(path.read_text())
        want = config_to_dict(job["cfg"])
        defaults = config_to_dict(type(job["cfg"])())
        # A setting newer than the run counts as equal when the run's version behaved as
        # its default does.
        diff = [k for k, v in want.items() if not k.startswith("_") and k not in _RUN_ONLY
                and not _same(k, saved.get(k, defaults.get(k)), v)]
        if diff:
            shown = ", ".join(f"{k}={saved.get(k, '(absent)')!r} there, {want[k]!r} now"
                              for k in diff[:3])
            raise DatasetError(f"{job['run_dir']} was trained with other settings ({shown}): "
                               f"give a new --out_dir, or delete that run folder")

def _reuse_selected(cfg, selection: list[dict], strength: float) -> None:
    """The search already trained 'classic' at the chosen strength on the first seed: that
    run becomes classic/seed<S> (copied whole, then renamed: never half there)."""
    if not selection:
        return
    src = Path(next(j["run_dir"] for j in selection if j["strength"] == strength))
    dst = Path(cfg.out_dir) / "classic" / f"seed{cfg.seeds[0]}"
    if is_finished(dst) or not is_finished(src):
        return
    tmp = dst.with_name(dst.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / "selected_from.txt").write_text(f"{src}\n")
    if dst.exists():
        shutil.rmtree(dst)     # an unfinished run of ours (no metrics.json)
    tmp.rename(dst)


def _execute_in_order(jobs: list[dict], cfg, verbose: int, on_progress) -> list[str]:
    """`_execute`, with the runs that start from another run's network (crt,
    feature_fill) after the others; one whose start did not finish is skipped, and said."""
    first = [j for j in jobs if not j["cfg"].from_run]
    failures = _execute(first, cfg, verbose, on_progress)
    ready = {j["run_dir"] for j in first if is_finished(j["run_dir"])}
    second = [j for j in jobs if j["cfg"].from_run]
    blocked = [j for j in second if j["cfg"].from_run not in ready]
    failures += [f"{Path(j['run_dir']).parent.name}/{Path(j['run_dir']).name} skipped: "
                 f"{j['cfg'].from_run} did not finish" for j in blocked]
    return failures + _execute([j for j in second if j not in blocked], cfg, verbose,
                               on_progress)


def run_compare(cfg, verbose: int = 2):
    """Runs (or resumes) the comparison; writes runs.csv, summary.csv, paired.csv and
    compare.md in out_dir. Returns (summary, paired, failures): two DataFrames of the
    finished runs and one line per problem (a failed run, arms left waiting; empty unless
    `cfg.keep_going`, without which the first failure is raised)."""
    # why: pandas is slow to import and only the tables need it
    import pandas as pd

    out = check_outside_inputs(cfg)
    counts = source_counts(cfg)
    steps = step_budget(cfg, cfg.arms(), counts)
    real_counts = Counter(s.label for s in samples_from_dir(cfg.train_dir)[0])
    tail = statistics.tail_labels(real_counts, cfg.tail_fraction)
    out.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out / "compare_config.json")
    # The report marks these labels in its per-label recall table.
    atomic_write_text(out / "tail_labels.json", json.dumps(
        {"tail": tail, "tail_fraction": cfg.tail_fraction,
         "real_counts": dict(sorted(real_counts.items()))}, indent=2) + "\n")
    selection = strength_jobs(cfg, steps)
    notes = fill_count_notes(counts)
    result = (pd.DataFrame(), pd.DataFrame())
    state = {"jobs": [], "strength": None}

    def tables(final: bool = False):
        # The bootstrap reads every finished run's test predictions: redone after each run
        # it grew with the square of the runs (30 s a refresh at 35 runs of 10,000 test
        # images), so the tables between runs go without CIs and the last one has them.
        nonlocal result
        rows = _rows_from_runs(state["jobs"], tail)
        if not rows:
            return
        df = pd.DataFrame(rows).drop(columns=["cfg"], errors="ignore")
        write_csv(out / "runs.csv", df)
        summary, paired = compare_tables(rows, _predictions(state["jobs"]), tail,
                                         cfg.bootstrap if final else 0, seed=cfg.seeds[0])
        write_csv(out / "summary.csv", summary)
        write_csv(out / "paired.csv", paired)
        text = (f"# Classifier comparison\n\nMean ± std over seeds "
                f"{', '.join(map(str, cfg.seeds))} [95% bootstrap CI over seeds and test "
                f"images, {cfg.bootstrap} resamples"
                + ("" if final else "; made when every run has finished") + "]; "
                f"{cfg.backbone} at {cfg.input_shape} px, "
                f"{cfg.number_epochs} epochs x {steps} steps of {cfg.batch_size} in every arm. "
                f"Tail labels (fewest real training images): {', '.join(tail)}. "
                f"* = the strongest non-generative arm, the reference of the paired tests.\n")
        if state["strength"] is not None:
            text += (f"\nClassic augmentation ({cfg.classic_augm_type}, flips "
                     f"{cfg.augm_flip}): strength {state['strength']:g}"
                     + (f", chosen on validation from {list(cfg.classic_strengths)}"
                        if selection else "") + ".\n")
        if state.get("recipe_text"):
            text += (f"\nRecipes of the generative arms, chosen on validation (seed "
                     f"{cfg.recipe_seed}, apart from the reported seeds) from "
                     f"{' '.join(cfg.recipe_grid)}:\n\n{state['recipe_text']}\n")
        text += "\n" + markdown_table(summary) + "\n"
        if not paired.empty:
            text += ("\n## Paired against the strongest non-generative arm (same seeds)\n\n"
                     + VERDICT_RULE + "\n\n"
                     + paired_markdown(paired) + "\n")
        text += shots_section(out, _predictions(state["jobs"]), real_counts, cfg.arms())
        all_notes = notes + _convergence_notes(rows)
        if all_notes:
            text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in all_notes)
        atomic_write_text(out / "compare.md", text)
        result = (summary, paired)

    check_finished_runs(selection)
    failures = _execute(selection, cfg, verbose, lambda: None)
    strength = chosen_strength(cfg, selection)
    if strength is not None:
        _reuse_selected(cfg, selection, strength)
    state["strength"] = strength
    recipes = None
    if cfg.recipe_grid:
        search = recipe_jobs(cfg, strength, steps)
        check_finished_runs(search)
        failures += _execute_in_order(search, cfg, verbose, lambda: None)
        recipes = chosen_recipes(cfg, search)
        if recipes is None:
            failures.append("the recipe search did not finish: generative arms run with "
                            "the settings given")
        else:
            atomic_write_text(out / "recipes.json", json.dumps(recipes, indent=2) + "\n")
            state["recipe_text"] = recipe_markdown(search, recipes)
    jobs, waiting = compare_jobs(cfg, strength, steps, counts, recipes)
    if waiting:
        failures.append(f"arms {', '.join(waiting)} skipped: the classic strength search "
                        f"did not finish")
    check_finished_runs(jobs)
    state["jobs"] = jobs
    failures += _execute_in_order(jobs, cfg, verbose, tables)
    tables(final=True)
    if failures:
        print(f"{len(failures)} problem(s):\n  " + "\n  ".join(failures))
    return (*result, failures)
