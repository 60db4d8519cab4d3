"""Many runs: a grid search (grid x seeds x repeats) and the three-arm comparison
(original / classic augmentation / balanced + synthetic), both resumable.

A run whose folder holds metrics.json is finished and skipped on restart; the CSV tables
are rebuilt from every finished run's metrics.json after each run, so an interrupted search
loses at most the run in progress.

Example:
    >>> summary = run_grid_search(GridSearchConfig(train_dir="data/train",
    ...                                            grid=["learning_rate=1e-3,1e-4"]))
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

from classifier.grid import combo_name, expand_grid, parse_grid, run_seed, summarize
from classifier.metrics import SUMMARY_METRICS, higher_is_better, paired_comparison
from classifier.report import write_csv
from classifier.runs import CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, is_finished
from cli.flags import ConfigError, config_from_dict, validate_config
from dataset.scan import DatasetError


def _base_fields():
    from config import ClassifierConfig
    return {f.name for f in dataclasses.fields(ClassifierConfig)}


def to_classifier_config(cfg, **changes):
    """A ClassifierConfig from a GridSearch/Compare config plus `changes`, validated."""
    from config import ClassifierConfig
    data = {k: v for k, v in dataclasses.asdict(cfg).items() if k in _base_fields()}
    data.update(changes)
    out = config_from_dict(ClassifierConfig, data)
    validate_config(out)
    return out


def _row(metrics: dict, test_set: str | None) -> dict:
    m = metrics["val"] if test_set is None else metrics["tests"][test_set]
    return {k: m[k] for k in SUMMARY_METRICS}


def _rows_from_runs(jobs: list[dict]) -> list[dict]:
    rows = []
    for job in jobs:
        path = Path(job["run_dir"]) / METRICS_NAME
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        base = {k: v for k, v in job.items() if k not in ("cfg",)}
        base.update(best_epoch=metrics["best_epoch"], epochs_run=metrics["epochs_run"],
                    seconds=metrics["seconds"])
        rows.append({**base, "set": "val", **_row(metrics, None)})
        for name in metrics["tests"]:
            rows.append({**base, "set": name, **_row(metrics, name)})
    return rows


def _execute(jobs: list[dict], keep_going: bool, verbose: int,
             on_progress: Callable[[], None]) -> list[str]:
    from classifier.training import train_run
    failures = []
    for k, job in enumerate(jobs, 1):
        run_dir = Path(job["run_dir"])
        if is_finished(run_dir):
            print(f"[{k}/{len(jobs)}] {run_dir.parent.name}/{run_dir.name}: finished earlier, "
                  "skipped")
            continue
        print(f"[{k}/{len(jobs)}] {run_dir.parent.name}/{run_dir.name}")
        try:
            train_run(job["cfg"], verbose=verbose)
        except Exception as err:
            if not keep_going:
                raise
            failures.append(f"{run_dir}: {err.__class__.__name__}: {err}")
            print(f"  FAILED: {failures[-1]}")
        on_progress()
    return failures


def grid_jobs(cfg) -> list[dict]:
    """The runs of a grid search: one per combination x seed x repeat."""
    grid = parse_grid(cfg.grid, type(cfg))
    base_only = set(grid) - _base_fields()
    if base_only:
        raise ConfigError(f"--grid over {', '.join(sorted(base_only))}: not a training "
                          f"setting")
    jobs = []
    for params in expand_grid(grid):
        combo = combo_name(params)
        for seed in cfg.seeds or [cfg.seed]:
            for r in range(cfg.repeats):
                s = run_seed(seed, r)
                run_dir = Path(cfg.out_dir) / combo / f"seed{seed}_r{r}"
                run_cfg = to_classifier_config(cfg, **params, seed=s, out_dir=str(run_dir.parent),
                                               run_name=run_dir.name)
                jobs.append({"combo": combo, **{f"param_{k}": v for k, v in params.items()},
                             "base_seed": seed, "repeat": r, "seed": s,
                             "run_dir": str(run_dir), "cfg": run_cfg})
    return jobs


def _keep_best(jobs: list[dict], rows, out_dir: Path, evaluation_type: str) -> None:
    """Copies the best run of each combination (by validation metric) to best/<combo>/."""
    import pandas as pd
    df = pd.DataFrame(rows)
    if df.empty:
        return
    val = df[df["set"] == "val"]
    key = {"f1": "macro_f1", "loss": None}.get(evaluation_type, evaluation_type)
    for combo, sub in val.groupby("combo"):
        if key is None:
            # Validation loss is not in the summary rows; fall back to macro-F1.
            best = sub.loc[sub["macro_f1"].idxmax()]
        else:
            best = sub.loc[sub[key].idxmax()] if higher_is_better(evaluation_type) else \
                sub.loc[sub[key].idxmin()]
        src, dst = Path(best["run_dir"]), out_dir / "best" / combo
        marker = dst / "source.txt"
        if marker.is_file() and marker.read_text().strip() == str(src):
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME):
            tmp = dst / f".{name}.tmp"
            shutil.copyfile(src / name, tmp)
            tmp.replace(dst / name)
        marker.write_text(f"{src}\n")


def run_grid_search(cfg, verbose: int = 2) -> "object":
    """Runs (or resumes) a grid search and writes runs.csv, summary.csv and best/.

    Returns:
        The summary DataFrame (mean and std per combination and evaluation set).
    """
    import pandas as pd
    out = Path(cfg.out_dir)
    jobs = grid_jobs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    from cli.flags import save_config_json
    save_config_json(cfg, out / "grid_search_config.json")
    group = ["combo"] + [c for c in jobs[0] if c.startswith("param_")] + ["set"]

    def tables():
        rows = _rows_from_runs(jobs)
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame(rows).drop(columns=["cfg"], errors="ignore")
        write_csv(out / "runs.csv", df)
        summary = summarize(df, group, SUMMARY_METRICS)
        write_csv(out / "summary.csv", summary)
        _keep_best(jobs, rows, out, cfg.evaluation_type)
        return summary

    failures = _execute(jobs, cfg.keep_going, verbose, tables)
    summary = tables()
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures))
    return summary


def compare_jobs(cfg) -> list[dict]:
    """The runs of the comparison: each arm x each seed, the same classifier settings."""
    arms = {
        "original": dict(train_dir=cfg.train_dir, manifest="", augm_type="base",
                         sample_weighting="none"),
        "classic": dict(train_dir=cfg.train_dir, manifest="", augm_type=cfg.classic_augm_type,
                        sample_weighting="none"),
        "synthetic": dict(train_dir="", manifest=cfg.balanced_dir, augm_type=cfg.augm_type,
                          sample_weighting=cfg.sample_weighting),
    }
    if "synthetic" in cfg.variants:
        manifest = Path(cfg.balanced_dir)
        manifest = manifest / "manifest.csv" if manifest.is_dir() else manifest
        if not manifest.is_file():
            # Checked before any run: the synthetic arm would otherwise fail after hours.
            raise DatasetError(f"--balanced_dir {cfg.balanced_dir}: no manifest.csv (the "
                               f"stage-3 output folder is expected)")
    jobs = []
    for arm in cfg.variants:
        for seed in cfg.seeds:
            run_dir = Path(cfg.out_dir) / arm / f"seed{seed}"
            run_cfg = to_classifier_config(cfg, **arms[arm], seed=seed,
                                           out_dir=str(run_dir.parent), run_name=run_dir.name)
            jobs.append({"variant": arm, "seed": seed, "run_dir": str(run_dir), "cfg": run_cfg})
    return jobs


def compare_tables(rows, baseline: str = "original"):
    """(summary, paired) DataFrames: mean/std per arm and set; per-seed paired differences
    of every other arm against `baseline` for each summary metric."""
    import pandas as pd
    df = pd.DataFrame(rows)
    summary = summarize(df, ["set", "variant"], SUMMARY_METRICS)
    paired = []
    for (test_set, arm), sub in df.groupby(["set", "variant"], sort=False):
        if arm == baseline:
            continue
        base = df[(df["set"] == test_set) & (df["variant"] == baseline)]
        common = sorted(set(sub["seed"]) & set(base["seed"]))
        if not common:
            continue
        a = base.set_index("seed").loc[common]
        b = sub.set_index("seed").loc[common]
        for m in SUMMARY_METRICS:
            res = paired_comparison(a[m].to_numpy(), b[m].to_numpy())
            paired.append({"set": test_set, "variant": arm, "baseline": baseline, "metric": m,
                           **res})
    return summary, pd.DataFrame(paired)


def markdown_table(summary, metrics=("accuracy", "balanced_accuracy", "macro_f1")) -> str:
    """The summary as a Markdown table: mean ± std per arm and evaluation set."""
    head = "| set | variant | n | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    for _, r in summary.iterrows():
        cells = []
        for m in metrics:
            std = r[f"{m}_std"]
            cells.append(f"{r[f'{m}_mean']:.3f}" + ("" if std != std else f" ± {std:.3f}"))
        lines.append(f"| {r['set']} | {r['variant']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_compare(cfg, verbose: int = 2):
    """Runs (or resumes) the comparison; writes runs.csv, summary.csv, paired.csv and
    compare.md in out_dir. Returns (summary, paired) DataFrames."""
    import pandas as pd
    from cli.flags import save_config_json
    from dataset.atomic import atomic_write_text
    out = Path(cfg.out_dir)
    jobs = compare_jobs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_config_json(cfg, out / "compare_config.json")
    result = (pd.DataFrame(), pd.DataFrame())

    def tables():
        nonlocal result
        rows = _rows_from_runs(jobs)
        if not rows:
            return
        df = pd.DataFrame(rows).drop(columns=["cfg"], errors="ignore")
        write_csv(out / "runs.csv", df)
        summary, paired = compare_tables(rows)
        write_csv(out / "summary.csv", summary)
        write_csv(out / "paired.csv", paired)
        text = ("# Classifier comparison\n\nMean ± std over seeds " +
                ", ".join(map(str, cfg.seeds)) + f" ({cfg.backbone}, {cfg.input_shape} px)."
                "\n\n" + markdown_table(summary) + "\n")
        if not paired.empty:
            p = paired[paired["metric"] == "macro_f1"]
            text += "\n## Paired against `original` (macro-F1, same seeds)\n\n"
            text += "| set | variant | mean diff | std diff | wins/ties/losses | p (paired t) |\n"
            text += "|---|---|---|---|---|---|\n"
            for _, r in p.iterrows():
                pv = "n/a" if r["p_value"] is None or r["p_value"] != r["p_value"] \
                    else f"{r['p_value']:.3f}"
                text += (f"| {r['set']} | {r['variant']} | {r['mean_diff']:+.3f} | "
                         f"{r['std_diff']:.3f} | {r['wins']}/{r['ties']}/{r['losses']} | "
                         f"{pv} |\n")
        atomic_write_text(out / "compare.md", text)
        result = (summary, paired)

    failures = _execute(jobs, cfg.keep_going, verbose, tables)
    tables()
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures))
    return result
