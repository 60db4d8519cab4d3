"""CLI: do generated images help more than what real images alone can give? The same
classifier, seeds and step budget in every arm (original, rebalanced, classic augmentation
tuned on validation, classic fill, diffusion fill, ...); bootstrap CIs and Holm-corrected
paired tests against the strongest non-generative arm.

    python3 -m classifier.compare --train_dir data/train --balanced_dir balanced_data \
        --classic_fill_dir classic_fill_data --test_dir data/test \
        --ood_test_dirs data/new_site --seeds 0 1 2 3 4
"""
from __future__ import annotations

import sys

from classifier.comparison import (chosen_strength, compare_jobs, markdown_table, recipe_jobs,
                                   run_compare, source_counts, step_budget, strength_jobs)
from classifier.runs import is_finished
from cli.errors import EXIT_OK, EXIT_SOME_FAILED, one_line_errors
from cli.flags import format_config, parse_config
from config import CompareConfig


@one_line_errors
def main(argv=None) -> int:
    cfg, ns = parse_config(CompareConfig, argv, prog="python3 -m classifier.compare")
    if ns._dry_run:
        counts = source_counts(cfg)
        steps = step_budget(cfg, cfg.arms(), counts)
        selection = strength_jobs(cfg, steps)
        strength = chosen_strength(cfg, selection)
        jobs, waiting = compare_jobs(cfg, strength, steps, counts)
        search = recipe_jobs(cfg, strength, steps) if cfg.recipe_grid else []
        print(format_config(cfg))
        print(f"every arm: {cfg.number_epochs} epochs x {steps} steps of "
              f"{cfg.batch_size} images")
        if search:
            print(f"recipe search on seed {cfg.recipe_seed} (validation only), then every "
                  f"generative arm runs with its best recipe:")
        for j in selection + search + jobs:
            state = "finished, skipped" if is_finished(j["run_dir"]) else "to run"
            c = j["cfg"]
            augm = c.augm_type + ("" if c.augm_type == "base"
                                  else f" strength {c.augm_strength:g}")
            print(f"  {j['run_dir']}  augm_type={augm} class_balanced={c.class_balanced}"
                  f" weighting={c.sample_weighting}"
                  + (f" from_run={c.from_run}" if c.from_run else "") + f"  ({state})")
        for arm in waiting:
            print(f"  {cfg.out_dir}/{arm}/seed*  (after the classic strength search)")
        return EXIT_OK
    summary, _, failures = run_compare(cfg)
    if not summary.empty:
        print(markdown_table(summary))
    print(f"tables in {cfg.out_dir}/summary.csv, paired.csv, compare.md")
    return EXIT_SOME_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
