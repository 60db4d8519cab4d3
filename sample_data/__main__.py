"""Builds the demo dataset: `python3 -m sample_data --out_dir demo_run/sample_dataset`.

It mirrors the original problem (CT DEEP Rivers): six labels in two categories, {1,2,3}
(clothes) and {4,5,6} (shoes and bags), imbalanced across labels and across four sites
(cameras) whose colour cast differs, with the site in the file name (`S2_000123.png`).
Images are real Fashion-MNIST photos, tinted per site and resized to 32x32 RGB:
`train/<label>/` (imbalanced, from Fashion-MNIST's training split) and `test/<label>/`
(TEST_PER_LABEL per label, sites equal, from its test split).

`--arrangement longtail` builds the benchmarks' harder set instead: grey (untinted) images,
tops 300/200/120 and footwear 60/40/20 training images over four sites, 100 test images per
label.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from balancing.plan import largest_remainder
from cli.errors import one_line_errors
from dataset.atomic import atomic_write_text
from dataset.images import save_rgb
from sample_data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from sample_data.fmnist_lt import build_fmnist_lt

# label -> (Fashion-MNIST class, number of images): category 1 is the smaller one.
LABELS = {"1": (0, 40), "2": (2, 24), "3": (1, 16), "4": (7, 90), "5": (8, 70), "6": (9, 60)}
# site -> (share of a label's images, RGB gain, offset): each "camera" has its own look.
SITES = {"S1": (0.50, (1.00, 1.00, 1.00), 0), "S2": (0.25, (1.10, 0.95, 0.80), 10),
         "S3": (0.15, (0.80, 0.95, 1.10), 0), "S4": (0.10, (0.70, 0.70, 0.75), -10)}
TEST_PER_LABEL = 30
MARKER = "dataset.json"
# label -> (Fashion-MNIST class, number of images): t-shirt, pullover, shirt | sandal,
# sneaker, ankle boot. The rare labels are the ones that share their category's shape.
LONGTAIL_LABELS = {"1": (0, 300), "2": (2, 200), "3": (6, 120), "4": (5, 60), "5": (7, 40),
                   "6": (9, 20)}
LONGTAIL_SITES = {name: (share, (1.0, 1.0, 1.0), 0) for name, (share, _, _) in SITES.items()}
LONGTAIL_TEST_PER_LABEL = 100
ARRANGEMENTS = {"demo": (LABELS, SITES, TEST_PER_LABEL),
                "longtail": (LONGTAIL_LABELS, LONGTAIL_SITES, LONGTAIL_TEST_PER_LABEL)}


def _write_split(out_dir: Path, images: np.ndarray, classes: np.ndarray, totals: dict[str, int],
                 shares: list[float], size: int, rng: np.random.Generator,
                 labels: dict = LABELS, site_looks: dict = SITES) -> dict:
    summary = {}
    for label, (cls, _) in labels.items():
        pool = rng.permutation(np.flatnonzero(classes == cls))[:totals[label]]
        sites = dict(zip(site_looks, largest_remainder(shares, totals[label])))
        summary[label] = {"class": CLASS_NAMES[cls], "sites": sites}
        k = 0
        for site, count in sites.items():
            _, gain, offset = site_looks[site]
            for _ in range(count):
                grey = Image.fromarray(images[pool[k]]).resize((size, size), Image.BICUBIC)
                rgb = np.asarray(grey, dtype=np.float32)[..., None] * np.array(gain) + offset
                save_rgb(out_dir / label / f"{site}_{pool[k]:05d}.png",
                         np.clip(rgb, 0, 255).astype(np.uint8))
                k += 1
    return summary


def build(out_dir: Path, size: int | None = None, seed: int = 0, arrangement: str = "demo",
          imbalance: float = 100) -> dict:
    """Writes train/ and test/ (skips the work when a complete dataset is already there).

    Args:
        size: image side; None: 32 (demo, longtail) or 28 (fmnist_lt, Fashion-MNIST's own).
        arrangement: "demo" (tinted sites, 40/24/16 vs 90/70/60), "longtail" (grey,
            300/200/120 vs 60/40/20) or "fmnist_lt" (all 10 classes, 6000 .. 6000/imbalance).
        imbalance: fmnist_lt's imbalance factor (largest / smallest class).
    """
    marker = out_dir / MARKER
    if marker.exists():
        summary = json.loads(marker.read_text())
        found = (summary.get("arrangement", "demo"), summary.get("imbalance"))
        if found != (arrangement, imbalance if arrangement == "fmnist_lt" else None):
            what = found[0] + (f" at imbalance {found[1]:g}" if found[1] else "")
            raise SystemExit(f"error: {out_dir} holds another sample dataset ({what}); "
                             f"choose another --out_dir")
        return summary
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"error: {out_dir} exists and is not a sample dataset; choose another --out_dir")
    if arrangement == "fmnist_lt":
        return build_fmnist_lt(out_dir, imbalance, seed, size or 28)
    size = size or 32
    labels, site_looks, test_per_label = ARRANGEMENTS[arrangement]
    rng = np.random.default_rng(seed)
    summary = {"source": "Fashion-MNIST", "size": size, "seed": seed,
               "arrangement": arrangement}
    images, classes = load_fashion_mnist("train")
    summary["train"] = _write_split(out_dir / "train", images, classes,
                                    {lab: n for lab, (_, n) in labels.items()},
                                    [s[0] for s in site_looks.values()], size, rng, labels,
                                    site_looks)
    images, classes = load_fashion_mnist("test")
    summary["test"] = _write_split(out_dir / "test", images, classes,
                                   {lab: test_per_label for lab in labels},
                                   [1.0] * len(site_looks), size, rng, labels, site_looks)
    atomic_write_text(marker, json.dumps(summary, indent=2))
    return summary


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out_dir", default="demo_run/sample_dataset")
    parser.add_argument("--size", type=int, default=None,
                        help="image side in pixels (default 32; fmnist_lt: 28)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arrangement", choices=sorted([*ARRANGEMENTS, "fmnist_lt"]),
                        default="demo",
                        help="demo: tinted sites; longtail: grey, 300/200/120 vs 60/40/20; "
                             "fmnist_lt: Fashion-MNIST-LT, all 10 classes, 6000 .. "
                             "6000/--imbalance training images, full test split")
    parser.add_argument("--imbalance", type=float, default=100,
                        help="fmnist_lt: imbalance factor, largest / smallest class (default "
                             "100; 10 is the other standard one)")
    args = parser.parse_args(argv)
    if not math.isfinite(args.imbalance):   # nan passes every comparison below
        parser.error(f"--imbalance must be a finite number, got {args.imbalance}")
    if args.imbalance < 1:
        parser.error("--imbalance must be at least 1")
    if args.size is not None and args.size < 8:
        parser.error("--size must be at least 8")
    try:
        summary = build(Path(args.out_dir), args.size, args.seed, args.arrangement,
                        args.imbalance)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split in ("train", "test"):
        for label, info in summary[split].items():
            print(f"{split} label {label} ({info['class']}): {info['sites']}")
    print(f"sample dataset ready in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
