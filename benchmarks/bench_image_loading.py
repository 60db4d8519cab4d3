"""Benchmark of loading camera photos for a model: reduced JPEG decoding (`load_rgb(path,
min_side=...)`, what the classifier, the diffusion data and the contact sheets use) against a
full-size decode followed by the same shrink (the baseline), in the same run.

Writes generated photo-like JPEGs (default 40 of 4000x3000 px, as a phone or trail camera
makes) to a temporary folder and times decode + resize_square to the model size.

    python3 benchmarks/bench_image_loading.py [--count 40] [--width 4000] [--height 3000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifier.data import resize_square  # noqa: E402
from cli.tables import format_table  # noqa: E402
from dataset.images import load_rgb  # noqa: E402


def write_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
    paths = []
    for i in range(count):
        f = rng.uniform(2, 9, 3)
        img = np.stack([np.sin(f[0] * x + i), np.cos(f[1] * y), np.sin(f[2] * (x + y))], -1)
        img = (img * 90 + 128 + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"S{i % 4}_{i:03d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def time_loading(paths: list[Path], size: int, reduced: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = [resize_square(load_rgb(p, min_side=size if reduced else None), size) for p in paths]
    return time.perf_counter() - start, np.stack(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 224])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_photos(Path(tmp), args.count, args.width, args.height)
        rows = []
        for size in args.sizes:
            full_s, full = time_loading(paths, size, reduced=False)
            red_s, red = time_loading(paths, size, reduced=True)
            rows.append({"model size": size, "full decode s": f"{full_s:.2f}",
                         "reduced decode s": f"{red_s:.2f}",
                         "img/s full": f"{len(paths) / full_s:.1f}",
                         "img/s reduced": f"{len(paths) / red_s:.1f}",
                         "speed-up": f"{full_s / red_s:.1f}x",
                         "mean |diff| (levels)": f"{np.abs(full.astype(int) - red).mean():.2f}"})
    print(f"{args.count} JPEGs of {args.width}x{args.height}, decode + shorter side to the "
          f"model size + centre crop, one process")
    print(format_table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
