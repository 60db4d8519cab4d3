"""Runs the whole pipeline: site balancing -> diffusion training -> gap filling (and, with
--sdedit_fill / --sd_fill, the same gap filled with SDEdit variations of real images / with
Stable Diffusion 3 edits of them) -> the same gap filled with classic augmentations
(classic_fill) -> classifier comparison -> report.html.

    python3 run_pipeline.py --in_dir data/train --test_dir data/test --out_dir run1
    python3 run_pipeline.py --in_dir data/train --test_dir data/test --config settings.json
    python3 run_pipeline.py ... --dry-run          # the stages, their commands and settings

`--config` is one JSON file with a "pipeline" section (these flags) and one section per
stage: "balancer", "diffusion", "augmentation", "sdedit", "sd", "classic_fill", "compare"
(any setting of that stage's command). Re-running skips the stages already done; a failing
stage stops the run with its cause. Prints the path of report.html at the end.
"""
from __future__ import annotations

import sys

from cli.errors import EXIT_BAD_INPUT, EXIT_OK, one_line_errors
from cli.flags import parse_config
from config import PipelineConfig
from pipeline.runner import run_pipeline
from pipeline.stages import PipelineError, read_sections


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(PipelineConfig, argv, prog="run_pipeline.py", section="pipeline")
    try:
        report = run_pipeline(cfg, read_sections(ns._config_json), dry_run=ns._dry_run)
    except PipelineError as err:  # in full: a failed stage's message ends with its log's tail
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if report is not None:
        print(f"report: {report}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
