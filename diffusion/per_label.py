"""Stage 2 over many labels: one diffusion model per label folder, or one conditional model
for all of them, as independent jobs (`runtime.jobs`) that keep finished runs and resume
interrupted ones. train_all.py is the command.

Example:
    >>> for label, dcfg in per_label_configs(TrainAllConfig(in_dir="diffusion_data")):
    ...     row = train_label(label, dcfg, None)
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cli.flags import ConfigError
from config import EXECUTOR_FIELDS, DiffusionConfig, TrainAllConfig
from dataset.out_dir import check_outside_inputs
from diffusion.data import find_label_folders, find_labelled_images
from diffusion.training import earlier_runs, setup_runtime, train


def per_label_configs(cfg: TrainAllConfig) -> list[tuple[str, DiffusionConfig]]:
    """(label, DiffusionConfig) for each run (a single "conditional" run with --conditional).

    A label folder without usable images fails when its turn comes (see --keep_going).
    """
    check_outside_inputs(cfg)
    # A job runs where the executor put it; inside it, nothing is fanned out again.
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(DiffusionConfig)
            if f.name not in EXECUTOR_FIELDS}
    if cfg.conditional:
        find_labelled_images(cfg.in_dir, cfg.labels)  # fail early on a bad layout
        return [("conditional", DiffusionConfig(**base))]
    labels = list(find_label_folders(cfg.in_dir, cfg.labels))
    return [(lab, DiffusionConfig(**{**base, "in_dir": str(Path(cfg.in_dir) / lab)}))
            for lab in labels]


def reusable_run(cfg: DiffusionConfig, label: str, labels: list[str] | None
                 ) -> tuple[Path, bool] | None:
    """(run folder, finished) of an earlier run of `label` with the same settings in
    cfg.out_dir, so a rerun keeps finished labels and resumes the interrupted one; None when
    there is none.

    Raises:
        ConfigError: several finished runs match; the user says which to keep.
    """
    names = list(find_label_folders(cfg.in_dir, labels)) if cfg.conditional else None
    runs = earlier_runs(cfg, label, names)
    done = [run for run, finished in runs if finished]
    if len(done) > 1:
        raise ConfigError(f"{len(done)} finished runs of {label} with these settings in "
                          f"{cfg.out_dir}: {', '.join(str(d) for d in done)}; move all but one "
                          f"away (or use another --out_dir)")
    if done:
        return done[0], True
    return (runs[-1][0], False) if runs else None


def finished_row(label: str, run: Path) -> dict:
    """The report row of a run that finished earlier (from its state.json)."""
    state = json.loads((run / "state.json").read_text())
    return {"label": label, "status": "ok", "epochs": state.get("epochs_done"),
            "monitor": state.get("monitor"), "best": state.get("best_value"),
            "run_dir": str(run), "error": "finished earlier, kept"}


def train_label(label: str, dcfg: DiffusionConfig, labels: list[str] | None,
                runtime: tuple | None = None) -> dict:
    """One job of train_all: keeps a finished run, resumes an interrupted one or trains anew.

    Args:
        runtime: (policy, strategy) when this process already set them up; a fresh process
            (a Ray task) sets them up itself.

    Returns:
        The label's row of the report.
    """
    # why: Keras loads TensorFlow (seconds); --help and --dry-run never need it
    import keras
    try:
        earlier = reusable_run(dcfg, label, labels)
        if earlier is not None and earlier[1]:
            print(f"[{label}] finished earlier with the same settings: {earlier[0]}")
            return finished_row(label, earlier[0])
        if earlier is not None:
            print(f"[{label}] resuming {earlier[0]} (interrupted earlier)")
            dcfg = dataclasses.replace(dcfg, load_and_train=True, model_dir=str(earlier[0]))
        policy, strategy = runtime or setup_runtime(dcfg)
        res = train(dcfg, labels=labels, strategy=strategy, policy=policy)
        return {"label": label, "status": "ok", "epochs": res.epochs_done,
                "monitor": res.monitor, "best": res.best_value, "run_dir": str(res.run_dir),
                "error": ""}
    finally:
        keras.backend.clear_session()
