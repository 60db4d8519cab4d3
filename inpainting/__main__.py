"""Command line: build an OOD test set by inpainting, and measure a classifier on it.

    python3 -m inpainting generate --test_dir data/test --out_dir ood --backend ddim \
        --model_dir models/1_... --mask_mode box --mask_region lower_third [--dry-run]
    python3 -m inpainting compare --model classifier_runs/RUN --test_dir data/test \
        --ood_dir ood/inpaint_box_lower_third --out_dir ood_compare

`generate` is the default command (flags first also run it). Bad settings or data are one
`error:` line and exit 2 (cli.errors). Defaults live in config.py
(InpaintingConfig, InpaintingCompareConfig); `--help` after a command lists every flag.
"""
from __future__ import annotations

import sys

from cli.errors import EXIT_OK, one_line_errors, show_plan
from cli.flags import format_config, parse_config
from cli.subcommands import dispatch
from config import InpaintingCompareConfig, InpaintingConfig

USAGE = """usage: python3 -m inpainting {generate,compare} [flags]   (COMMAND --help lists them)
  generate  inpaint (or img2img) new content into test images: OUT/<augm_type>/ is a
            complete out-of-distribution test set, with masks/ and manifest.csv
  compare   evaluate a classifier on the test set and on the OOD set, per class"""


def generate_main(argv: list[str]) -> int:
    # why: lazy dispatch, `compare` never needs the generation pipeline and its backends
    from inpainting.backends import build_backend
    from inpainting.run import format_plan, plan_inpainting, run_inpainting

    cfg, ns = parse_config(InpaintingConfig, argv, prog="python3 -m inpainting generate")
    plan = plan_inpainting(cfg)
    notes = "".join(f"\nnote: {note}" for note in plan.notes)
    if show_plan(plan.cfg, format_plan(plan) + notes, plan.scan.skipped, ns._dry_run):
        return EXIT_OK
    # loaded before anything is written: an unreachable preset fails at once
    backend = build_backend(plan.cfg, plan.models)
    result = run_inpainting(plan, backend)
    print(f"generated {result.generated} image(s) ({result.reused} already present), copied "
          f"{result.copied} unchanged, into {result.out_dir}/{plan.cfg.augm_type}/ "
          f"(masks/, manifest.csv{', samples.png' if result.sheet else ''})")
    return 0


def compare_main(argv: list[str]) -> int:
    # why: lazy dispatch, `generate` never needs the classifier evaluation
    from inpainting.compare import compare_ood, format_markdown

    cfg, ns = parse_config(InpaintingCompareConfig, argv, prog="python3 -m inpainting compare")
    if ns._dry_run:
        print(format_config(cfg))
        print(f"would evaluate {cfg.model} on {cfg.test_dir} and on {cfg.ood_dir}; write "
              f"compare.csv, compare.md, samples.png to {cfg.out_dir}")
        return 0
    result = compare_ood(cfg)
    print(format_markdown(result.rows))
    print(f"written: {', '.join(str(p) for p in result.files)}")
    return 0


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    return dispatch(argv, {"generate": generate_main, "compare": compare_main}, USAGE,
                    default="generate")


if __name__ == "__main__":
    sys.exit(main())
