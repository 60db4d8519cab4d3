"""Benchmark of the robustness search's hot path: probes per second of the batched, in-memory
search (`run_search`: corrupt in memory, predict in batches) against the reference tool's
way, one file per probe (corrupt, write a temp file, read it back, predict that one image),
with the same model, images, ops, intensities and seeds, in the same run.

The one-at-a-time loop is timed with both ways a user's `predict(filename)` usually calls
Keras: `model.predict(x[None])` and the cheaper `model.predict_on_batch(x[None])`. It runs on
a slice of the probes (its rate does not depend on which) to keep the run short.

Uses ../shared/data/custom_coco/train (beside the repository) when present, else random
smooth images.

    python3 benchmarks/bench_robustness.py [--quick] [--size 64] [--images 32] [--step 0.1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COCO = ROOT.parent / "shared" / "data" / "custom_coco" / "train"


def images_for(n: int, size: int) -> tuple[np.ndarray, str]:
    from robustness.data import list_images, load_image_set
    if COCO.is_dir():
        records, _, _ = list_images(COCO)
        return load_image_set(COCO, (size, size), max_images=n, seed=0).images, \
            f"{COCO.name} ({len(records)} available)"
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        import cv2
        small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
        out.append(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    return np.stack(out), "random smooth images"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--quick", action="store_true", help="fewer ops and probes")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    ap.add_argument("--images", type=int, default=32, help="images probed")
    ap.add_argument("--step", type=float, default=0.1, help="intensity step")
    ap.add_argument("--loop_probes", type=int, default=240,
                    help="probes timed in each one-file-per-probe loop")
    args = ap.parse_args(argv)

    import cv2
    import keras

    from classifier.backbones import build_classifier
    from robustness.ops import OPS, apply_op, prepare_op
    from robustness.predict import keras_predictor
    from robustness.search import grid, op_seed, run_search

    ops = list(OPS)
    if args.quick:
        ops = ops[::4]
        args.loop_probes = min(args.loop_probes, 80)
        args.images = min(args.images, 16)
    images, source = images_for(args.images, args.size)
    keras.utils.set_random_seed(0)
    model, _ = build_classifier("small_cnn", 5, args.size, verbose=False)
    predictor = keras_predictor(model, batch_size=64)
    predictor(images[:8])  # compile once, outside the timing (the loops warm up too)
    for op in ops:  # first calls import albumentations / build OpenCV kernels
        apply_op(op, images[0], 0.5, 0)

    t0 = time.perf_counter()
    result = run_search(predictor, images, ops=ops, step=args.step, seed=0, max_batch=1024)
    t_batched = time.perf_counter() - t0
    n_batched = result.probes

    # Where the batched time goes: the same corruptions without any prediction.
    t0 = time.perf_counter()
    for op in ops:
        wanted = sorted(set(grid(args.step)) | set(OPS[op].severities))
        for j in range(len(images)):
            render = prepare_op(op, images[j], op_seed(0, op, j))
            for x in wanted:
                render(x)
    t_ops = time.perf_counter() - t0

    # The same probes, one file each. Probe p = (op, intensity, image) in search order.
    probes = [(op, x, j) for op in ops for x in grid(args.step) for j in range(len(images))]
    sel = [probes[i] for i in np.linspace(0, len(probes) - 1, args.loop_probes).astype(int)]

    def loop(call) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "probe.png")
            call(images[0])  # warm-up
            t0 = time.perf_counter()
            for op, x, j in sel:
                img = apply_op(op, images[j], x, op_seed(0, op, j))
                cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))  # files are BGR
                back = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
                call(back)
            return time.perf_counter() - t0

    t_predict = loop(lambda im: model.predict(im[None].astype(np.float32), verbose=0))
    t_on_batch = loop(lambda im: model.predict_on_batch(im[None].astype(np.float32)))

    rate = n_batched / t_batched
    rows = [("batched, in memory (run_search)", n_batched, t_batched),
            ("file per probe + model.predict", len(sel), t_predict),
            ("file per probe + predict_on_batch", len(sel), t_on_batch)]
    print(f"small_cnn at {args.size} px, {len(images)} images ({source}), {len(ops)} ops, "
          f"step {args.step:g} (+5 severities), CPU threads: TF default")
    print(f"{'method':38s} {'probes':>7s} {'seconds':>8s} {'probes/s':>9s} {'batched x':>9s}")
    for name, n, t in rows:
        print(f"{name:38s} {n:7d} {t:8.2f} {n / t:9.1f} {rate / (n / t):9.1f}")
    print(f"of the batched time, corrupting the images alone takes {t_ops:.2f} s "
          f"({t_ops / n_batched * 1e3:.2f} ms per probe) and predicting the rest "
          f"({(t_batched - t_ops) / n_batched * 1e3:.2f} ms per probe)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
