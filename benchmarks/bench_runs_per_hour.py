"""Classifier runs per hour on the Fashion-MNIST-LT benchmark's settings: this checkout against
an older commit, side by side in one run.

The older commit is checked out in a git worktree (the same Python environment); each side
runs `python3 -m classifier.compare` as a user would, on the same Fashion-MNIST-LT folder,
with bench_longtail.py's classifier settings (small_cnn 28 px, 15 epochs x 100 steps of 128)
and arms both sides know. The sides alternate, old first, so a load that drifts over the run
is shared. Each side may add its own flags (e.g. `--new_flags "--executor ray --task_cpus 1"`:
two runs at a time, one core each). Printed: wall time, runs per hour and its ratio to the
old side, and the test balanced accuracy of every side (mean ± std over its runs) so a
speed-up that changed the results shows.

    .venv/bin/python benchmarks/bench_runs_per_hour.py                      # old = e17f72d
    .venv/bin/python benchmarks/bench_runs_per_hour.py --seeds 0 1 2 --arms original \\
        --new_flags "--executor ray --task_cpus 1" --rounds 2
    .venv/bin/python benchmarks/bench_runs_per_hour.py --new_flags "--executor pool --task_cpus 1"
    .venv/bin/python benchmarks/bench_runs_per_hour.py --quick                 # smoke run
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The commit before issue 36's work (2026-12-07): the yardstick the issue asks for.
OLD = "e17f72d"


def worktree(rev: str, where: Path) -> Path:
    """A checkout of `rev` at `where` (made once; reused when it is already that commit)."""
    head = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    want = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], capture_output=True,
                          text=True, check=True).stdout.strip()
    if head.returncode == 0 and head.stdout.strip() == want:
        return where
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force",
                    str(where), want], check=True, capture_output=True)
    return where


def run_side(checkout: Path, settings: dict, out: Path, extra: list[str]) -> tuple[float, list]:
    """Runs one classifier.compare in `checkout`; (wall seconds, test balanced accuracies)."""
    import pandas as pd
    out.parent.mkdir(parents=True, exist_ok=True)
    config = out.with_suffix(".json")
    config.write_text(json.dumps(settings))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "classifier.compare", "--config", str(config),
                           "--out_dir", str(out), *extra], cwd=checkout,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: classifier.compare in {checkout} failed:\n"
                         + "\n".join(proc.stderr.splitlines()[-15:]))
    runs = pd.read_csv(out / "runs.csv")
    return wall, list(runs[runs["set"] == "test"]["balanced_accuracy"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--old", default=OLD, help=f"the older commit (default {OLD})")
    parser.add_argument("--imbalance", type=float, default=100)
    parser.add_argument("--arms", nargs="+", default=["original", "rebalanced"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=1,
                        help="old/new pairs, each in a fresh output folder")
    parser.add_argument("--old_flags", default="", help="extra classifier.compare flags, old")
    parser.add_argument("--new_flags", default="", help="extra classifier.compare flags, new")
    parser.add_argument("--work_dir", default="/tmp/bench_runs_per_hour")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    args = parser.parse_args(argv)

    from benchmarks.bench_longtail import CLASSIFIER, QUICK
    from cli.tables import format_table
    from sample_data.__main__ import build

    work = Path(args.work_dir)
    data = work / f"fmnist_lt_if{args.imbalance:g}"
    build(data, None, 0, "fmnist_lt", args.imbalance)
    settings = {**CLASSIFIER, **(QUICK if args.quick else {}), "bootstrap": 200,
                "train_dir": str(data / "train"), "test_dir": str(data / "test"),
                "variants": args.arms, "seeds": args.seeds}
    settings = {k: v for k, v in settings.items()   # fields the old commit may not know
                if k not in ("crt_epochs", "feature_fill_steps")}
    old = worktree(args.old, work / f"worktree_{args.old}")
    sides = {"old": (old, shlex.split(args.old_flags)), "new": (REPO, shlex.split(args.new_flags))}
    walls = {s: 0.0 for s in sides}
    scores: dict[str, list] = {s: [] for s in sides}
    for r in range(args.rounds):
        for side, (checkout, extra) in sides.items():
            wall, acc = run_side(checkout, settings, work / f"round{r}" / side, extra)
            walls[side] += wall
            scores[side] += acc
            print(f"round {r} {side}: {len(acc)} runs in {wall:.0f} s", flush=True)
    runs = len(args.arms) * len(args.seeds) * args.rounds
    per_hour = {s: runs / walls[s] * 3600 for s in sides}
    rows = [{"side": f"{s} ({args.old if s == 'old' else 'this checkout'})",
             "flags": " ".join(sides[s][1]) or "-", "runs": runs, "wall s": f"{walls[s]:.0f}",
             "runs / hour": f"{per_hour[s]:.1f}",
             "vs old": f"{per_hour[s] / per_hour['old']:.2f}x",
             "test balanced accuracy": f"{np.mean(scores[s]):.3f} ± {np.std(scores[s]):.3f}"}
            for s in sides]
    print(format_table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
