"""Runs the stages in order, skips those already done, stops with the cause when one fails.

A stage counts as done when `pipeline_state.json` records it finished with the same settings
(a hash of its resolved config) and its outputs are still there. A stage that finished with
other settings is not re-run silently: the runner stops and names the settings that changed
(`--redo STAGE` runs it again and keeps the old folder, renamed). An interrupted stage runs
again and resumes its own work; for stage 2 the runner does it: runs that finished are kept,
unfinished ones continue from their last epoch, and only the other labels start anew.

Example:
    >>> report = run_pipeline(PipelineConfig(in_dir="data/train", test_dir="data/test"), {})
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from cli.flags import changed_settings, format_config, save_config_json
from config import PIPELINE_STAGES, PipelineConfig
from dataset.atomic import atomic_write_text
from dataset.out_dir import check_location
from dataset.scan import DatasetError
from model_folder.folder import ModelFolder
from pipeline.report import build_report
from pipeline.stages import (EXTRA_FILLS, REPO, Layout, PipelineError, command, extra_fills,
                             fingerprint, outputs_present, stage_configs)

# classic_fill reads only the original data; classify compares the fills (and the extra
# fills the flags ask for); sd edits with a pretrained model, not stage 2's.
_NEEDS = {"diffusion": ("balance",), "augment": ("diffusion",),
          **{s: ("diffusion",) for s, fill in EXTRA_FILLS.items() if fill.needs_models},
          "classify": ("augment", "classic_fill")}


def read_state(layout: Layout) -> dict:
    """The record of finished stages ({} for a new run)."""
    if not layout.state.is_file():
        return {}
    try:
        return json.loads(layout.state.read_text())
    except json.JSONDecodeError:
        raise PipelineError(f"{layout.state} is damaged; move it away to start the stages "
                            "again") from None


def _write_state(layout: Layout, state: dict) -> None:
    atomic_write_text(layout.state, json.dumps(state, indent=2) + "\n")




def _cause(log_path: Path) -> tuple[list[str], list[str]]:
    """(the error line, if any; the last lines) of a stage's log, progress redraws dropped."""
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    lines = [seg.rstrip() for line in text.split("\n") for seg in line.split("\r")[-1:]]
    lines = [ln for ln in lines if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^(error:|\w+Error\b|\S+\.py: error:)", ln)]
    return errors[-1:] or lines[-1:], lines[-12:]


def run_command(cmd: list[str], log_path: Path) -> int:
    """Runs one stage command, echoing its output live and appending it to `log_path`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer TensorFlow lines between the stage's own
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        try:
            while chunk := proc.stdout.read1(1 << 16):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
            return proc.wait()
        except KeyboardInterrupt:
            proc.wait()  # the child got the same Ctrl-C; let it save its state
            raise


def _new_run_dirs(models: Path, since: float) -> list[str]:
    """Run folders that train_all reported as trained in its newest table."""
    tables = sorted((p for p in models.glob("train_all_*.csv") if p.stat().st_mtime >= since),
                    key=lambda p: p.stat().st_mtime)
    if not tables:
        raise PipelineError(f"stage diffusion wrote no train_all_*.csv in {models}")
    with open(tables[-1], newline="") as f:
        return [row["run_dir"] for row in csv.DictReader(f) if row["status"] == "ok"]


def _earlier_runs(models: Path, since: float) -> dict[str, tuple[Path, bool]]:
    """Run folders an interrupted attempt of stage 2 left: label -> (newest folder, finished).

    Only folders started by that attempt (at or after `since`) with weights to resume from
    count; a conditional run is filed under "conditional", as train_all names it."""
    found: dict[str, tuple[Path, bool, float]] = {}
    for config in models.glob("*/config.json"):
        run = config.parent
        started = config.stat().st_mtime
        if started < since or not ModelFolder(run, "diffusion").has_weights("last"):
            continue
        meta = json.loads(config.read_text())
        label = "conditional" if meta.get("conditional") else str(meta.get("_label"))
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() \
            else {}
        if label not in found or started > found[label][2]:
            found[label] = (run, bool(state.get("finished")), started)
    return {label: (run, done) for label, (run, done, _) in found.items()}


def _run_diffusion(cfg, layout: Layout, state: dict, fp: str, log_path: Path) -> list[str]:
    """Stage 2, resuming an interrupted attempt with the same settings: finished runs are
    kept, unfinished ones continue from their last epoch, the other labels are trained."""
    attempt = state.get("diffusion_attempt", {})
    if attempt.get("fingerprint") != fp:
        attempt = {"fingerprint": fp, "started": time.time()}
        state["diffusion_attempt"] = attempt
        _write_state(layout, state)
    earlier = _earlier_runs(layout.models, attempt["started"])
    wanted = ["conditional"] if cfg.conditional else list(cfg.labels)
    kept, to_train = [], []
    for label in wanted:
        if label not in earlier:
            to_train.append(label)
            continue
        run, finished = earlier[label]
        if not finished:
            print(f"[pipeline] diffusion: resuming {run} (interrupted earlier)", flush=True)
            cmd = [sys.executable, str(REPO / "run_diffusion.py"), "--load_and_train",
                   "--model_dir", str(run), "--num_epochs", str(cfg.num_epochs)]
            code = run_command(cmd, log_path)
            if code != 0:
                _failed("diffusion", code, log_path)
        else:
            print(f"[pipeline] diffusion: keeping {run} (finished earlier)")
        kept.append(str(run))
    if not to_train:
        return kept
    start = time.time()
    cmd = command("diffusion", layout)
    if not cfg.conditional:
        cmd += ["--labels", *to_train]
    print(f"[pipeline] diffusion: {' '.join(cmd)}", flush=True)
    code = run_command(cmd, log_path)
    if code != 0:
        _failed("diffusion", code, log_path)
    return kept + _new_run_dirs(layout.models, start)


def _failed(stage: str, code: int, log_path: Path) -> NoReturn:
    """Stops the run with the stage's error line, the end of its log and the log's path."""
    cause, tail = _cause(log_path)
    raise PipelineError(f"stage {stage} failed (exit status {code}): "
                        f"{cause[0] if cause else 'see the log'}\n"
                        + "\n".join(f"    {ln}" for ln in tail) + f"\n  full log: {log_path}")


def _move_aside(layout: Layout, stages: list[str]) -> None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for stage in stages:
        folder = layout.stage_output(stage)
        if folder.exists():
            aside = folder.with_name(f"{folder.name}_old_{stamp}")
            folder.rename(aside)
            print(f"[pipeline] --redo: kept the old {folder.name}/ as {aside.name}/")


def check_run_folder(pcfg: PipelineConfig, layout: Layout) -> None:
    """Refuses an out_dir inside the data, or one that holds files of someone else's (the
    runner writes configs/, logs/, report.html ... there and must overwrite nothing).

    Raises:
        DatasetError: one line saying why (nothing is changed).
    """
    out = check_location(layout.out_dir, pcfg.in_dir, "--in_dir")
    if pcfg.test_dir:
        check_location(layout.out_dir, pcfg.test_dir, "--test_dir")
    for flag, folder in (("--in_dir", pcfg.in_dir), ("--test_dir", pcfg.test_dir)):
        if folder and not Path(folder).is_dir():   # else stages 1-3 run for an hour first
            raise DatasetError(f"{flag} {folder} does not exist or is not a folder")
    if not out.is_dir() or layout.state.is_file():
        return
    # Before the first stage finishes there is no state file: only what a run writes before
    # that (its settings, logs and the stage folders, which guard themselves) can be ours.
    ours = {p.name for p in (layout.diffusion_data, layout.models, layout.balanced_data,
                             *layout.fill_data.values(), layout.classic_fill_data,
                             layout.results, layout.configs, layout.logs)}
    inputs = [Path(d).resolve() for d in (pcfg.in_dir, pcfg.test_dir) if d]
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in ours and not p.name.startswith(".")
                     and not any(p == d or p in d.parents for d in inputs))
    if foreign:
        raise DatasetError(f"--out_dir {layout.out_dir} already holds files not written by "
                           f"run_pipeline.py ({', '.join(foreign[:3])}"
                           f"{', ...' if len(foreign) > 3 else ''}): choose a new folder")


def _saved_stage_config(layout: Layout, stage: str) -> dict:
    path = layout.stage_config(stage)
    return json.loads(path.read_text()) if path.is_file() else {}


def _status(stage: str, cfg, state: dict, layout: Layout) -> str:
    """'done', 'stale' (finished with other settings) or 'todo'. A setting added to
    config.py since the stage ran does not make it stale while it holds its default."""
    rec = state.get(stage)
    if not rec or not outputs_present(stage, layout, rec.get("run_dirs", [])):
        return "todo"
    if rec.get("fingerprint") == fingerprint(cfg):
        return "done"
    saved = _saved_stage_config(layout, stage)
    return "stale" if not saved or changed_settings(saved, cfg) else "done"


def run_pipeline(pcfg: PipelineConfig, sections: dict[str, dict], dry_run: bool = False
                 ) -> Path | None:
    """Runs the selected stages; returns report.html's path (None for a dry run).

    Raises:
        ConfigError: bad settings (before any stage runs).
        PipelineError: a stage failed, or finished earlier with other settings.
    """
    layout = Layout(pcfg.out_dir)
    check_run_folder(pcfg, layout)
    state = read_state(layout)
    wanted = [s for s in PIPELINE_STAGES if s in pcfg.stages
              and (s not in EXTRA_FILLS or s in extra_fills(pcfg))]
    if "classify" in wanted and not pcfg.test_dir:
        raise PipelineError("the classify stage needs --test_dir (real test images, one "
                            "sub-folder per label); or leave 'classify' out of --stages")
    if pcfg.redo and not dry_run:
        again = list(PIPELINE_STAGES[PIPELINE_STAGES.index(pcfg.redo):])
        _move_aside(layout, [s for s in again if s in state and s != "report"])
        state = {k: v for k, v in state.items() if k not in again}
    run_dirs = state.get("diffusion", {}).get("run_dirs", [])
    cfgs = stage_configs(pcfg, sections, layout, run_dirs)  # validates every stage first
    if dry_run:
        print(format_config(pcfg))
        print(f"[pipeline] labels stage 2 trains on: "
              f"{', '.join(cfgs['diffusion'].labels) or 'none'}")
        for stage in wanted:
            if stage in cfgs:
                print(f"[{stage}] {_status(stage, cfgs[stage], state, layout)}: "
                      f"{' '.join(command(stage, layout))}")
                print(format_config(cfgs[stage]))
        return None
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    save_config_json(pcfg, layout.configs / "pipeline.json",
                     sections={k: v for k, v in sections.items() if v})
    for stage in wanted:
        if stage == "report":
            break
        cfg = cfgs[stage]
        status = _status(stage, cfg, state, layout)
        if status == "done":
            print(f"[pipeline] {stage}: done before, skipped")
            continue
        if status == "stale":
            changed = changed_settings(_saved_stage_config(layout, stage), cfg) \
                or ["(unknown)"]
            raise PipelineError(f"stage {stage} finished earlier with other settings "
                                f"(changed: {', '.join(changed)}); add --redo {stage} to run "
                                f"it and the stages after it again, or use a new --out_dir")
        needs = _NEEDS.get(stage, ()) + (tuple(extra_fills(pcfg)) if stage == "classify"
                                         else ())
        missing = [s for s in needs if s not in state]
        if missing:
            raise PipelineError(f"stage {stage} needs stage {missing[0]} first; add it to "
                                "--stages")
        if stage == "diffusion" and not cfg.labels:
            print("[pipeline] diffusion: no label needs synthetic images; nothing to train")
            state[stage] = {"fingerprint": fingerprint(cfg), "run_dirs": [], "seconds": 0.0}
            _write_state(layout, state)
            cfgs = stage_configs(pcfg, sections, layout, [])
            continue
        save_config_json(cfg, layout.stage_config(stage))
        start = time.time()
        log_path = layout.logs / f"{stage}.log"
        rec = {"fingerprint": fingerprint(cfg)}
        try:
            if stage == "diffusion":
                rec["run_dirs"] = _run_diffusion(cfg, layout, state, rec["fingerprint"],
                                                 log_path)
                # Stage 3 now knows its models: its settings (and hash) include them.
                cfgs = stage_configs(pcfg, sections, layout, rec["run_dirs"])
            else:
                print(f"[pipeline] {stage}: {' '.join(command(stage, layout))}", flush=True)
                code = run_command(command(stage, layout), log_path)
                if code != 0:
                    _failed(stage, code, log_path)
        except KeyboardInterrupt:
            raise PipelineError(f"interrupted during stage {stage}; run the same command "
                                "again to resume") from None
        rec.update(seconds=round(time.time() - start, 1),
                   finished=datetime.datetime.now().isoformat(timespec="seconds"))
        state.pop("diffusion_attempt", None)  # a finished stage 2 leaves nothing to resume
        state[stage] = rec
        _write_state(layout, state)
    if "report" not in wanted:
        return None
    return build_report(layout, pcfg, state)
