"""Benchmark of stage 1 (site_id_balancer): the project vs a plain single-process loop.

Generates a dataset of 200x600 px JPEGs (the original pipeline's image size), 2 labels x 5 sites of
unequal size, then balances it with each method once per round, rounds interleaved (machines
are noisy: compare medians within one run):
  * baseline: the same plan executed one image at a time in one process (the original pipeline's
    loop: load, rotate+zoom, save; originals copied), OpenCV on its default threads and on one;
  * project:  `site_id_balancer.py` as users run it (scan + decode check + plan + write on a
    thread pool + manifest + chart), in a fresh process, on all cores;
  * the spawned process pool stage 1 used before, on the same plan and writer.
Reports min/median/max seconds, the speed-up, and the peak memory of the project at two
dataset sizes (memory should stay flat in the number of images).

    python3 benchmarks/bench_site_balancer.py [--images 2000] [--workers N] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from balancing.rotate_zoom import rotate_zoom  # noqa: E402
from balancing.run import plan_balance  # noqa: E402
from config import BalancerConfig  # noqa: E402
from dataset.images import load_rgb, save_rgb  # noqa: E402
from runtime.parallel import default_workers  # noqa: E402

SITE_SHARES = (0.4, 0.25, 0.15, 0.1, 0.1)


def make_dataset(root: Path, n_images: int, seed: int = 0) -> None:
    """Writes n_images smooth random 200x600 JPEGs as root/<label>/<site>_<n>.jpg."""
    rng = np.random.default_rng(seed)
    per_label = n_images // 2
    k = 0
    for label in ("1", "2"):
        counts = [int(round(s * per_label)) for s in SITE_SHARES]
        counts[0] += per_label - sum(counts)
        for site, count in enumerate(counts):
            for _ in range(count):
                small = rng.integers(0, 256, (6, 18, 3), dtype=np.uint8)
                img = cv2.resize(small, (600, 200), interpolation=cv2.INTER_CUBIC)
                img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
                save_rgb(root / label / f"S{site + 1}_{k:05d}.jpg", img, quality=90)
                k += 1


def baseline_loop(cfg: BalancerConfig, cv2_threads: int | None = None) -> tuple[int, float]:
    """The same plan written by a plain single-process loop: each source image loaded once,
    its augmentations rotated and saved one after another. Returns (images, seconds).

    Args:
        cv2_threads: OpenCV's own thread count (None: its default, all cores, which already
            parallelises the rotation of a plain loop).
    """
    default_threads = cv2.getNumThreads()
    if cv2_threads is not None:
        cv2.setNumThreads(cv2_threads)
    plan = plan_balance(cfg, progress=False)
    out = Path(cfg.out_dir)
    start = time.perf_counter()
    for group in plan.jobs():
        img = None
        for item in group:
            dst = out / item.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if item.aug is None:
                shutil.copyfile(item.source.path, dst)
                continue
            img = load_rgb(item.source.path) if img is None else img
            save_rgb(dst, rotate_zoom(img, item.aug.theta, item.aug.flip, item.zoom),
                     cfg.jpeg_quality)
    elapsed = time.perf_counter() - start
    cv2.setNumThreads(default_threads)
    return len(plan.outputs), elapsed


_PROJECT = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from balancing.run import plan_balance, run_balance
from config import BalancerConfig
from runtime.parallel import worker_pool
from site_id_balancer import main
t = time.perf_counter()
if {pool!r} == "processes":
    cfg = BalancerConfig(in_dir={in_dir!r}, out_dir={out_dir!r}, workers={workers})
    with worker_pool(cfg.workers) as pool:
        run_balance(plan_balance(cfg, progress=False, pool=pool), progress=False, pool=pool)
    code = 0
else:
    code = main({argv!r})
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", json.dumps({{"code": code, "seconds": elapsed, "peak_main_mb": peak}}))
"""


def project_run(in_dir: Path, out_dir: Path, workers: int, pool: str = "cli") -> dict:
    """Runs stage 1 in a fresh process; returns time (after its imports) and peak memory.

    Args:
        pool: "cli" runs `site_id_balancer.main` as users do (its thread pool); "processes"
            runs the same plan and writer on the spawned process pool stage 1 used before.
    """
    argv = ["--in_dir", str(in_dir), "--out_dir", str(out_dir), "--workers", str(workers)]
    code = _PROJECT.format(root=str(ROOT), argv=argv, pool=pool, in_dir=str(in_dir),
                           out_dir=str(out_dir), workers=workers)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"project run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(line[7:])
    result["images"] = sum(1 for p in out_dir.glob("*/*") if p.is_file())
    return result


def _images_seconds(result: dict) -> tuple[int, float]:
    return result["images"], result["seconds"]


def _stats(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--images", type=int, default=2000, help="input images (large set)")
    parser.add_argument("--small", type=int, default=500, help="input images (memory check)")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds (each method once per round)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_balancer_") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        make_dataset(tmp / "big", args.images)
        make_dataset(tmp / "small", args.small, seed=1)
        print(f"generated {args.images} + {args.small} images of 200x600 px in "
              f"{time.perf_counter() - t:.1f} s")
        big = tmp / "big"
        methods = {
            "plain single-process loop": lambda out: baseline_loop(
                BalancerConfig(in_dir=str(big), out_dir=str(out), workers=1)),
            "same loop, OpenCV on 1 thread": lambda out: baseline_loop(
                BalancerConfig(in_dir=str(big), out_dir=str(out), workers=1), cv2_threads=1),
            f"site_id_balancer ({args.workers} threads)": lambda out: _images_seconds(
                project_run(big, out, args.workers)),
            f"old process pool ({args.workers} processes)": lambda out: _images_seconds(
                project_run(big, out, args.workers, pool="processes")),
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        outputs: dict[str, int] = {}
        for r in range(args.rounds):
            for i, (name, run) in enumerate(methods.items()):
                out = tmp / f"out_{r}_{i}"
                outputs[name], seconds = run(out)
                times[name].append(seconds)
                shutil.rmtree(out)
        memory = {n: project_run(tmp / ("big" if n == args.images else "small"),
                                 tmp / f"mem_{n}", args.workers)
                  for n in (args.images, args.small)}
    base = statistics.median(times["plain single-process loop"])
    head = ("method", "outputs", "s min / median / max", "img/s (median)", "vs loop (median)")
    print(f"{args.images} inputs, {args.rounds} interleaved rounds; the loop times only its "
          f"writing, site_id_balancer the whole command (scan, decode check, plan, write, "
          f"manifest, chart)")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name} | {outputs[name]} | {_stats(values)} | {outputs[name] / med:.0f} | "
              f"{base / med:.2f}x")
    ours = statistics.median(times[f"site_id_balancer ({args.workers} threads)"])
    big_mem, small_mem = memory[args.images], memory[args.small]
    print(f"speed-up vs plain loop: {base / ours:.2f}x (target >= 1.0x); peak memory of "
          f"site_id_balancer, {args.images} vs {args.small} inputs: "
          f"{big_mem['peak_main_mb']:.0f} vs {small_mem['peak_main_mb']:.0f} MB "
          f"({big_mem['peak_main_mb'] / small_mem['peak_main_mb']:.2f}x; flat = about 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
