"""The evidence benchmark: does diffusion augmentation help on real, imbalanced photos?

Runs the whole pipeline (run_pipeline.py) on 6 classes of ../shared/data/custom_coco in two
categories (the smaller one is filled with synthetic images), with CPU-sized settings, and
prints, over >= 3 seeds, test balanced accuracy and macro-F1 of the same classifier trained
on the original data, with classic augmentation, with the diffusion-generated images, and
with the same images weighted by a real-only classifier's calibrated confidence (DIAGen); the
baseline is the original arm of the same run. It also prints the KID of the generated images
against real test images next to the KID of real training images against them.

Sites: these photos come from no fixed camera, so each label is one site (the default rule:
the file-name prefix before the first '_', which is the class name here).

    .venv/bin/python benchmarks/bench_evidence.py                  # ~20 min on 2 cores
    .venv/bin/python benchmarks/bench_evidence.py --quick          # smoke run, ~4 min
    .venv/bin/python benchmarks/bench_evidence.py --work_dir /tmp/evidence --seeds 0 1 2 3 4

Re-running with the same --work_dir skips the finished stages.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "custom_coco"
# Vehicles (61 training photos) vs kitchen things (133): 72 synthetic vehicles close the gap.
CATEGORIES = [["bicycle", "car", "motorcycle"], ["bottle", "spoon", "knife"]]


def settings(quick: bool, seeds: list[int]) -> dict:
    epochs = 30 if quick else 300
    return {
        "pipeline": {"categories": [",".join(c) for c in CATEGORIES]},
        "diffusion": {"conditional": True, "image_size": [32, 32], "widths": [32, 64, 96],
                      "block_depth": 2, "embedding_dims": 32, "batch_size": 8,
                      "num_epochs": epochs, "learning_rate": 1e-3, "kid_every": epochs // 5,
                      "kid_images": 48, "kid_diffusion_steps": 10, "sample_every": epochs // 5,
                      "early_stop_patience": 1000},
        "augmentation": {"generate_diffusion_steps": 20 if quick else 50},
        "compare": {"backbone": "small_cnn", "input_shape": 64,
                    "number_epochs": 15 if quick else 40, "early_stop_patience": 10,
                    "batch_size": 32, "learning_rate": 1e-3, "seeds": seeds},
    }


def copy_subset(work: Path) -> tuple[Path, Path]:
    """The 6 classes' train and test photos, copied into the work folder (read-only source)."""
    for split in ("train", "test"):
        for label in (lab for cat in CATEGORIES for lab in cat):
            src, dst = DATA / split / label, work / "data" / split / label
            if not dst.is_dir():
                shutil.copytree(src, dst.with_name(dst.name + ".tmp"), dirs_exist_ok=True)
                dst.with_name(dst.name + ".tmp").rename(dst)
    return work / "data" / "train", work / "data" / "test"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="/tmp/bench_evidence")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="short trainings (smoke run)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"error: {DATA} not found (the shared custom_coco photos)", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    train, test = copy_subset(work)
    config = work / "settings.json"
    config.write_text(json.dumps(settings(args.quick, args.seeds), indent=2))

    import run_pipeline
    start = time.time()
    code = run_pipeline.main(["--in_dir", str(train), "--test_dir", str(test),
                              "--out_dir", str(work / "run"), "--config", str(config)])
    if code != 0:
        return code

    # A fourth arm: the same synthetic images, weighted by a real-only classifier's
    # calibrated confidence (DIAGen), trained with the other arms' settings and seeds.
    from classifier import compare
    diagen_dir = work / "run" / "results_diagen"
    code = compare.main(["--config", str(work / "run" / "configs" / "classify.json"),
                         "--variants", "synthetic", "--sample_weighting", "diagen",
                         "--out_dir", str(diagen_dir)])
    if code != 0:
        return code
    minutes = (time.time() - start) / 60

    import pandas as pd
    from classifier.experiments import compare_tables
    from cli.tables import format_table
    runs = pd.read_csv(work / "run" / "results" / "runs.csv")
    weighted = pd.read_csv(diagen_dir / "runs.csv").assign(variant="synthetic+diagen")
    summary, paired = compare_tables(pd.concat([runs, weighted]).to_dict("records"))
    summary = summary[summary["set"] == "test"].to_dict("records")
    paired = paired[paired["set"] == "test"].to_dict("records")
    rows = []
    base = {r["variant"]: r for r in summary}.get("original")
    for r in summary:
        rows.append({"arm": r["variant"], "seeds": int(r["n"]),
                     "balanced acc": f"{r['balanced_accuracy_mean']:.3f} ± {r['balanced_accuracy_std']:.3f}",
                     "macro-F1": f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}",
                     "macro-F1 vs original": f"{r['macro_f1_mean'] / base['macro_f1_mean']:.3f}x"})
    print(f"\nEvidence on custom_coco (6 classes, categories {CATEGORIES}), "
          f"{minutes:.1f} min (finished stages and runs are skipped)")
    print(format_table(rows, list(rows[0])))
    p_rows = [{"arm": p["variant"], "metric": p["metric"], "mean diff": f"{p['mean_diff']:+.3f}",
               "wins/ties/losses": f"{p['wins']}/{p['ties']}/{p['losses']}",
               "p": f"{p['p_value']:.3f}"} for p in paired
              if p["metric"] in ("balanced_accuracy", "macro_f1")]
    if p_rows:
        print("\nPaired differences to the original arm (same seeds):")
        print(format_table(p_rows, list(p_rows[0])))
    kid = json.loads((work / "run" / "report_assets" / "kid.json").read_text())
    print(f"\nKID against real test images ({kid['features']} features, 64x64):")
    kid_rows = [{"label": r["label"], "generated": r["n_generated"],
                 "KID generated": f"{r['kid_generated']:.4f}",
                 "KID real train": f"{r['kid_real_train']:.4f}"} for r in kid["rows"]]
    print(format_table(kid_rows, ["label", "generated", "KID generated", "KID real train"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
