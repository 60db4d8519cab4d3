"""Stage 1: equalise the sites of every label with rotations + flips.

    python3 site_id_balancer.py --in_dir photos [--out_dir diffusion_data] [--theta 5]
        [--multiplier 6] [--fact 1.3] [--labels 1 2 3] [--seed 42] [--dry-run]

Defaults live in config.py (BalancerConfig); `--help` lists every flag.
"""
from __future__ import annotations

import sys

from balancing.run import balancer_pool, check_out_dir, format_plan, plan_balance, run_balance
from cli.errors import EXIT_OK, one_line_errors, report_failures, show_plan
from cli.flags import parse_config
from config import BalancerConfig


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(BalancerConfig, argv, prog="site_id_balancer.py")
    check_out_dir(cfg)
    with balancer_pool(cfg.workers) as pool:
        plan = plan_balance(cfg, pool=pool)
        if show_plan(cfg, format_plan(plan), plan.scan.skipped, ns._dry_run, "skipped.csv"):
            return EXIT_OK
        result = run_balance(plan, pool=pool)
    print(f"wrote {result.written} image(s), {result.reused} already present, into "
          f"{cfg.out_dir} (manifest.csv, summary.txt, balance_counts.png)")
    return report_failures(result.errors)


if __name__ == "__main__":
    sys.exit(main())
