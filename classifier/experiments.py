"""Many runs: a grid search (grid x seeds x repeats), resumable, and the helpers the
comparison (`classifier.comparison`) shares with it.

A run whose folder holds metrics.json is finished and skipped on restart; the CSV tables
are rebuilt from every finished run's metrics.json after each run, so an interrupted search
loses at most the run in progress.

Example:
    >>> summary, failures = run_grid_search(GridSearchConfig(
    ...     train_dir="data/train", grid=["learning_rate=1e-3,1e-4"]))
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from classifier.grid import combo_name, expand_grid, parse_grid, run_seed, summarize
from classifier.metrics import SUMMARY_METRICS, higher_is_better
from classifier.report import write_csv
from classifier.runs import CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME, is_finished
from classifier.training import train_run
from cli.flags import ConfigError, config_from_dict, save_config_json, validate_config
from config import ClassifierConfig
from dataset.out_dir import check_outside_inputs
from runtime.jobs import Job, run_jobs


def _base_fields():
    return {f.name for f in dataclasses.fields(ClassifierConfig)}


def to_classifier_config(cfg, **changes):
    """A ClassifierConfig from a GridSearch/Compare config plus `changes`, validated."""
    data = {k: v for k, v in dataclasses.asdict(cfg).items() if k in _base_fields()}
    data.update(changes)
    out = config_from_dict(ClassifierConfig, data)
    validate_config(out)
    return out


def tail_recall(per_class: dict, tail: Sequence[str]) -> float:
    """Mean recall over the `tail` labels that have test images (NaN when none has)."""
    recalls = [per_class[c]["recall"] for c in tail
               if c in per_class and per_class[c]["support"] > 0]
    return float(np.mean(recalls)) if recalls else math.nan


def _row(metrics: dict, test_set: str | None, tail: Sequence[str] | None = None) -> dict:
    m = metrics["val"] if test_set is None else metrics["tests"][test_set]
    out = {k: m[k] for k in SUMMARY_METRICS}
    if tail is not None:
        out["tail_recall"] = tail_recall(m["per_class"], tail)
    return out


def _rows_from_runs(jobs: list[dict], tail: Sequence[str] | None = None) -> list[dict]:
    """One row per finished run and evaluation set (val, then each test set): the job's
    fields, best/stopped epochs, and the summary metrics (+ tail_recall with `tail`)."""
    rows = []
    for job in jobs:
        path = Path(job["run_dir"]) / METRICS_NAME
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        base = {k: v for k, v in job.items() if k not in ("cfg",)}
        base.update(best_epoch=metrics["best_epoch"], epochs_run=metrics["epochs_run"],
                    seconds=metrics["seconds"])
        rows.append({**base, "set": "val", **_row(metrics, None, tail)})
        for name in metrics["tests"]:
            rows.append({**base, "set": name, **_row(metrics, name, tail)})
    return rows


def _execute(jobs: list[dict], cfg, verbose: int,
             on_progress: Callable[[], None]) -> list[str]:
    """Trains every unfinished job, here or as Ray tasks (`cfg.executor`); calls
    `on_progress` after each. Returns the failures as lines; without `cfg.keep_going` the
    first failure is raised instead (after Ray has cancelled the rest)."""
    todo = []
    for k, job in enumerate(jobs, 1):
        run_dir = Path(job["run_dir"])
        where = f"[{k}/{len(jobs)}] {run_dir.parent.name}/{run_dir.name}"
        if is_finished(run_dir):
            print(f"{where}: finished earlier, skipped")
        else:
            todo.append(Job(str(run_dir), _train_announced, (where, job["cfg"], verbose)))
    failures = []

    def on_done(outcome) -> None:
        if outcome.status == "failed":
            failures.append(f"{outcome.name}: {outcome.error.__class__.__name__}: "
                            f"{outcome.error}")
            print(f"  FAILED: {failures[-1]}")
        if outcome.status != "not run":
            on_progress()

    outcomes = run_jobs(todo, cfg.executor, cfg.ray_address, cfg.task_cpus, cfg.task_gpus,
                        cfg.keep_going, on_done)
    if not cfg.keep_going:
        for outcome in outcomes:
            if outcome.status == "failed":
                raise outcome.error
    return failures


def _train_announced(where: str, run_cfg, verbose: int) -> None:
    # One job of `_execute`; it returns nothing: the run folder holds the results.
    print(where)
    train_run(run_cfg, verbose=verbose)


# Settings the grid search sets per run itself: a grid over them would name or seed the
# runs twice (the run folder is out_dir/<combo>/seed<S>_r<R>; seeds come from --seeds).
RUNNER_OWNED = {"out_dir": "give --out_dir once",
                "run_name": "its runs are named <combo>/seed<S>_r<R>",
                "seed": "vary it with --seeds and --repeats"}


def grid_jobs(cfg) -> list[dict]:
    """The runs of a grid search: one per combination x seed x repeat.

    Raises:
        ConfigError: the grid names a setting that is not a training setting, or one the
            search sets per run (`RUNNER_OWNED`).
    """
    grid = parse_grid(cfg.grid, type(cfg))
    base_only = set(grid) - _base_fields()
    if base_only:
        raise ConfigError(f"--grid over {', '.join(sorted(base_only))}: not a training "
                          f"setting")
    owned = [name for name in grid if name in RUNNER_OWNED]
    if owned:
        name = owned[0]
        raise ConfigError(f"--grid cannot vary {name}: the grid search sets it per run "
                          f"({RUNNER_OWNED[name]})")
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
    # why: pandas is slow to import and only the tables need it
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
        (summary, failures): the summary DataFrame (mean and std per combination and
        evaluation set) of the finished runs, and one line per failed run (empty unless
        `cfg.keep_going`; without it the first failure is raised).
    """
    # why: pandas is slow to import and only the tables need it
    import pandas as pd
    out = check_outside_inputs(cfg)
    jobs = grid_jobs(cfg)
    out.mkdir(parents=True, exist_ok=True)
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

    failures = _execute(jobs, cfg, verbose, tables)
    summary = tables()
    if failures:
        print(f"{len(failures)} run(s) failed:\n  " + "\n  ".join(failures))
    return summary, failures
