"""Stage 2 speed: training and sampling throughput, precision, batching, FLOP/s, input pipeline.

Everything is measured in one process, so every ratio compares numbers taken side by side:
    train img/s        images per second in model.fit (cached in-memory tensors)
    sample img/s       50-step DDIM, batched (compiled step function) vs the original
                       pipeline's loop (one image at a time, the network called eagerly)
    GFLOP/s            analytic FLOPs of a training step (3x forward: conv, dense, attention)
                       x steps/s, against a dense matmul of the same dtype timed here
    pipeline           step time reading real JPEG files (tf.data, parallel decode, prefetch;
                       streamed, and with the default auto cache) against cached tensors;
                       peak RSS while streaming N vs 4N files
    loss               mean noise MAE of the timed steps (same seeds and data per precision)

Usage:
    python3 benchmarks/bench_diffusion.py            # 32 and 64 px, about 6 minutes
    python3 benchmarks/bench_diffusion.py --quick    # 32 px, about 2 minutes
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRSS:
    """Samples the resident memory every 20 ms in a thread; `.peak` after the block."""

    def __enter__(self):
        self.peak, self._stop = rss_mb(), False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()


def forward_flops(net) -> float:
    """FLOPs of one forward pass of one image (multiply-adds x 2) for conv/dense/attention."""
    import keras
    from u_net_backbone import SpatialSelfAttention
    total = 0.0
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2.0 * h * w * cout * cin * kh * kw
        elif isinstance(layer, SpatialSelfAttention):
            _, h, w, c = layer.input.shape
            n = h * w
            total += 2.0 * 4 * n * c * c + 2.0 * 2 * n * n * c  # q,k,v,o projections; QK^T, AV
    return total


def matmul_gflops(dtype: str, n: int = 2048, reps: int = 10) -> float:
    import tensorflow as tf
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    f = tf.function(lambda x, y: tf.matmul(x, y))
    f(a, b).numpy()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.numpy()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def build(size: int, policy: str, seed: int = 0):
    import keras
    from config import DiffusionConfig
    from diffusion.training import build_model
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(seed)
    d = DiffusionConfig()
    cfg = DiffusionConfig(image_size=(size, size), widths=[32, 64, 96, 128], block_depth=2,
                          embedding_dims=d.embedding_dims,
                          attention_in_bottleneck=d.attention_in_bottleneck, channels="3")
    model = build_model(cfg)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    return model


def train_rate(model, ds, steps: int, warmup: int = 3) -> tuple[float, float]:
    """(images per second, loss) over `steps` fit steps after `warmup` steps (compilation,
    shuffle buffer, thread pools), timed batch to batch inside one fit call."""
    import keras
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())

    hist = model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, verbose=0,
                     callbacks=[Clock()])
    batch = int(next(iter(ds)).shape[0])
    return steps * batch / (marks[-1] - marks[warmup - 1]), float(hist.history["n_loss"][-1])


def reference_loop(model, n: int, steps: int) -> float:
    """The original pipeline's generation: one image at a time, network called eagerly. img/s."""
    import tensorflow as tf
    h, w = model.image_size
    t0 = time.perf_counter()
    for _ in range(n):
        x = tf.random.normal((1, h, w, 3))
        for step in range(steps):
            t = 1.0 - step / steps
            nr, sr = model.schedule(tf.fill((1, 1, 1, 1), t))
            nnr, nsr = model.schedule(tf.fill((1, 1, 1, 1), max(t - 1.0 / steps, 0.0)))
            pn = tf.cast(model.ema_network(model._network_inputs(x, nr), training=False), "float32")
            pi = (x - nr * pn) / sr
            x = nsr * pi + nnr * pn
        pi.numpy()
    return n / (time.perf_counter() - t0)


def sample_rate(model, n: int, steps: int, batch: int) -> float:
    model.generate(min(n, batch), steps=2, batch_size=batch)  # trace
    t = time.perf_counter()
    model.generate(n, steps=steps, batch_size=batch)
    return n / (time.perf_counter() - t)


def write_jpegs(folder: Path, n: int, size=(300, 200)) -> list[Path]:
    from dataset.images import save_rgb
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        p = folder / f"S{i % 4}_{i:05d}.jpg"
        save_rgb(p, np.roll(base, i, axis=1), quality=90)
        paths.append(p)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="32 px only, fewer steps")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps when sampling")
    args = parser.parse_args(argv)

    import tensorflow as tf
    from runtime.precision import cpu_has_bf16, resolve_precision
    from diffusion.data import make_dataset

    sizes = [32] if args.quick else [32, 64]
    train_steps = 6 if args.quick else 10
    n_sample = args.batch_size
    n_ref = 1 if args.quick else 2
    auto = resolve_precision("auto")
    precisions = ["float32"] + (["mixed_bfloat16"] if cpu_has_bf16() else [])
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), bf16 units: {cpu_has_bf16()}, "
          f"auto precision: {auto}, batch {args.batch_size}, {args.steps} DDIM steps")
    mm = {p: matmul_gflops("float32" if p == "float32" else "bfloat16") for p in precisions}
    print("dense 2048^3 matmul GFLOP/s: " + ", ".join(f"{p} {v:.0f}" for p, v in mm.items()))

    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        images = rng.random((64, size, size, 3)).astype("float32") * 0.5 + 0.25
        cached = (tf.data.Dataset.from_tensor_slices(images).repeat()
                  .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        for policy in precisions:
            model = build(size, policy)
            model.adapt_normalizer(images)
            fwd = forward_flops(model.network)
            tr, loss = train_rate(model, cached, train_steps)
            gflops = 3 * fwd * tr / 1e9
            batched = sample_rate(model, n_sample, args.steps, args.batch_size)
            ref = reference_loop(model, n_ref, args.steps)
            rows.append(dict(size=size, policy=policy, train=tr, loss=loss, gflops=gflops,
                             mm=mm[policy], batched=batched, ref=ref))
            print(f"  {size}px {policy}: train {tr:.1f} img/s, sample {batched:.2f} img/s "
                  f"(ref loop {ref:.3f})", flush=True)

    # Input pipeline: real JPEG files vs cached tensors, at the largest size, auto precision.
    size = sizes[-1]
    policy = auto if auto in precisions else "float32"
    with tempfile.TemporaryDirectory() as tmp:
        n_files = 64 if args.quick else 128
        paths = write_jpegs(Path(tmp) / "small", n_files)
        big = write_jpegs(Path(tmp) / "big", 4 * n_files)
        model = build(size, policy)
        files_ds = make_dataset(paths, None, (size, size), args.batch_size, True, flip=True,
                                cache=False).repeat()
        images = rng.random((64, size, size, 3)).astype("float32")
        cached = (tf.data.Dataset.from_tensor_slices(images).repeat()
                  .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        model.adapt_normalizer(images)
        # The default (--cache_images auto) keeps decoded images of a small dataset in
        # memory: after the first epoch (the warm-up here) no file is decoded again.
        auto_ds = make_dataset(paths, None, (size, size), args.batch_size, True, flip=True,
                               cache=None).repeat()
        t_cached, _ = train_rate(model, cached, train_steps)
        t_files, _ = train_rate(model, files_ds, train_steps)
        t_auto, _ = train_rate(model, auto_ds, train_steps,
                               warmup=n_files // args.batch_size + 1)
        peaks = []
        for ps in (paths, big):
            ds = make_dataset(ps, None, (size, size), args.batch_size, True, cache=False)
            with PeakRSS() as mem:
                for _ in ds:
                    pass
            peaks.append(mem.peak)

    print()
    print("| size | precision | train img/s | vs f32 | loss | train GFLOP/s | % of matmul "
          "| sample img/s (batched) | ref loop img/s | batched / ref |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f32 = next(x for x in rows if x["size"] == r["size"] and x["policy"] == "float32")
        print(f"| {r['size']} | {r['policy']} | {r['train']:.1f} | {r['train'] / f32['train']:.2f}x "
              f"| {r['loss']:.3f} | {r['gflops']:.1f} | {100 * r['gflops'] / r['mm']:.0f}% "
              f"| {r['batched']:.2f} | {r['ref']:.3f} | {r['batched'] / r['ref']:.0f}x |")
    print()
    print(f"input pipeline at {size}px ({policy}): cached tensors {t_cached:.1f} img/s; real "
          f"JPEG files streamed {t_files:.1f} img/s -> step time ratio {t_cached / t_files:.2f}; "
          f"real files with the default auto cache {t_auto:.1f} img/s -> ratio "
          f"{t_cached / t_auto:.2f} (target <= 1.10)")
    print(f"peak RSS streaming {n_files} files: {peaks[0]:.0f} MB, {4 * n_files} files: "
          f"{peaks[1]:.0f} MB (flat = no growth with dataset size)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
