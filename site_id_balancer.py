"""Stage 1: equalise the sites of every label with rotations + flips.

    python3 site_id_balancer.py --in_dir photos [--out_dir diffusion_data] [--theta 5]
        [--multiplier 6] [--fact 1.3] [--labels 1 2 3] [--seed 42] [--dry-run]

Defaults live in config.py (BalancerConfig); `--help` lists every flag.
"""
from __future__ import annotations

import sys

from balancing.run import check_out_dir, format_plan, plan_balance, run_balance
from cli.errors import one_line_errors
from cli.flags import format_config, parse_config
from config import BalancerConfig
from dataset.scan import DatasetError
from runtime.parallel import worker_pool


def _print_skipped(skipped: list[tuple[str, str]], limit: int = 20) -> None:
    if skipped:
        print(f"skipped {len(skipped)} file(s):")
        for path, reason in skipped[:limit]:
            print(f"  {path}: {reason}")
        if len(skipped) > limit:
            print(f"  ... and {len(skipped) - limit} more (see skipped.csv)")


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(BalancerConfig, argv, prog="site_id_balancer.py")
    try:
        check_out_dir(cfg)
        with worker_pool(cfg.workers) as pool:
            plan = plan_balance(cfg, pool=pool)
            print(format_config(cfg))
            print(format_plan(plan))
            _print_skipped(plan.scan.skipped)
            if ns._dry_run:
                print("dry run: nothing written")
                return 0
            result = run_balance(plan, pool=pool)
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {result.written} image(s), {result.reused} already present, into "
          f"{cfg.out_dir} (manifest.csv, summary.txt, balance_counts.png)")
    if result.errors:
        print(f"{len(result.errors)} image(s) failed:", file=sys.stderr)
        for err in result.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
