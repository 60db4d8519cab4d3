"""The standard long-tail benchmark: Fashion-MNIST-LT at imbalance 100 and 10.

Builds Fashion-MNIST-LT (`python3 -m sample_data --arrangement fmnist_lt`: all 10 classes,
6,000 down to 6000/IF training images, the full balanced 10,000-image test split) for each
--imbalance in the work folder, and runs `classifier.compare` on it over --seeds with the
--arms. For each imbalance factor it prints the arms' balanced accuracy, macro-F1 and tail
recall (mean ± std over seeds, 95% bootstrap CI over seeds and test images), the paired
differences to the strongest non-generative arm (Holm across arms), the many / medium /
few-shot accuracies (compare's shots.csv; the absolute split: many > 100 training images,
few < 20; the relative split: thirds of the labels by count, the one that has three groups on
Fashion-MNIST-LT, whose rarest class has 60 images at IF 100 and 600 at IF 10), and the wall
time of every arm x seed and in total.

The defaults fit a 2-core CPU: small_cnn at 28 px (the images' own size), 15 epochs x 100
steps of 128 at learning rate 3e-3 in every arm and at both imbalance factors, early
stopping on validation balanced accuracy (patience 5), one classic strength (0.5). `crt` and the
`feature_fill` arms start from the same seed's finished `original` (or `logit_adjusted`) run
and re-train only a head, so they cost seconds. The runs go to `--executor pool` with
`--task_cpus 1` by default: two at a time on 2 cores, in workers that keep TensorFlow and the
decoded images between runs (docs/benchmarks.md, "Runs per hour").

    .venv/bin/python benchmarks/bench_longtail.py                  # IF 100 and 10, 5 seeds
    .venv/bin/python benchmarks/bench_longtail.py --quick          # smoke run, minutes
    .venv/bin/python benchmarks/bench_longtail.py --imbalance 100 --seeds 0 1 \
        --arms original logit_adjusted crt

Re-running with the same --work_dir skips finished runs (compare refuses runs trained with
other settings: use a new --work_dir after changing them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The long-tail arms in the order the tables show them; those this checkout's
# classifier.compare does not know yet are left out of the default.
LONGTAIL_ARMS = ("original", "rebalanced", "classic", "logit_adjusted", "crt", "feature_fill",
                 "feature_fill+la")
FALLBACK_ARMS = ("original", "rebalanced", "classic")
# One full run: 15 epochs x 100 steps of 128 (about one pass over IF 100's training split,
# 0.65 of IF 10's) at both imbalance factors, so a run costs the same at both; measured in
# docs/benchmarks.md. lr 3e-3: at 1e-3 (12 epochs) the small CNN ended under-trained at
# 0.67 test balanced accuracy against 0.74-0.79. One classic strength: the search would add full
# runs per imbalance factor.
CLASSIFIER = {"backbone": "small_cnn", "weights": "none", "input_shape": 28,
              "batch_size": 128, "learning_rate": 3e-3, "number_epochs": 15,
              "steps_per_epoch": 100, "early_stop_patience": 5,
              "evaluation_type": "balanced_accuracy", "classic_augm_type": "flip",
              "classic_strengths": [0.5], "tensorboard": False, "bootstrap": 2000}
QUICK = {"number_epochs": 1, "steps_per_epoch": 5, "early_stop_patience": 0,
         "bootstrap": 100, "crt_epochs": 1, "feature_fill_steps": 20}


def default_arms() -> list[str]:
    """LONGTAIL_ARMS that classifier.compare accepts, else the three original arms.

    Example:
        >>> default_arms()[:3]
        ['original', 'rebalanced', 'classic']
    """
    from classifier.arms import ArmError, normalise_arm
    known = []
    for arm in LONGTAIL_ARMS:
        try:
            known.append(normalise_arm(arm))
        except ArmError:
            continue
    return known if len(known) > len(FALLBACK_ARMS) else list(FALLBACK_ARMS)


def compare_settings(data: Path, out: Path, arms: list[str], seeds: list[int],
                     quick: bool = False, **overrides) -> dict:
    """classifier.compare's settings (a CompareConfig as a dict) for one Fashion-MNIST-LT
    folder: CLASSIFIER, tiny with `quick`, `overrides` last.

    Example:
        >>> compare_settings(Path("d"), Path("o"), ["original"], [0])["train_dir"]
        'd/train'
    """
    return {**CLASSIFIER, **(QUICK if quick else {}), **overrides,
            "train_dir": str(data / "train"), "test_dir": str(data / "test"),
            "out_dir": str(out), "variants": list(arms), "seeds": list(seeds)}


def run_times(runs_csv: Path) -> list[dict]:
    """[{arm, seconds per seed..., total}] from compare's runs.csv (the val rows: one per
    run), arms in the order they ran."""
    import pandas as pd
    df = pd.read_csv(runs_csv)
    df = df[df["set"] == "val"]
    seeds = sorted({int(s) for s in df["seed"]})
    rows = []
    for arm, sub in df.groupby("variant", sort=False):
        took = dict(zip(sub["seed"].astype(int), sub["seconds"]))
        rows.append({"arm": arm, **{f"seed {s}": f"{took[s]:.0f}" if s in took else "-"
                                    for s in seeds},
                     "total s": f"{sub['seconds'].sum():.0f}"})
    return rows


def print_shots(results: Path, arms: list[str]) -> None:
    """The many / medium / few-shot table of a comparison, from its shots.csv."""
    import pandas as pd

    from classifier.shot_groups import shot_summary, shots_markdown
    path = results / "shots.csv"
    if not path.is_file():
        print(f"\n(no {path.name}: this checkout's classifier.compare does not write the "
              f"many / medium / few table yet)")
        return
    rows = pd.read_csv(path).to_dict("records")
    counts = json.loads((results / "tail_labels.json").read_text())["real_counts"]
    test_rows = [r for r in rows if r["set"] == "test"]
    print("\nmany / medium / few-shot accuracy on test (mean per-class accuracy, mean ± std "
          "over seeds); groups by real training images:")
    print(shots_markdown(shot_summary(test_rows, arms), counts))


def pixel_fills_stub() -> None:
    """--pixel_fills: not built. A diffusion_fill arm would train stage 2 on the long-tailed
    training split and fill it with stage 3 (run_pipeline.py), hours on 2 cores."""
    print("[bench_longtail] --pixel_fills: the pixel-space fill arms (diffusion_fill via "
          "run_pipeline.py stage 3) are not built into this benchmark yet; NOT RUN. "
          "benchmarks/bench_evidence.py --dataset fmnist runs them on the 6-label set.",
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--work_dir", default="/tmp/bench_longtail")
    parser.add_argument("--imbalance", type=float, nargs="+", default=[100, 10],
                        help="imbalance factors, largest / smallest class (default 100 10)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="classifier seeds (default 0 1 2 3 4; --quick: 0 1)")
    parser.add_argument("--arms", nargs="+", default=None,
                        help=f"compare's arms (default: {' '.join(LONGTAIL_ARMS)}, those "
                             f"classifier.compare knows; else {' '.join(FALLBACK_ARMS)})")
    parser.add_argument("--data_seed", type=int, default=0,
                        help="seed of the training images drawn per class (default 0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"maximum epochs (default {CLASSIFIER['number_epochs']})")
    parser.add_argument("--batch_size", type=int, default=None,
                        help=f"images per step (default {CLASSIFIER['batch_size']})")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help=f"bootstrap resamples (default {CLASSIFIER['bootstrap']})")
    parser.add_argument("--feature_fill_steps", type=int, default=None,
                        help="training steps of the feature_fill arms' feature diffusion "
                             "model (default: classifier.compare's)")
    parser.add_argument("--pixel_fills", action="store_true",
                        help="also the pixel-space diffusion fill arms (NOT BUILT: says so)")
    parser.add_argument("--executor", choices=("local", "pool", "ray"), default="pool",
                        help="where the runs go (default pool: --task_cpus cores each, in "
                             "worker processes that keep TensorFlow and the decoded images)")
    parser.add_argument("--task_cpus", type=float, default=1.0,
                        help="cores (threads) per run with the pool or Ray (default 1: two "
                             "runs at once on 2 cores)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: checks that every arm runs, measures nothing")
    args = parser.parse_args(argv)
    if min(args.imbalance) < 1:
        parser.error("--imbalance must be at least 1")
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    arms = args.arms or default_arms()
    if args.pixel_fills:
        pixel_fills_stub()

    from benchmarks.bench_evidence import print_tables
    from classifier.comparison import run_compare
    from cli.flags import ConfigError, config_from_dict, validate_config
    from cli.tables import format_table
    from config import CompareConfig
    from sample_data.__main__ import build

    work = Path(args.work_dir)
    given = {"number_epochs": args.epochs, "batch_size": args.batch_size,
             "bootstrap": args.bootstrap, "feature_fill_steps": args.feature_fill_steps,
             "executor": args.executor, "task_cpus": args.task_cpus}
    overrides = {k: v for k, v in given.items() if v is not None}
    start, timings = time.time(), []
    for imbalance in args.imbalance:
        tag = f"if{imbalance:g}"
        t0 = time.time()
        data = work / f"fmnist_lt_{tag}"
        summary = build(data, None, args.data_seed, "fmnist_lt", imbalance)
        t_data = time.time() - t0
        print(f"\n[bench_longtail] Fashion-MNIST-LT IF {imbalance:g}: training images per "
              f"class {summary['counts']} ({sum(summary['counts'])}), test 10,000; "
              f"built in {t_data:.0f} s; arms {arms}, seeds {seeds}", flush=True)
        settings = compare_settings(data, work / f"compare_{tag}", arms, seeds, args.quick,
                                    **overrides)
        try:
            cfg = config_from_dict(CompareConfig, settings)
            validate_config(cfg)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        t1 = time.time()
        # compare makes the CIs once, when every run has finished
        _, _, failures = run_compare(cfg, verbose=2)
        timings.append((imbalance, t_data, time.time() - t1))
        results = Path(cfg.out_dir)
        print(f"\n=== Fashion-MNIST-LT, imbalance {imbalance:g} "
              f"{'(QUICK: tiny settings, the numbers mean nothing) ' if args.quick else ''}===")
        print_tables(results)
        print_shots(results, arms)
        times = run_times(results / "runs.csv")
        print(f"\nwall time per arm x seed (s, the run's own training + evaluation; runs "
              f"finished earlier keep their first time):")
        print(format_table(times, list(dict.fromkeys(k for r in times for k in r))))
        if failures:
            print(f"{len(failures)} problem(s): " + "; ".join(failures))
    print("\n[bench_longtail] wall time: " + ", ".join(
        f"IF {i:g} data {d:.0f} s + compare {c / 60:.1f} min" for i, d, c in timings)
        + f"; total {(time.time() - start) / 60:.1f} min (finished runs are skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
