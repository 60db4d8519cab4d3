"""CLI: grid search over training settings, with seeds and repeats; resumable.

    python3 -m classifier.grid_search --train_dir data/train --test_dir data/test \
        --grid learning_rate=1e-3,1e-4 batch_size=16,32 --seeds 0 1 --repeats 2
"""
from __future__ import annotations

import sys

from classifier.experiments import grid_jobs, run_grid_search
from classifier.runs import is_finished
from cli.errors import EXIT_OK, EXIT_SOME_FAILED, one_line_errors
from cli.flags import format_config, parse_config
from config import GridSearchConfig


@one_line_errors
def main(argv=None) -> int:
    cfg, ns = parse_config(GridSearchConfig, argv, prog="python3 -m classifier.grid_search")
    jobs = grid_jobs(cfg)
    if ns._dry_run:
        print(format_config(cfg))
        done = sum(is_finished(j["run_dir"]) for j in jobs)
        print(f"{len(jobs)} runs ({done} finished earlier, skipped):")
        for j in jobs:
            print(f"  {j['run_dir']}  seed={j['seed']}")
        return EXIT_OK
    summary, failures = run_grid_search(cfg)
    if not summary.empty:
        cols = ["combo", "set", "n", "accuracy_mean", "accuracy_std", "macro_f1_mean",
                "macro_f1_std"]
        print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"tables in {cfg.out_dir}/runs.csv and summary.csv; best models in {cfg.out_dir}/best/")
    return EXIT_SOME_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
