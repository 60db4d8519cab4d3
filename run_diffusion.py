"""Stage 2: train a DDIM diffusion model on one label's images, generate, or inpaint.

    python3 run_diffusion.py --in_dir diffusion_data/L2 --num_epochs 100
    python3 run_diffusion.py --load_and_train --model_dir results/L2_20250101-120000_ab12 --num_epochs 200
    python3 run_diffusion.py --runtime inference --model_dir results/L2_... --images_to_generate 100 --out_dir generated
    python3 run_diffusion.py --runtime inpainting --model_dir results/L2_... --inpainting_dir inpainting_data --out_dir inpainted
    python3 run_diffusion.py --in_dir /shared/data --distribute multiworker --executor ray --num_workers 4

Defaults live in config.py (DiffusionConfig); `--help` lists every flag, `--dry-run` prints
the resolved settings and the plan and writes nothing.
"""
from __future__ import annotations

import os
import sys

from cli.errors import EXIT_OK, one_line_errors
from cli.flags import format_config, parse_config
from config import DiffusionConfig
from diffusion.inference import find_inpainting_pairs, generate_to_folder, inpaint_folder
from diffusion.training import describe_plan, read_run, train
from runtime.jobs import run_workers


def describe(cfg: DiffusionConfig) -> str:
    """The plan of a run, from file names and config files only (for --dry-run)."""
    if cfg.runtime == "training":
        return describe_plan(cfg)
    saved, meta = read_run(cfg.model_dir)
    if cfg.runtime == "inference":
        names = cfg.generate_labels or meta.get("_class_names") or [meta.get("_label")]
        per = " per label" if saved.conditional else ""
        return (f"would generate {cfg.images_to_generate} images{per} ({', '.join(names)}) with "
                f"{cfg.model_dir}, {cfg.generate_diffusion_steps} DDIM steps, eta {cfg.eta}, "
                f"seed {cfg.seed}, into {cfg.out_dir}/ (+ manifest.csv)")
    pairs = find_inpainting_pairs(cfg.inpainting_dir)
    return (f"would inpaint {len(pairs)} image(s) from {cfg.inpainting_dir} with "
            f"{cfg.model_dir} (RePaint: {cfg.generate_diffusion_steps} steps, jump_length "
            f"{cfg.jump_length}, jump_n_sample {cfg.jump_n_sample}) into {cfg.out_dir}/inpainted/")


def run_on_ray_workers(cfg: DiffusionConfig, argv: list[str]) -> int:
    """This command again as cfg.num_workers Ray workers, each given its TF_CONFIG."""
    print(f"starting {cfg.num_workers} workers on Ray for --distribute multiworker")
    codes = run_workers([sys.executable, "run_diffusion.py", *argv], cfg.num_workers,
                        cfg.ray_address, cfg.task_cpus, cfg.task_gpus)
    print(f"workers' exit codes: {codes} (worker 0, the chief, wrote the run folder)")
    return 0 if all(code == 0 for code in codes) else 1


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse_config(DiffusionConfig, argv, prog="run_diffusion.py")
    if ns._dry_run:
        print(format_config(cfg))
        print(describe(cfg))
        return EXIT_OK
    if cfg.runtime == "training" and cfg.distribute == "multiworker" \
            and cfg.executor == "ray" and "TF_CONFIG" not in os.environ:
        return run_on_ray_workers(cfg, sys.argv[1:] if argv is None else argv)
    if cfg.runtime == "training":
        given = {k for k in vars(ns) if not k.startswith("_")}
        res = train(cfg, given=given)
        best = "n/a" if res.best_value is None else f"{res.best_value:.4g}"
        print(f"trained {res.label}: {res.epochs_done} epochs, best {res.monitor} {best} "
              f"(epoch {res.best_epoch}), precision {res.precision}; run folder "
              f"{res.run_dir or 'written by the chief worker'}")
    elif cfg.runtime == "inference":
        paths = generate_to_folder(cfg)
        print(f"wrote {len(paths)} images to {cfg.out_dir} (manifest.csv lists them)")
    else:
        paths = inpaint_folder(cfg)
        print(f"wrote {len(paths)} inpainted images to {cfg.out_dir}/inpainted")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
