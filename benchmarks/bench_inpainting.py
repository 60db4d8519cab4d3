"""OOD inpainting speed: batched RePaint (the pipeline's way) vs one image at a time.

Both are measured in one process on the same untrained DDIM model and the same images, so the
ratio compares numbers taken side by side:
    model      RePaint.generate on prepared crops: all images, `--batch_size` per network call,
               vs a loop calling it with one image each (the original pipeline's per-image loop)
    pipeline   python3 -m inpainting generate's run_inpainting on a folder of JPEGs
               (load, mask, crop, RePaint, paste back, save PNG, manifest) with
               --batch_size N vs --batch_size 1
The outputs of both ways are compared (the same per-image seeds: at most a rounding level
apart).

Usage:
    python3 benchmarks/bench_inpainting.py            # 32 images at 32 px, about a minute
    python3 benchmarks/bench_inpainting.py --quick    # 16 images, one run each
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def make_run(folder: Path, size: int, widths: list[int]) -> Path:
    """A DDIM run folder of an untrained model (speed does not depend on the weights)."""
    import keras
    from config import DiffusionConfig
    from diffusion.training import build_model
    from model_folder.folder import ModelFolder

    cfg = DiffusionConfig(image_size=(size, size), widths=widths, block_depth=2,
                          embedding_dims=16, use_mix_precision=False, channels="3")
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    model = build_model(cfg, 0)
    folder.mkdir(parents=True)
    run = ModelFolder(folder, "diffusion")
    run.describe(model, cfg, label="1", class_names=["1"], precision="float32")
    run.save_weights(model, "best")
    return folder


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="16 images instead of 32")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="RePaint levels")
    parser.add_argument("--jump_length", type=int, default=5)
    parser.add_argument("--jump_n_sample", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="model size in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs each")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1

    import tensorflow as tf
    from conftest import make_dataset
    from cli.flags import parse_config
    from config import InpaintingConfig
    from dataset.images import load_rgb
    from diffusion_maths.schedule import repaint_schedule
    from inpainting import crops
    from generators.base import Request
    from inpainting.backends import build_backend
    from inpainting.run import mask_weights, plan_inpainting, run_inpainting

    n = 16 if args.quick else 32
    calls = len(repaint_schedule(args.steps, args.jump_length, args.jump_n_sample)) - 1
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s); {n} images of 120x96 px, "
          f"model {args.size} px, RePaint {args.steps} levels ({calls} network calls per "
          f"image path), batch {args.batch_size}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = make_run(tmp / "run", args.size, [16, 32, 64])
        test_dir = make_dataset(tmp / "test", {"1": {"S1": n}}, size=(120, 96))

        def config(out: str, batch: int):
            cfg, _ = parse_config(InpaintingConfig, [
                "--test_dir", str(test_dir), "--out_dir", str(tmp / out), "--backend", "ddim",
                "--model_dir", str(run), "--num_steps", str(args.steps),
                "--jump_length", str(args.jump_length),
                "--jump_n_sample", str(args.jump_n_sample), "--batch_size", str(batch),
                "--mask_mode", "box", "--mask_region", "lower_third", "--samples", "0"])
            return cfg

        plan = plan_inpainting(config("warm", args.batch_size), progress=False)
        backend = build_backend(plan.cfg, plan.models)
        items = plan.transformed()
        prepared = []
        for it in items:
            image = load_rgb(it.record.path)
            weights = mask_weights(plan.cfg, it, image.shape[:2])
            win = crops.crop_window(image.shape[:2], crops.bounding_box(weights),
                                    (args.size, args.size))
            prepared.append(crops.to_model(image, weights, win, (args.size, args.size)))
        images = np.stack([p[0] for p in prepared])
        masks = np.stack([p[1] for p in prepared])
        refs, seeds = [plan.models[it.record.label] for it in items], [it.seed for it in items]

        def run(k0: int, k1: int) -> np.ndarray:  # images k0..k1-1 in one generator call
            return backend.generate(Request(refs[k0:k1], seeds[k0:k1], sources=images[k0:k1],
                                            masks=masks[k0:k1]))
        # warm-up: trace the compiled step for both batch shapes
        run(0, args.batch_size)
        run(0, 1)

        # best of `--repeats` runs each (this machine may be shared), alternating the two
        def best(fn):
            times, out = [], None
            for _ in range(args.repeats):
                t, out = timed(fn)
                times.append(t)
            return min(times), out

        t_batch, out_batch = best(lambda: run(0, n))
        t_single, out_single = best(lambda: np.concatenate([run(k, k + 1) for k in range(n)]))
        diff = float(np.abs(out_batch - out_single).max())
        rows.append(("model (RePaint.generate)", t_batch, t_single, diff))

        runs = iter(range(1000))

        def pipeline(batch: int) -> Path:
            out = f"pipe{next(runs)}_{batch}"
            run_inpainting(plan_inpainting(config(out, batch), progress=False), backend,
                           progress=False)
            return tmp / out / "inpaint_box_lower_third"

        t_pipe_batch, dir_batch = best(lambda: pipeline(args.batch_size))
        t_pipe_single, dir_single = best(lambda: pipeline(1))
        a, b = sorted(dir_batch.rglob("*.png")), sorted(dir_single.rglob("*.png"))
        pix = max(int(np.abs(load_rgb(x).astype(int) - load_rgb(y).astype(int)).max())
                  for x, y in zip(a, b))
        rows.append(("pipeline (run_inpainting)", t_pipe_batch, t_pipe_single, pix / 255.0))
        same_names = [p.name for p in a] == [p.name for p in b]

    print()
    print(f"| what | batched ({args.batch_size}/call) s | one at a time s | batched img/s "
          f"| one-at-a-time img/s | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for name, tb, ts, d in rows:
        print(f"| {name} | {tb:.2f} | {ts:.2f} | {n / tb:.1f} | {n / ts:.1f} | {ts / tb:.1f}x "
              f"| {d:.1e} |")
    print()
    print(f"same file names both ways: {same_names} (names come from the settings, not the "
          f"pixels); pipeline max difference in 8-bit levels: {pix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
