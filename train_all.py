"""Stage 2 for every label: one diffusion model per label folder, or one conditional model.

    python3 train_all.py --in_dir diffusion_data --out_dir models --num_epochs 100
    python3 train_all.py --in_dir diffusion_data --conditional          # one model, all labels
    python3 train_all.py --in_dir diffusion_data --distribute mirrored --gpu_index auto
    python3 train_all.py --in_dir diffusion_data --executor ray --task_gpus 1   # a model per GPU

Takes every flag of run_diffusion.py (training), plus --labels, --keep_going and the
executor flags: `--executor ray` trains the labels in parallel as Ray tasks, on this
machine or a cluster (docs/cluster.md), with the same run folders and report. Stops at the
first label that fails unless --keep_going; prints a table of every label's outcome and
writes it to out_dir/train_all_<time>.csv.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import sys
import traceback
from pathlib import Path

from cli.errors import EXIT_OK, EXIT_SOME_FAILED, describe_os_error, one_line_errors
from cli.flags import ConfigError, format_config, parse_config
from config import TrainAllConfig
from dataset.atomic import atomic_write_text
from dataset.images import is_image_name
from dataset.scan import DatasetError
from diffusion.data import labels_with_images
from diffusion.per_label import per_label_configs, train_label
from diffusion.training import describe_plan, setup_runtime
from runtime.divergence import TrainingDiverged
from runtime.jobs import Job, JobLost, Outcome, run_jobs


def failure_row(label: str, err: BaseException) -> dict:
    """The report row of a label whose training raised `err` (a traceback for bugs)."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, OSError):
        first = describe_os_error(err)   # a full disk is not a bug
    elif not isinstance(err, (ConfigError, DatasetError, ValueError, JobLost,
                              TrainingDiverged)):
        traceback.print_exception(err)
    print(f"[{label}] failed: {first}", file=sys.stderr)
    return {"label": label, "status": "failed", "error": first}


def without_empty_labels(cfg: TrainAllConfig) -> TrainAllConfig:
    """A conditional run without the label folders that hold no image, saying which; the
    labels the user named must all hold images (one per-label run fails alone anyway).

    Raises:
        DatasetError: a named label without images, or no label with images.
    """
    if not cfg.conditional:
        return cfg
    found, left_out = labels_with_images(cfg.in_dir, cfg.labels)
    if left_out and cfg.labels:
        raise DatasetError(f"label {left_out[0]}: leave it out of --labels")
    if not found:
        raise DatasetError(f"no label folder of {cfg.in_dir} holds images")
    if left_out:
        print(f"left out {len(left_out)} label folder(s) without images (the conditional "
              f"model trains on the other {len(found)}):")
        for line in left_out:
            print(f"  {line}")
        cfg = dataclasses.replace(cfg, labels=list(found))
    return cfg


def say_left_out_files(in_dir: str | Path) -> None:
    """Names the files training will not read: images beside the label folders (they belong
    to no label) and files that are not images. Said, never silently dropped, as stage 1
    and classifier.train say them."""
    root = Path(in_dir)
    if not root.is_dir():
        return       # the training says so in one line
    files = [p for p in root.rglob("*") if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    left = [(p, "image at the dataset root, in no label folder") for p in files
            if p.parent == root and is_image_name(p)]
    left += [(p, "not an image") for p in files if not is_image_name(p)]
    if left:
        print(f"left out {len(left)} file(s) of {in_dir}:")
        for path, why in sorted(left)[:20]:
            print(f"  {path.relative_to(root)}: {why}")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(TrainAllConfig, argv, prog="train_all.py")
    cfg = without_empty_labels(cfg)
    say_left_out_files(cfg.in_dir)
    runs = per_label_configs(cfg)
    if ns._dry_run:
        print(format_config(cfg))
        for label, dcfg in runs:
            print(f"[{label}] {describe_plan(dcfg, cfg.labels)}")
        return EXIT_OK
    runtime = None
    if cfg.executor == "local":
        runtime = setup_runtime(runs[0][1])  # devices can be set once per process

    jobs = [Job(label, train_label, (label, dcfg, cfg.labels, runtime)) for label, dcfg in runs]
    rows: dict[str, dict] = {}

    def on_done(outcome: Outcome) -> None:
        if outcome.status == "ok":
            rows[outcome.name] = outcome.value
        elif outcome.status == "failed":
            rows[outcome.name] = failure_row(outcome.name, outcome.error)
        print(f"=== {outcome.name}: {outcome.status} ({len(rows)}/{len(runs)} done) ===")

    try:
        run_jobs(jobs, cfg.executor, cfg.ray_address, cfg.task_cpus, cfg.task_gpus,
                 cfg.keep_going, on_done)
        missing = {"status": "not run", "error": "stopped after a failure"}
    except KeyboardInterrupt:
        missing = {"status": "interrupted", "error": "Ctrl-C"}
    report = [rows.get(label) or {"label": label, **missing} for label, _ in runs]
    print_report(report, Path(cfg.out_dir))
    return EXIT_OK if all(r["status"] == "ok" for r in report) else EXIT_SOME_FAILED


def print_report(report: list[dict], out_dir: Path) -> None:
    cols = ["label", "status", "epochs", "monitor", "best", "run_dir", "error"]
    print("\nlabel | status | epochs | best | run folder / error")
    for r in report:
        best = r.get("best")
        best = f"{best:.4g}" if isinstance(best, float) else "-"
        print(f"{r['label']} | {r['status']} | {r.get('epochs', '-')} | {best} | "
              f"{r.get('run_dir') or r.get('error', '')}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = atomic_write_text(out_dir / f"train_all_{stamp}.csv", buf.getvalue())
    print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
