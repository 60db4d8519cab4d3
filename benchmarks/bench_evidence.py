"""The evidence benchmark: do generated images beat what the real images alone can give?

Runs the whole pipeline (run_pipeline.py) on 6 classes of ../shared/data/custom_coco in two
categories (the smaller one is filled; the pipeline's sdedit stage fills the same gap with
SDEdit variations of real images, its classic_fill stage with classic augmentations, same
plan and counts as stage 3), and trains the same classifier in every arm over the same seeds
and step budget:

    original, rebalanced (class-balanced batches), classic (online augmentation, strength
    chosen on validation), classic_fill, diffusion_fill, sdedit_fill, gan_fill, each fill
    +classic, diffusion_fill+diagen (DIAGen weights).

gan_fill is the other generator family: a conditional GAN (train_all.py --model gan) trained
on the same data at the same image size, widths, batch and step budget as the diffusion
stage (about its wall time on CPU), sampled by stage 3 with the pipeline's plan and seed into
work_dir/gan_fill_data and compared through the pipeline's fill_dirs (--no_gan skips it).
sd_fill (and +classic) joins when Stable Diffusion 3 weights load (--sd_preset: the
pipeline's --sd_fill, "a photo of a {label}", strength 0.6, guidance 7); otherwise the output
says in one line why that arm is absent.

Besides the test split, every arm is tested out of distribution on work_dir/ood_corrupted:
the test split with one common corruption per image (robustness.shifted; --ood none skips it).

It prints, per arm and test set: balanced accuracy, macro-F1 and tail-label recall (mean
± std over seeds, 95% bootstrap CI over seeds and test images); the paired differences of
every arm to the strongest non-generative arm (best of original / rebalanced / classic /
classic_fill by mean balanced accuracy) with their CIs and Holm-corrected p; and the KID of
the generated images against real test images beside that of real training images.

With --generator_seeds N the diffusion stage is trained N times with different seeds, so the
generator's own variance enters the comparison: run/ is the full pipeline (generator seed
42, the pipeline's seed), run_gen<k>/ for k = 1 .. N-1 the same pipeline with the diffusion
seed 42 + k that trains only the generative arms (stage 3's plan and seed, the classic
strength chosen in run/ and the classifier seeds stay the same). The tables are then pooled
(pooled_results/): a generative arm's runs are (generator seed x classifier seed) pairs, its
CI resamples generators and classifier seeds (crossed), and its paired difference to the
reference is taken per classifier seed on its mean over the generators.

The photos are read where they are (the work folder holds links to the 6 class folders,
never copies). Sites: these photos come from no fixed camera, so each label is one site (the
default rule: the file-name prefix before the first '_', the class name here).

    .venv/bin/python benchmarks/bench_evidence.py                 # 5 seeds; long on 2 cores
    .venv/bin/python benchmarks/bench_evidence.py --quick         # tiny smoke run, minutes
    .venv/bin/python benchmarks/bench_evidence.py --dataset fmnist  # long-tail Fashion-MNIST
    .venv/bin/python benchmarks/bench_evidence.py --work_dir /tmp/evidence --seeds 0 1 2 \
        --ood_test_dirs path/to/ood_set        # besides the built-in corrupted test copy
    .venv/bin/python benchmarks/bench_evidence.py --generator_seeds 2   # 2 generators x 5 seeds
    .venv/bin/python benchmarks/bench_evidence.py --work_dir /tmp/ev_lb1 \
        --overrides '{"diffusion": {"label_balance": 1}}'   # another generator recipe

Re-running with the same --work_dir skips the finished stages and runs (--redo STAGE runs a
stage whose settings or code changed, and the later ones, again).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "custom_coco"
# Vehicles (61 training photos) vs kitchen things (133): 72 new vehicle images close the gap.
CATEGORIES = [["bicycle", "car", "motorcycle"], ["bottle", "spoon", "knife"]]
# Long-tail Fashion-MNIST: tops (620 training images) vs footwear (120), footwear filled.
FMNIST_CATEGORIES = [["1", "2", "3"], ["4", "5", "6"]]
ARMS = ["original", "rebalanced", "classic", "classic_fill", "diffusion_fill", "sdedit_fill",
        "classic_fill+classic", "diffusion_fill+classic", "sdedit_fill+classic",
        "diffusion_fill+diagen"]
GAN_ARMS = ["gan_fill", "gan_fill+classic"]
SD_ARMS = ["sd_fill", "sd_fill+classic"]
# The pipeline's seed: stage 2 of run/ trains with it; run_gen<k>/ with GEN_SEED + k.
GEN_SEED = 42


def settings(quick: bool, seeds: list[int], ood_test_dirs: list[str],
             categories: list[list[str]] = CATEGORIES, input_shape: int = 64) -> dict:
    """The pipeline's JSON settings: CPU-sized, or tiny with `quick` (a smoke run)."""
    # 3000 steps of 32: the budget benchmarks/bench_generator.py measured on long-tail
    # Fashion-MNIST (GAN-test of the footwear 79-108% of real at guidance 3).
    steps = 20 if quick else 3000
    compare = {"backbone": "small_cnn", "input_shape": 32 if quick else input_shape,
               "number_epochs": 3 if quick else 50, "early_stop_patience": 3 if quick else 12,
               "batch_size": 32, "learning_rate": 1e-3, "seeds": seeds, "variants": ARMS,
               "classic_strengths": [0.5, 1.0] if quick else [0.25, 0.5, 1.0],
               "bootstrap": 300 if quick else 2000}
    if ood_test_dirs:
        compare["ood_test_dirs"] = ood_test_dirs
    return {
        "pipeline": {"categories": [",".join(c) for c in categories], "sdedit_fill": True},
        # The generator recipe: one conditional model on all 6 classes, a step budget
        # (benchmarks/bench_generator.py measures quality against it).
        "diffusion": {"conditional": True, "image_size": [32, 32],
                      "widths": [16, 32] if quick else [32, 64, 96],
                      "block_depth": 1 if quick else 2, "embedding_dims": 32,
                      "batch_size": 16 if quick else 32,
                      "train_steps": steps, "learning_rate": 1e-3,
                      "kid_every": 0 if quick else 5, "kid_images": 48,
                      "kid_diffusion_steps": 10, "sample_every": 0 if quick else 5,
                      "early_stop_patience": 1000},
        "augmentation": {"generate_diffusion_steps": 5 if quick else 50},
        "classic_fill": {"preset": "upright"},   # vehicles and kitchen things have an up
        "compare": compare,
    }


def with_overrides(base: dict, overrides: str) -> dict:
    """`base` with the JSON `overrides` merged in by pipeline section (a generator recipe
    to compare, e.g. '{"diffusion": {"label_balance": 1}}'); unknown sections are refused.

    Example:
        >>> with_overrides({"diffusion": {"train_steps": 3000}}, '{"diffusion": {"seed": 7}}')
        {'diffusion': {'train_steps': 3000, 'seed': 7}}
    """
    try:
        extra = json.loads(overrides)
    except json.JSONDecodeError as err:
        raise ValueError(f"--overrides is not JSON: {err}") from None
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise ValueError("--overrides must map pipeline sections to settings, e.g. "
                         '\'{"diffusion": {"label_balance": 1}}\'')
    from pipeline.stages import SECTIONS
    known = ["pipeline", *SECTIONS]
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise ValueError(f"--overrides: unknown section {unknown[0]!r}; one of "
                         f"{', '.join(known)}")
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def gan_fill(work: Path, train: Path, base: dict) -> Path:
    """The gan_fill arm's images: a conditional GAN with the diffusion stage's data, size,
    widths, batch and step budget, sampled by stage 3 with the pipeline's plan and seed.
    Finished work is kept (train_all.py keeps a finished run with the same settings, stage 3
    resumes its folder)."""
    import diffusion_augmentation
    import train_all
    d = base["diffusion"]
    models, out = work / "gan_models", work / "gan_fill_data"
    flags = ["--in_dir", str(train), "--out_dir", str(models), "--conditional", "--model", "gan",
             "--image_size", *map(str, d["image_size"]), "--widths", *map(str, d["widths"]),
             "--batch_size", str(d["batch_size"]), "--train_steps", str(d["train_steps"]),
             "--kid_every", str(d["kid_every"]), "--kid_images", str(d["kid_images"]),
             "--sample_every", str(d["sample_every"]), "--seed", str(GEN_SEED)]
    if train_all.main(flags) != 0:
        raise SystemExit("error: the GAN did not train (see above)")
    run = sorted(models.glob("conditional_*"))[-1]
    code = diffusion_augmentation.main(
        ["--in_dir", str(train), "--out_dir", str(out), "--weight_paths", str(run),
         "--categories", *base["pipeline"]["categories"], "--seed", str(GEN_SEED)])
    if code != 0:
        raise SystemExit("error: stage 3 could not sample the GAN (see above)")
    return out


def sd_absent_reason(preset: str) -> str | None:
    """None when the Stable Diffusion 3 preset loads (the sd_fill arm can run), else why not."""
    from pretrained.sd3 import PresetError, load_sd3_task
    try:
        load_sd3_task(preset, "img2img")
    except PresetError as err:
        return str(err)
    return None


def generator_settings(base: dict, gen_seed: int, strength: float | None) -> dict:
    """The settings of a run_gen<k>/ pipeline: `base` with the diffusion stage's seed set and
    only the generative arms compared (the others do not depend on the generator), at the
    classic strength run/ chose (no second strength search)."""
    from classifier.arms import is_generative, uses_classic
    out = json.loads(json.dumps(base))
    out["diffusion"]["seed"] = gen_seed
    out["compare"].pop("fill_dirs", None)  # the GAN is trained once, in run/'s arms only
    out["pipeline"]["sd_fill"] = False     # so are the pretrained model's edits
    arms = [a for a in base["compare"]["variants"]
            if is_generative(a) and a.split("+")[0] not in ("gan_fill", "sd_fill")]
    out["compare"]["variants"] = arms
    if strength is not None and any(uses_classic(a) for a in arms):
        out["compare"]["classic_strengths"] = [strength]
    return out


def chosen_strength(results: Path) -> float | None:
    """The classic augmentation strength a finished comparison used (its classic arm's)."""
    for config in sorted(results.glob("classic/seed*/config.json")):
        return float(json.loads(config.read_text())["augm_strength"])
    return None


def pool(work: Path, runs: list[tuple[int, Path]], bootstrap: int) -> Path:
    """Pools the comparisons of every generator seed into work/pooled_results (runs.csv,
    summary.csv, paired.csv, compare.md) and returns that folder."""
    import pandas as pd

    from classifier.comparison import (compare_tables, markdown_table, paired_markdown,
                                       pool_generator_runs, tail_labels_of)
    from classifier.report import write_csv
    from dataset.atomic import atomic_write_text
    out = work / "pooled_results"
    out.mkdir(parents=True, exist_ok=True)
    rows, preds = pool_generator_runs([(g, d / "results") for g, d in runs])
    tail = tail_labels_of(runs[0][1] / "results")
    summary, paired = compare_tables(rows, preds, tail, bootstrap)
    write_csv(out / "runs.csv", pd.DataFrame(rows))
    write_csv(out / "summary.csv", summary)
    write_csv(out / "paired.csv", paired)
    atomic_write_text(out / "compare.md", (
        f"# Classifier comparison pooled over generator seeds "
        f"{', '.join(str(g) for g, _ in runs)}\n\nGenerative arms: n runs = generator seeds x "
        f"classifier seeds; non-generative arms: classifier seeds (from {runs[0][1]}). "
        f"Tail labels: {', '.join(tail)}.\n\n" + markdown_table(summary) + "\n\n"
        + (paired_markdown(paired) if not paired.empty else "") + "\n"))
    return out


def link_subset(work: Path) -> tuple[Path, Path]:
    """work/data/{train,test}/<class> as symbolic links to the shared class folders: the
    pipeline sees only the 6 classes, and no photo is copied."""
    for split in ("train", "test"):
        for label in (lab for cat in CATEGORIES for lab in cat):
            src, dst = DATA / split / label, work / "data" / split / label
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() and dst.resolve() == src.resolve():
                continue
            if dst.exists() or dst.is_symlink():
                raise SystemExit(f"error: {dst} exists and is not a link to {src}; choose "
                                 f"another --work_dir")
            dst.symlink_to(src, target_is_directory=True)
    return work / "data" / "train", work / "data" / "test"


def _ci(lo: float, hi: float, signed: bool = False) -> str:
    if lo != lo:
        return ""
    return f" [{lo:+.3f}, {hi:+.3f}]" if signed else f" [{lo:.3f}, {hi:.3f}]"


def _cell(r: dict, m: str) -> str:
    std = r[f"{m}_std"]
    return (f"{r[f'{m}_mean']:.3f}" + ("" if std != std else f" ± {std:.3f}")
            + _ci(r.get(f"{m}_ci_low", float("nan")), r.get(f"{m}_ci_high", float("nan"))))


def _runs_cell(r: dict) -> str:
    """'5', or '10 (2 generators x 5 seeds)' for an arm pooled over generator seeds."""
    n, g = int(r["n"]), r.get("generators", 1)
    g = 1 if g != g or g is None else int(g)
    return str(n) if g <= 1 else f"{n} ({g} generators x {n // g} seeds)"


def print_tables(results: Path) -> None:
    """Per test set: the arms with CIs, then the paired differences to the reference."""
    import pandas as pd

    from cli.tables import format_table
    summary = pd.read_csv(results / "summary.csv")
    paired_path = results / "paired.csv"
    paired = pd.read_csv(paired_path) if paired_path.stat().st_size > 1 else pd.DataFrame()
    for test_set in [s for s in dict.fromkeys(summary["set"]) if s != "val"]:
        rows = [{"arm": r["variant"] + (" *" if r.get("reference") in (True, "True") else ""),
                 "runs": _runs_cell(r), "balanced accuracy": _cell(r, "balanced_accuracy"),
                 "macro-F1": _cell(r, "macro_f1"), "tail recall": _cell(r, "tail_recall")}
                for r in summary[summary["set"] == test_set].to_dict("records")]
        pooled = "generators" in summary and (summary["generators"] > 1).any()
        print(f"\n{test_set}: mean ± std over runs [95% bootstrap CI over "
              + ("generator seeds, classifier seeds" if pooled else "seeds")
              + " and test images]; * = strongest non-generative arm (the reference)"
              + ("; a generative arm's runs are (generator seed x classifier seed) pairs"
                 if pooled else ""))
        print(format_table(rows, list(rows[0])))
        if paired.empty:
            continue
        sub = paired[(paired["set"] == test_set)
                     & paired["metric"].isin(["balanced_accuracy", "macro_f1", "tail_recall"])]
        p_rows = [{"arm": p["variant"], "vs": p["baseline"], "metric": p["metric"],
                   "diff [95% CI]": f"{p['mean_diff']:+.3f}"
                   + _ci(p["ci_low"], p["ci_high"], True),
                   "w/t/l": f"{p['wins']}/{p['ties']}/{p['losses']}",
                   "p": "n/a" if p["p_value"] != p["p_value"] else f"{p['p_value']:.3g}",
                   "Holm p": "n/a" if p["p_holm"] != p["p_holm"] else f"{p['p_holm']:.3g}",
                   "verdict": p["verdict"]} for p in sub.to_dict("records")]
        if p_rows:
            print(f"\n{test_set}: paired differences to the reference (same classifier "
                  f"seeds{'; a pooled arm enters with its mean over its generators' if pooled else ''}"
                  f"; Holm across arms per metric)")
            print(format_table(p_rows, list(p_rows[0])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", choices=("coco", "fmnist"), default="coco",
                        help="coco: 6 classes of custom_coco (vehicles filled); fmnist: the "
                             "long-tail Fashion-MNIST arrangement (grey; tops 300/200/120, "
                             "footwear 60/40/20 filled)")
    parser.add_argument("--work_dir", default="/tmp/bench_evidence")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="classifier seeds (default: 0 1 2 3 4; --quick: 0 1)")
    parser.add_argument("--ood_test_dirs", nargs="+", default=[],
                        help="out-of-distribution test folders (one sub-folder per class)")
    parser.add_argument("--ood", choices=("corrupted", "none"), default="corrupted",
                        help="corrupted (default): also test on work_dir/ood_corrupted, the "
                             "test split with one common corruption per image (fog, low "
                             "light, blur, noise, JPEG, ...; ImageNet-C severity 3)")
    parser.add_argument("--generator_seeds", type=int, default=1, metavar="N",
                        help="train the diffusion stage N times (seeds 42, 43, ...; run/, "
                             "run_gen1/, ...) and pool: each generative arm's runs are then "
                             "(generator seed x classifier seed) pairs (default 1)")
    parser.add_argument("--no_gan", action="store_true",
                        help="leave out the gan_fill arms (a conditional GAN's fill)")
    parser.add_argument("--sd_preset", default="stable_diffusion_3_medium",
                        help="Stable Diffusion 3 preset (name or local folder) of the sd_fill "
                             "arms; they run when it loads")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings: checks that every arm runs, measures nothing")
    parser.add_argument("--overrides", default=None, metavar="JSON",
                        help="settings merged into the pipeline's, by section, to measure "
                             "another recipe, e.g. '{\"diffusion\": {\"label_balance\": 1}}' "
                             "(use a new --work_dir)")
    parser.add_argument("--redo", default=None, metavar="STAGE",
                        help="run_pipeline.py --redo: run this stage and the later ones again "
                             "(after the code or settings of a stage changed)")
    args = parser.parse_args(argv)
    if args.dataset == "coco" and not DATA.is_dir():
        print(f"error: {DATA} not found (the shared custom_coco photos)", file=sys.stderr)
        return 2
    if args.generator_seeds < 1:
        parser.error("--generator_seeds must be at least 1")
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    work = Path(args.work_dir)
    if args.dataset == "coco":
        categories, input_shape = CATEGORIES, 64
        train, test = link_subset(work)
    else:
        from sample_data.__main__ import build
        categories, input_shape = FMNIST_CATEGORIES, 32
        build(work / "fmnist_longtail", 32, 0, "longtail")
        train, test = work / "fmnist_longtail" / "train", work / "fmnist_longtail" / "test"
    ood_dirs = list(args.ood_test_dirs)
    if args.ood == "corrupted":
        from robustness.shifted import build_shifted_set
        ood_dirs.append(str(build_shifted_set(test, work / "ood_corrupted", severity=3)))
    start = time.time()
    base = settings(args.quick, seeds, ood_dirs, categories, input_shape)
    if args.overrides:
        try:
            base = with_overrides(base, args.overrides)
        except ValueError as err:
            parser.error(str(err))
    if not args.no_gan:
        base["compare"]["fill_dirs"] = [f"gan_fill={gan_fill(work, train, base)}"]
        base["compare"]["variants"] = [*base["compare"]["variants"], *GAN_ARMS]
    sd_absent = sd_absent_reason(args.sd_preset)
    if sd_absent is None:
        base["pipeline"]["sd_fill"] = True
        base["sd"] = {"sd_preset": args.sd_preset, "strength": 0.6, "guidance_scale": 7.0,
                      "generate_diffusion_steps": 28}
        base["compare"]["variants"] = [*base["compare"]["variants"], *SD_ARMS]
    else:
        print(f"[bench_evidence] sd_fill arms absent: {sd_absent}", flush=True)

    import run_pipeline
    runs: list[tuple[int, Path]] = []
    for k in range(args.generator_seeds):
        # run/ first: it chooses the classic strength the other generators' runs reuse.
        out = work / ("run" if k == 0 else f"run_gen{k}")
        cfg = base if k == 0 else generator_settings(base, GEN_SEED + k,
                                                     chosen_strength(work / "run" / "results"))
        config = work / ("settings.json" if k == 0 else f"settings_gen{k}.json")
        config.write_text(json.dumps(cfg, indent=2))
        if args.generator_seeds > 1:
            print(f"\n[bench_evidence] generator seed {GEN_SEED + k}: {out}", flush=True)
        code = run_pipeline.main(["--in_dir", str(train), "--test_dir", str(test),
                                  "--out_dir", str(out), "--config", str(config)]
                                 + (["--redo", args.redo] if args.redo else []))
        if code != 0:
            return code
        runs.append((GEN_SEED + k, out))
    minutes = (time.time() - start) / 60
    gens = (f", generator seeds {[g for g, _ in runs]} (generative arms: each generator x "
            f"each classifier seed)" if len(runs) > 1 else "")
    what = ("custom_coco (6 classes" if args.dataset == "coco"
            else "long-tail Fashion-MNIST (grey")
    print(f"\nEvidence on {what}, categories {categories}), classifier seeds "
          f"{seeds}{gens}"
          f"{' (QUICK: tiny settings, the numbers mean nothing)' if args.quick else ''}, "
          f"{minutes:.1f} min (finished stages and runs are skipped)")
    results = (pool(work, runs, base["compare"]["bootstrap"]) if len(runs) > 1
               else work / "run" / "results")
    print_tables(results)
    if sd_absent is not None:
        print(f"\nsd_fill arms absent: {sd_absent}")
    from cli.tables import format_table
    for gen, out in runs:
        kid_path = out / "report_assets" / "kid.json"
        if not kid_path.is_file():
            continue
        kid = json.loads(kid_path.read_text())
        print(f"\nKID against real test images ({kid['features']} features, 64x64)"
              + (f", generator seed {gen}" if len(runs) > 1 else "") + ":")
        kid_rows = [{"label": r["label"], "generated": r["n_generated"],
                     "KID generated": f"{r['kid_generated']:.4f}",
                     "KID real train": f"{r['kid_real_train']:.4f}"} for r in kid["rows"]]
        if kid_rows:
            print(format_table(kid_rows, list(kid_rows[0])))
    print(f"\ntables: {results / 'compare.md'}; report"
          + (f"s: {', '.join(str(out / 'report.html') for _, out in runs)}" if len(runs) > 1
             else f": {work / 'run' / 'report.html'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
