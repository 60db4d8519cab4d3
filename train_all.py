"""Stage 2 for every label: one diffusion model per label folder, or one conditional model.

    python3 train_all.py --in_dir diffusion_data --out_dir models --num_epochs 100
    python3 train_all.py --in_dir diffusion_data --conditional          # one model, all labels
    python3 train_all.py --in_dir diffusion_data --distribute mirrored --gpu_index auto

Takes every flag of run_diffusion.py (training), plus --labels and --keep_going. Stops at the
first label that fails unless --keep_going; prints a table of every label's outcome and
writes it to out_dir/train_all_<time>.csv.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import sys
import traceback
from pathlib import Path

from cli.errors import describe_os_error, one_line_errors
from cli.flags import ConfigError, format_config, parse_config
from config import DiffusionConfig, TrainAllConfig
from dataset.atomic import atomic_write_text
from dataset.scan import DatasetError


def per_label_configs(cfg: TrainAllConfig) -> list[tuple[str, DiffusionConfig]]:
    """(label, DiffusionConfig) for each run (a single "conditional" run with --conditional).

    A label folder without usable images fails when its turn comes (see --keep_going).
    """
    from dataset.out_dir import check_outside_inputs
    from diffusion.data import find_label_folders, find_labelled_images
    check_outside_inputs(cfg)
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(DiffusionConfig)}
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
    from diffusion.data import find_label_folders
    from diffusion.training import earlier_runs
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


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(TrainAllConfig, argv, prog="train_all.py")
    try:
        runs = per_label_configs(cfg)
        if ns._dry_run:
            from diffusion.training import describe_plan
            print(format_config(cfg))
            for label, dcfg in runs:
                print(f"[{label}] {describe_plan(dcfg, cfg.labels)}")
            return 0
        from diffusion.training import setup_runtime, train
        policy, strategy = setup_runtime(runs[0][1])  # devices can be set once per process
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import keras
    report = []
    for i, (label, dcfg) in enumerate(runs):
        print(f"=== {label} ({i + 1}/{len(runs)}) ===")
        try:
            earlier = reusable_run(dcfg, label, cfg.labels)
            if earlier is not None and earlier[1]:
                report.append(finished_row(label, earlier[0]))
                print(f"[{label}] finished earlier with the same settings: {earlier[0]}")
                continue
            if earlier is not None:
                print(f"[{label}] resuming {earlier[0]} (interrupted earlier)")
                dcfg = dataclasses.replace(dcfg, load_and_train=True, model_dir=str(earlier[0]))
            res = train(dcfg, labels=cfg.labels, strategy=strategy, policy=policy)
            report.append({"label": label, "status": "ok", "epochs": res.epochs_done,
                           "monitor": res.monitor, "best": res.best_value,
                           "run_dir": str(res.run_dir), "error": ""})
        except KeyboardInterrupt:
            report.append({"label": label, "status": "interrupted", "error": "Ctrl-C"})
            break
        except Exception as err:  # noqa: BLE001 - reported per label, then stop or go on
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            if isinstance(err, OSError):
                first = describe_os_error(err)   # a full disk is not a bug
            elif not isinstance(err, (ConfigError, DatasetError, ValueError)):
                traceback.print_exc()
            report.append({"label": label, "status": "failed", "error": first})
            print(f"[{label}] failed: {first}", file=sys.stderr)
            if not cfg.keep_going:
                break
        finally:
            keras.backend.clear_session()
    done = {r["label"] for r in report}
    report += [{"label": lab, "status": "not run", "error": "stopped after a failure"}
               for lab, _ in runs if lab not in done]
    print_report(report, Path(cfg.out_dir))
    return 0 if all(r["status"] == "ok" for r in report) else 1


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
