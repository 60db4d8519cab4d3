"""Time to quality: wall time of training until a recipe's samples reach a quality target.

One label of Fashion-MNIST (a user's few hundred photos of one class: 300 training images,
32x32 grey), one unconditional model per recipe, trained in interleaved chunks (recipe A
for `chunk` steps, then B, ...) so that a busy machine slows every recipe alike; only the
training chunks are timed. After each chunk every recipe's EMA weights generate `n_eval`
images (20 DDIM steps) that are scored by a real-only classifier (a small CNN trained here on
all ten classes, 1000 images each):
    KID           between generated and real test images of the label, in the classifier's
                  penultimate features (real training vs real test images give the floor)
    recognised    share of generated images the classifier calls by their label
The target is fixed: at least 90% of the real test images' recognised share, and KID at
most 0.001 (real training vs real test images: about 0). Each recipe's time to the target is its training wall time at
the first checkpoint good on both; a recipe that never gets there within the budget shows
its whole time as a bound.

`--dataset coco`: the 618 training photos of ../shared/data/custom_coco (23 classes, read in
place) as one user's few hundred colour photos, 32 px, one unconditional model per recipe;
the classifier is trained on them (23 classes) and KID is measured against the 366 test
photos. An unconditional model of 23 classes has no label to recognise, so the target there
is the quality the keras.io recipe (with EMA warm-up) reaches at the end of the budget: each
recipe's time to a KID at least as low as that one's final KID.

Used by bench_diffusion.py; alone:
    .venv/bin/python benchmarks/time_to_quality.py --steps 1200 --chunk 200
    .venv/bin/python benchmarks/time_to_quality.py --dataset coco --steps 1200 --chunk 200
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))          # keras_io_ddim

LABEL, LABEL_NAME = 9, "ankle boot"
WIDTHS, DEPTH, SIZE = [32, 64, 96, 128], 2, 32
COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "custom_coco"


@dataclass
class Recipe:
    name: str
    build: object                       # () -> compiled keras model with .generate
    policy: str = "float32"
    batch: int = 16                     # images per step (its own input pipeline)
    seconds: float = 0.0
    steps: int = 0
    curve: list = field(default_factory=list)   # (steps, seconds, kid, recognised)


def fmnist(n_train: int = 300, seed: int = 0):
    """(train images of the label, test images of the label, classifier train x/y), [0,1]."""
    from sample_data.fashion_mnist import load_fashion_mnist
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    pad = lambda a: np.pad(a, ((0, 0), (2, 2), (2, 2)))[..., None].astype("float32") / 255.0  # noqa: E731
    own = rng.permutation(np.flatnonzero(y == LABEL))[:n_train]
    clf = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:1000] for c in range(10)])
    return pad(x[own]), pad(xt[yt == LABEL]), pad(x[clf]), y[clf]


def coco(size: int = SIZE):
    """(all training photos, all test photos, classifier train x/y) of custom_coco, [0,1]."""
    from diffusion.data import load_image
    if not COCO.is_dir():
        raise SystemExit(f"error: {COCO} not found")
    classes = sorted(p.name for p in (COCO / "train").iterdir() if p.is_dir())

    def split(name):
        paths = [(p, k) for k, c in enumerate(classes)
                 for p in sorted((COCO / name / c).iterdir())]
        return (np.stack([load_image(p, (size, size), 3) for p, _ in paths]),
                np.array([k for _, k in paths]))
    x, y = split("train")
    xt, _ = split("test")
    return x, xt, x, y


def real_only_classifier(x, y, epochs: int = 4):
    """A small CNN on real images; returns (predict probabilities, penultimate features)."""
    import keras
    from keras import layers
    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    h = inp
    for width in (32, 64):
        h = layers.Conv2D(width, 3, padding="same", activation="relu")(h)
        h = layers.Conv2D(width, 3, padding="same", activation="relu")(h)
        h = layers.MaxPooling2D(2)(h)
    feats = layers.Dense(128, activation="relu")(layers.Flatten()(h))
    out = layers.Dense(int(y.max()) + 1, activation="softmax")(feats)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    embed = keras.Model(inp, feats)
    # One fixed scale (the mean feature norm of the classifier's training images) keeps the
    # polynomial kernel of KID near unit scale; ReLU features are otherwise in the tens.
    scale = float(np.linalg.norm(embed.predict(x[:1000], verbose=0), axis=1).mean())
    return (lambda a: model.predict(a, batch_size=256, verbose=0),
            lambda a: embed.predict(a, batch_size=256, verbose=0) / scale)


def keras_io(train, seed: int = 0, ema_warmup: bool = False):
    import keras
    from keras_io_ddim import KerasIoDDIM
    keras.utils.set_random_seed(seed)
    model = KerasIoDDIM((SIZE, SIZE), WIDTHS, DEPTH, channels=train.shape[-1],
                        ema_warmup=ema_warmup)
    model.adapt_normalizer(train)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    return model


def ours(train, seed: int = 0, learning_rate: float = 1e-3, **settings):
    import keras
    from diffusion_model import DiffusionModel
    keras.utils.set_random_seed(seed)
    model = DiffusionModel(image_size=(SIZE, SIZE), widths=WIDTHS, block_depth=DEPTH,
                           channels=train.shape[-1], seed=seed, **settings)
    model.adapt_normalizer(train)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=1e-4))
    return model


def run(recipes: list[Recipe], train, test, predict, embed, steps: int, chunk: int,
        n_eval: int = 200, log=print, label: int | None = LABEL) -> None:
    """Trains every recipe to `steps` in interleaved chunks, scoring after each chunk
    (`label` None: no recognised share, nan)."""
    import keras
    import tensorflow as tf
    from diffusion.kid import kid_from_features
    real = embed(test)
    datasets = {r.batch: (tf.data.Dataset.from_tensor_slices(train).shuffle(len(train), seed=0)
                          .repeat().batch(r.batch, drop_remainder=True)
                          .prefetch(tf.data.AUTOTUNE)) for r in recipes}
    models = {}
    for r in recipes:
        keras.config.set_dtype_policy(r.policy)
        models[r.name] = r.build(train)
        # Compilation and the first steps (oneDNN primitive creation) are not the recipe's
        # speed: two short warm-up fits, untimed.
        for _ in range(2):
            models[r.name].fit(datasets[r.batch], epochs=1, steps_per_epoch=2, verbose=0)
    keras.config.set_dtype_policy("float32")
    while recipes[0].steps < steps:
        for r in recipes:
            t = time.perf_counter()
            models[r.name].fit(datasets[r.batch], epochs=1, steps_per_epoch=chunk, verbose=0)
            r.seconds += time.perf_counter() - t
            r.steps += chunk
        for r in recipes:
            gen = models[r.name].generate(n_eval, steps=20, seed=1, batch_size=n_eval)
            kid = kid_from_features(real, embed(gen))
            recognised = (float(np.mean(predict(gen).argmax(1) == label))
                          if label is not None else float("nan"))
            r.curve.append((r.steps, r.seconds, kid, recognised))
            log(f"  {r.name}: {r.steps} steps, {r.seconds:.0f} s, KID {kid:.4f}, "
                f"recognised {recognised:.2f}")


def time_to_target(curve, kid_target: float, rec_target: float | None):
    for steps, seconds, kid, rec in curve:
        if kid <= kid_target and (rec_target is None or rec >= rec_target):
            return steps, seconds
    return None


KID_TARGET, RECOGNISED_SHARE = 0.001, 0.9


def table(recipes: list[Recipe], floor: float, real_rec: float | None,
          baseline: str = "keras.io") -> list[str]:
    """The time-to-quality table; speed-ups against `baseline` (bounds where one of the two
    never reached the target). `real_rec` None: the target is the baseline's final KID."""
    base = next(r for r in recipes if r.name == baseline)
    if real_rec is None:
        kid_target, rec_target = base.curve[-1][2], None
        head = (f"target: KID <= {kid_target:.4f}, what {baseline} reached after "
                f"{base.steps} steps (real training vs real test images: KID {floor:.4f})")
    else:
        kid_target, rec_target = KID_TARGET, RECOGNISED_SHARE * real_rec
        head = (f"target: KID <= {KID_TARGET} and recognised >= {rec_target:.2f} (real "
                f"training vs real test images: KID {floor:.4f}; real test images "
                f"recognised {real_rec:.2f})")
    hits = {r.name: time_to_target(r.curve, kid_target, rec_target) for r in recipes}
    lines = [head, "",
             f"| recipe | ms/step | steps to target | time to target | speed-up vs {baseline} "
             "| final KID | final recognised |", "|---|---|---|---|---|---|---|"]
    for r in recipes:
        hit, base_hit = hits[r.name], hits[baseline]
        if hit and base_hit:
            speed = f"{base_hit[1] / hit[1]:.2f}x"
        elif hit:
            speed = f"> {base.seconds / hit[1]:.1f}x"
        else:
            speed = "-"
        final = r.curve[-1]
        lines.append(f"| {r.name} | {1000 * r.seconds / r.steps:.0f} | "
                     f"{hit[0] if hit else f'> {r.steps}'} | "
                     f"{f'{hit[1]:.0f} s' if hit else f'> {r.seconds:.0f} s'} | {speed} "
                     f"| {final[2]:.4f} | {'-' if np.isnan(final[3]) else f'{final[3]:.2f}'} |")
    return lines


def default_recipes(bf16: bool, named: bool = False) -> list[Recipe]:
    """The recipes a run measures; `named` adds those measured only when named (--recipes)."""
    policy = "mixed_bfloat16" if bf16 else "float32"
    out = [Recipe("keras.io", keras_io),
           Recipe("keras.io + EMA warm-up", lambda d: keras_io(d, ema_warmup=True)),
           Recipe("ours postnorm", lambda d: ours(d, residual_block="postnorm")),
           Recipe("ours prenorm", lambda d: ours(d)),
           Recipe("ours prenorm min-SNR", lambda d: ours(d, loss_weighting="min_snr")),
           Recipe("ours lean", lambda d: ours(d, residual_block="lean"))]
    if bf16:
        out += [Recipe(f"ours prenorm {policy}", lambda d: ours(d), policy=policy),
                Recipe(f"ours lean {policy}", lambda d: ours(d, residual_block="lean"),
                       policy=policy)]
    if not named:
        return out
    # batch size and learning rate, on the default block and precision
    out += [Recipe(f"ours prenorm {policy} lr 2e-3",
                   lambda d: ours(d, learning_rate=2e-3), policy=policy),
            Recipe(f"ours prenorm {policy} batch 32 lr 2e-3",
                   lambda d: ours(d, learning_rate=2e-3), policy=policy, batch=32),
            Recipe(f"ours prenorm {policy} batch 8 lr 5e-4",
                   lambda d: ours(d, learning_rate=5e-4), policy=policy, batch=8)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--n_eval", type=int, default=200)
    parser.add_argument("--recipes", nargs="+", default=None,
                        help="recipe names to run (default: all); keras.io always runs")
    parser.add_argument("--dataset", choices=("fmnist", "coco"), default="fmnist")
    args = parser.parse_args(argv)
    for line in measure(args.steps, args.chunk, args.n_eval, recipes=args.recipes,
                        dataset=args.dataset):
        print(line)
    return 0


def measure(steps: int, chunk: int, n_eval: int = 200, log=print,
            recipes: list[str] | None = None, dataset: str = "fmnist") -> list[str]:
    """The whole measurement (of the named recipes, keras.io always); returns the table's
    lines."""
    from diffusion.kid import kid_from_features
    from runtime.precision import cpu_has_bf16
    if dataset == "coco":
        train, test, cx, cy = coco()
        predict, embed = real_only_classifier(cx, cy, epochs=30)
        label, real_rec = None, None
        what = f"custom_coco, all {len(train)} training photos (23 classes), {SIZE} px colour"
    else:
        train, test, cx, cy = fmnist()
        predict, embed = real_only_classifier(cx, cy)
        label = LABEL
        real_rec = float(np.mean(predict(test).argmax(1) == LABEL))
        what = f"Fashion-MNIST '{LABEL_NAME}', {len(train)} training images, {SIZE} px grey"
    floor = kid_from_features(embed(test), embed(train))
    log(f"time to quality: {what}, widths {WIDTHS} depth {DEPTH}, batch 16 unless "
        f"named, {steps} steps in chunks of {chunk}")
    chosen = default_recipes(cpu_has_bf16(), named=bool(recipes))
    unknown = set(recipes or []) - {r.name for r in chosen}
    if unknown:
        raise SystemExit(f"unknown recipe(s) {sorted(unknown)}; choose from "
                         f"{[r.name for r in chosen]}")
    # Without a label the target is the baseline's final quality: the example with EMA
    # warm-up, since plain EMA 0.999 still holds 30% of the initial weights after 1200 steps.
    baseline = "keras.io" if label is not None else "keras.io + EMA warm-up"
    recipes = [r for r in chosen
               if not recipes or r.name in recipes or r.name in ("keras.io", baseline)]
    run(recipes, train, test, predict, embed, steps, chunk, n_eval, log=log, label=label)
    return table(recipes, floor, real_rec, baseline)


if __name__ == "__main__":
    sys.exit(main())
