"""Stage 2 speed: ours against the keras.io DDIM recipe, per step and to a quality target.

Everything is measured in one process, so every ratio compares numbers taken side by side:
    training       ms per fit step (batch 16) of our U-Net (the prenorm block, the lean
                   block, and the original postnorm block) and of the keras.io recipe re-implemented at equal
                   widths and depth (benchmarks/keras_io_ddim.py), float32 and bf16, at 32 and
                   64 px: rounds of a few steps per model in turn (interleaved, so a busy
                   machine slows all alike), min/median/max over every step of every round
    GFLOP/s        analytic FLOPs of a training step (3x forward: conv, dense, attention)
                   x steps/s, against a dense matmul of the same dtype timed here
    sampling       images/s of 50-step DDIM, batched: our compiled step function against the
                   keras.io recipe's loop (the network called eagerly at each step)
    pipeline       step time reading real JPEG files (tf.data, parallel decode, prefetch;
                   streamed, and with the default auto cache) against cached tensors;
                   peak RSS while streaming N vs 4N files
    time to quality  wall time until each recipe's samples reach a fixed quality target
                   (benchmarks/time_to_quality.py)

Usage:
    python3 benchmarks/bench_diffusion.py                 # everything, about 40 minutes
    python3 benchmarks/bench_diffusion.py --no_quality    # speed only, about 10 minutes
    python3 benchmarks/bench_diffusion.py --quick         # 32 px, short runs, a smoke test
On a GPU the mixed rows are mixed_float16 (the script is the GPU check as it is).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))      # keras_io_ddim, time_to_quality
WIDTHS, DEPTH = [32, 64, 96, 128], 2
# the GAN (train_all.py --model gan, same widths) is the other generator family's step:
# generator + discriminator + R1, so its GFLOP/s are not counted
MODELS = ("keras.io", "postnorm", "prenorm", "lean", "gan")


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


def build(size: int, policy: str, seed: int = 0, model: str = "prenorm"):
    """One of the compared models, compiled: ours ("prenorm", "postnorm", "gan") or
    "keras.io"."""
    import keras
    from config import DiffusionConfig
    from diffusion.training import build_model
    from keras_io_ddim import KerasIoDDIM
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(seed)
    if model == "keras.io":
        net = KerasIoDDIM((size, size), WIDTHS, DEPTH)
    else:
        d = DiffusionConfig()
        net = build_model(DiffusionConfig(
            image_size=(size, size), widths=WIDTHS, block_depth=DEPTH,
            embedding_dims=d.embedding_dims, attention_in_bottleneck=d.attention_in_bottleneck,
            channels="3", residual_block="prenorm" if model == "gan" else model,
            model="gan" if model == "gan" else "ddim"))
    net.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    keras.config.set_dtype_policy("float32")
    return net


def step_times(model, ds, steps: int) -> list[float]:
    """Seconds of each of `steps` fit steps (batch begin to end: data, step, EMA)."""
    import keras
    times, begin = [], []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            begin.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - begin[-1])

    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Clock()])
    return times


def interleaved(models: dict, ds, rounds: int, steps: int) -> dict[str, list[float]]:
    """Rounds of `steps` steps per model in turn (order rotated each round); ms per step."""
    names = list(models)
    for name in names:                       # compile + warm up, untimed
        step_times(models[name], ds, 3)
    out = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name] += [1000 * t for t in step_times(models[name], ds, steps)]
    return out


def sample_rate(model, n: int, steps: int, batch: int, **generate_kw) -> float:
    """Images per second of `steps`-step DDIM in batches of `batch`, after a trace;
    `generate_kw` go to `model.generate` (e.g. one label, guidance_scale, eta)."""
    model.generate(min(n, batch), steps=2, batch_size=batch, **generate_kw)  # trace
    t = time.perf_counter()
    model.generate(n, steps=steps, batch_size=batch, **generate_kw)
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


def pipeline_rate(model, ds, steps: int, warmup: int = 3) -> float:
    """Images per second from the median step after `warmup` steps."""
    times = step_times(model, ds, warmup + steps)[warmup:]
    return int(next(iter(ds)).shape[0]) / float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--quick", action="store_true", help="32 px only, short runs")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps when sampling")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved training rounds")
    parser.add_argument("--no_quality", action="store_true", help="skip time to quality")
    parser.add_argument("--quality_steps", type=int, default=1200)
    args = parser.parse_args(argv)

    import tensorflow as tf
    from runtime.precision import cpu_has_bf16, has_gpu, resolve_precision
    from diffusion.data import make_dataset

    sizes = [32] if args.quick else [32, 64]
    rounds, per_round = (2, 3) if args.quick else (args.rounds, 5)
    auto = resolve_precision("auto")
    # On a GPU the mixed policy is float16 (with loss scaling), on a CPU with bf16 units bf16.
    mixed = ("mixed_float16" if has_gpu() else "mixed_bfloat16" if cpu_has_bf16() else None)
    precisions = ["float32"] + ([mixed] if mixed else [])
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), bf16 units: {cpu_has_bf16()}, "
          f"auto precision: {auto}, batch {args.batch_size}, widths {WIDTHS}, depth {DEPTH}, "
          f"{rounds} interleaved rounds of {per_round} steps per model")
    mm = {p: matmul_gflops(p.removeprefix("mixed_")) for p in precisions}
    print("dense 2048^3 matmul GFLOP/s: " + ", ".join(f"{p} {v:.0f}" for p, v in mm.items()))

    rows, samples = [], []
    rng = np.random.default_rng(0)
    for size in sizes:
        images = rng.random((64, size, size, 3)).astype("float32") * 0.5 + 0.25
        cached = (tf.data.Dataset.from_tensor_slices(images).repeat()
                  .batch(args.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
        models = {}
        for policy in precisions:
            for name in MODELS:
                models[(name, policy)] = build(size, policy, model=name)
                models[(name, policy)].adapt_normalizer(images)
        times = interleaved(models, cached, rounds, per_round)
        for (name, policy), ms in times.items():
            net = models[(name, policy)].network
            med = float(np.median(ms))
            gflops = (float("nan") if name == "gan"
                      else 3 * forward_flops(net) * args.batch_size / med * 1000 / 1e9)
            rows.append(dict(size=size, policy=policy, model=name, min=min(ms), med=med,
                             max=max(ms), gflops=gflops, mm=mm[policy]))
        for policy in precisions:
            rates = {name: sample_rate(models[(name, policy)], args.batch_size, args.steps,
                                       args.batch_size) for name in ("keras.io", "prenorm")}
            samples.append(dict(size=size, policy=policy, **rates))
        print(f"  {size} px measured", flush=True)

    # Input pipeline: real JPEG files vs cached tensors, at the largest size, auto precision.
    size = sizes[-1]
    policy = auto if auto in precisions else "float32"
    steps = 6 if args.quick else 10
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
        t_cached = pipeline_rate(model, cached, steps)
        t_files = pipeline_rate(model, files_ds, steps)
        t_auto = pipeline_rate(model, auto_ds, steps, warmup=n_files // args.batch_size + 1)
        peaks = []
        for ps in (paths, big):
            ds = make_dataset(ps, None, (size, size), args.batch_size, True, cache=False)
            with PeakRSS() as mem:
                for _ in ds:
                    pass
            peaks.append(mem.peak)

    print()
    print("Training step, ms (min / median / max over every interleaved step):")
    print("| size | precision | model | ms/step min | median | max | speed vs keras.io "
          "(median) | train GFLOP/s | % of matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = next(x for x in rows if x["size"] == r["size"] and x["policy"] == r["policy"]
                   and x["model"] == "keras.io")
        print(f"| {r['size']} | {r['policy']} | {r['model']} | {r['min']:.0f} | {r['med']:.0f} "
              f"| {r['max']:.0f} | {ref['med'] / r['med']:.2f}x | "
              + (f"{r['gflops']:.1f} | {100 * r['gflops'] / r['mm']:.0f}% |"
                 if np.isfinite(r["gflops"]) else "- | - |"))
    print()
    print(f"Sampling, {args.steps} DDIM steps, batches of {args.batch_size}, images/s:")
    print("| size | precision | keras.io loop (eager network calls) | ours (compiled step) "
          "| ours / keras.io |")
    print("|---|---|---|---|---|")
    for r in samples:
        print(f"| {r['size']} | {r['policy']} | {r['keras.io']:.2f} | {r['prenorm']:.2f} "
              f"| {r['prenorm'] / r['keras.io']:.2f}x |")
    print()
    print(f"input pipeline at {size}px ({policy}): cached tensors {t_cached:.1f} img/s; real "
          f"JPEG files streamed {t_files:.1f} img/s -> step time ratio {t_cached / t_files:.2f}; "
          f"real files with the default auto cache {t_auto:.1f} img/s -> ratio "
          f"{t_cached / t_auto:.2f} (target <= 1.10)")
    print(f"peak RSS streaming {n_files} files: {peaks[0]:.0f} MB, {4 * n_files} files: "
          f"{peaks[1]:.0f} MB (flat = no growth with dataset size)")
    if not args.no_quality:
        import time_to_quality
        print()
        lines = time_to_quality.measure(200 if args.quick else args.quality_steps,
                                        100 if args.quick else 200,
                                        n_eval=64 if args.quick else 200)
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
