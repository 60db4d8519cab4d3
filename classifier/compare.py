"""CLI: did balancing + synthetic images help? The same classifier trained on (a) the
original data, (b) the original data with classic augmentation, (c) balanced + synthetic
data, over the same seeds; mean, std and a paired comparison on each test set.

    python3 -m classifier.compare --train_dir data/train --balanced_dir balanced_data \
        --test_dir data/test --ood_test_dirs data/new_site --seeds 0 1 2
"""
from __future__ import annotations

import sys

from cli.flags import ConfigError, format_config, parse_config
from dataset.scan import DatasetError


def main(argv=None) -> int:
    from config import CompareConfig
    cfg, ns = parse_config(CompareConfig, argv, prog="python3 -m classifier.compare")
    from classifier.experiments import compare_jobs, markdown_table, run_compare
    from classifier.runs import is_finished
    try:
        jobs = compare_jobs(cfg)
        if ns._dry_run:
            print(format_config(cfg))
            for j in jobs:
                state = "finished, skipped" if is_finished(j["run_dir"]) else "to run"
                print(f"  {j['run_dir']}  augm_type={j['cfg'].augm_type}  ({state})")
            return 0
        summary, _ = run_compare(cfg)
    except (ConfigError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not summary.empty:
        print(markdown_table(summary))
    print(f"tables in {cfg.out_dir}/summary.csv, paired.csv, compare.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
