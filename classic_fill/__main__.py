"""Fill stage 3's gap with classic augmentations of real images.

    python3 -m classic_fill --in_dir ORIGINAL [--out_dir classic_fill_data]
        [--categories 1,2,3 4,5,6] [--balance categories|labels]
        [--preset upright|light|micro | --pipeline policy.yaml] [--seed 42]
        [--site_regex RX | --site_csv CSV] [--link_originals] [--workers N] [--dry-run]

Defaults live in classic_fill/config.py (ClassicFillConfig); `--help` lists every flag.
"""
from __future__ import annotations

import sys

from classic_fill.config import ClassicFillConfig
from classic_fill.run import check_output, format_plan, plan_classic_fill, run_classic_fill
from cli.errors import EXIT_OK, one_line_errors, report_failures, show_plan
from cli.flags import parse_config
from runtime.parallel import worker_pool


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(ClassicFillConfig, argv, prog="python3 -m classic_fill")
    check_output(cfg)  # before any work, dry run included
    with worker_pool(cfg.workers, threads=True) as pool:  # decode/encode release the GIL
        plan = plan_classic_fill(cfg, pool=pool)
        if show_plan(cfg, format_plan(plan), plan.scan.skipped, ns._dry_run, "skipped.csv"):
            return EXIT_OK
        result = run_classic_fill(plan, pool=pool)
    print(f"wrote {result.generated} augmented image(s) ({result.reused} already in the "
          f"manifest), copied {result.copied} original(s) into {cfg.out_dir} (manifest.csv, "
          f"summary.txt)")
    return report_failures(result.errors)


if __name__ == "__main__":
    sys.exit(main())
