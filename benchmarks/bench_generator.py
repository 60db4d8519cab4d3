"""Does the generator make images that look like their label? Per label, for two recipes.

Datasets: a long-tail Fashion-MNIST arrangement built from Debian's package (grey; tops
300/200/120, footwear 60/40/20; `python3 -m sample_data --arrangement longtail`) and the
evidence benchmark's 6 classes of ../shared/data/custom_coco (read where they are).

Recipes, at the same optimizer-step budget (the wall time of each is printed):
    landed  the recipe before this benchmark existed: one conditional model on the labels
            stage 3 fills, the condition concatenated once at the input, 3 channels.
    new     one conditional model on every label, noise level + label + site + augmentation
            modulating every residual block, grey data as 1 channel.
    gan     the other family (train_all.py --model gan): a class-conditional GAN with
            DiffAugment and R1 on every label, same widths; give it --gan_steps that take
            the DDIM's wall time (the train seconds are printed).
    sd      pretrained Stable Diffusion 3 (--sd_preset), each image an img2img edit of a
            training photo of its label with "a photo of a {label}" at each --strength below
            1 (stage 3's --generator sd_img2img); without loadable weights its row says why
            it is absent.

Per label of the filled category it prints: KID of generated vs real test images beside
KID of real training vs real test images (same features: InceptionV3 when its weights load,
else a fixed random conv net, said in the header); GAN-test (a real-only classifier's accuracy
on the generated images, beside its accuracy on real test images, and their ratio; then on
the images stage 3's memorisation gate would keep, so copies cannot carry the score; the
eval folder's gate_sheet.png shows per label what the gate keeps and what it moves aside);
GAN-train (a classifier trained on generated images only, tested on real test images);
memorisation share (generated images closer to a training image, or its mirror image, than
the 5th percentile of the label's test-to-train distances) in pixel space, stage 3's audit,
and in brackets in the KID features (closest pairs of each drawn in the eval folder). With
several --steps, the new recipe is trained once and resumed from budget to budget: the table
of quality vs steps.

    .venv/bin/python benchmarks/bench_generator.py --dataset fmnist --steps 1000 3000
    .venv/bin/python benchmarks/bench_generator.py --dataset coco --steps 3000 --recipes new
    .venv/bin/python benchmarks/bench_generator.py --dataset coco --network medium \
        --steps 1500 3000 --guidance 1 3                   # 32 px, about an hour on 2 cores
    .venv/bin/python benchmarks/bench_generator.py --dataset coco --network medium \
        --steps 1500 --guidance 3 --strength 1 0.8 0.6     # and SDEdit of the training photos
    .venv/bin/python benchmarks/bench_generator.py --dataset coco --network medium \
        --steps 1500 --guidance 3 --context all     # stage 2 on all 23 classes, scored on 6
    .venv/bin/python benchmarks/bench_generator.py --quick        # smoke run, ~3 minutes
    .venv/bin/python benchmarks/bench_generator.py --dataset fmnist --model_dir RUN  # evaluate
    .venv/bin/python benchmarks/bench_generator.py --model_dir RUN/last.weights.h5  # last, not best

A --work_dir re-run reuses finished trainings (budgets already reached are not retrained).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COCO = REPO.parent / "shared" / "data" / "custom_coco"
COCO_FILLED = ["bicycle", "car", "motorcycle"]
COCO_OTHER = ["bottle", "spoon", "knife"]
FMNIST_FILLED = ["4", "5", "6"]   # sandal, sneaker, ankle boot: 60/40/20 training images
FMNIST_NAMES = {"1": "t-shirt", "2": "pullover", "3": "shirt", "4": "sandal", "5": "sneaker",
                "6": "ankle-boot"}
# Early stopping off: each budget is trained to its end (on the photos the validation noise
# loss rises from about 1,000 steps on while the sheets keep improving to 6,000).
COMMON = ["--batch_size", "32", "--kid_every", "0", "--sample_every", "5",
          "--validation_split", "0.1", "--early_stop_patience", "0"]
NETWORK = {("fmnist", "large"): ["--image_size", "32", "32", "--widths", "32", "64", "96",
                                 "--block_depth", "2", "--attention_in_bottleneck"],
           ("fmnist", "small"): ["--image_size", "32", "32", "--widths", "32", "64", "96",
                                 "--block_depth", "1", "--embedding_dims", "32"],
           ("coco", "large"): ["--image_size", "64", "64", "--widths", "32", "64", "96", "128",
                               "--block_depth", "2", "--attention_in_bottleneck"],
           ("coco", "small"): ["--image_size", "48", "48", "--widths", "32", "64", "96", "128",
                               "--block_depth", "1"],
           # the evidence benchmark's generator: 32 px, what 2 CPU cores train in ~20 min
           ("coco", "medium"): ["--image_size", "32", "32", "--widths", "32", "64", "96",
                                "--block_depth", "2", "--attention_in_bottleneck"]}


def dataset(name: str, work: Path, quick: bool) -> tuple[Path, Path, list[str]]:
    """(train folder, test folder, filled labels), linking custom_coco, never copying it."""
    if name == "fmnist":
        from sample_data.__main__ import build
        root = work / "fmnist_longtail"
        build(root, 32, 0, "longtail")
        return root / "train", root / "test", FMNIST_FILLED
    if not COCO.is_dir():
        raise SystemExit(f"error: {COCO} not found")
    for split in ("train", "test"):
        for label in COCO_FILLED + COCO_OTHER:
            link = work / "coco" / split / label
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(COCO / split / label, target_is_directory=True)
    return work / "coco" / "train", work / "coco" / "test", COCO_FILLED


def coco_context_dir(work: Path) -> Path:
    """Every custom_coco training class, linked: stage 2's data for --context all (the
    judge and the scores stay on the 6 classes)."""
    root = work / "coco_all" / "train"
    for label in sorted(p.name for p in (COCO / "train").iterdir() if p.is_dir()):
        link = root / label
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(COCO / "train" / label, target_is_directory=True)
    return root


def recipe_flags(recipe: str) -> list[str]:
    if recipe == "landed":
        return ["--no-block_conditioning", "--no-augment_conditioning", "--channels", "3",
                "--no-site_conditioning"]
    if recipe == "gan":  # the other family: the same data, widths and run folder
        return ["--model", "gan", "--kid_every", "5"]
    return ["--site_conditioning"]


def train_recipe(recipe: str, data: str, train_dir: Path, filled: list[str], steps: int,
                 work: Path, quick: bool, network: str = "large", variant: str = "",
                 flags: list[str] = ()) -> tuple[Path, float]:
    """Trains (or resumes up to `steps`) a recipe's model; (run folder, seconds spent now)."""
    out = work / "models" / f"{data}_{network}_{recipe}{variant}"
    runs = sorted(out.glob("conditional_*")) if out.is_dir() else []
    net = (["--image_size", "16", "16", "--widths", "16", "32", "--block_depth", "1"]
           if quick else NETWORK[data, network])
    start = time.time()
    if runs:
        run = runs[-1]
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").exists() else {}
        if state.get("train_steps_done", 0) >= steps:
            return run, 0.0
        cmd = ["run_diffusion.py", "--load_and_train", "--model_dir", str(run),
               "--train_steps", str(steps)]
    else:
        labels = filled if recipe == "landed" else []
        cmd = ["train_all.py", "--in_dir", str(train_dir), "--out_dir", str(out),
               "--conditional", "--train_steps", str(steps), *COMMON, *net,
               *recipe_flags(recipe), *flags, *(["--labels", *labels] if labels else [])]
    log = work / "logs" / f"{data}_{network}_{recipe}{variant}_{steps}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        code = subprocess.call([sys.executable, *cmd], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"error: training failed (exit {code}); log: {log}")
    run = sorted(out.glob("conditional_*"))[-1]
    return run, time.time() - start


def generate(run: Path, labels: list[str], n: int, out: Path, guidance: float,
             rescale: float = 0.0, eta: float = 1.0, strength: float = 1.0,
             sources: dict | None = None, max_noise: float = 0.0) -> dict:
    """n images per label into out/<label>/ (PNG; grey from grey models); {label: paths}.

    With `strength` < 1 (SDEdit, stage 3's `--generator sdedit`), image k of a label varies
    the label's real image `sources[label][k % len]`, with seed k.
    """
    from dataset.images import save_rgb, to_uint8
    from diffusion.data import load_image
    from diffusion.inference import load_model
    model, _, meta = load_model(run)
    names = meta["_class_names"]
    paths, rows = {}, []
    for label in labels:
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        common = dict(steps=50, eta=eta, labels=names.index(label), guidance_scale=guidance,
                      guidance_rescale=rescale, guidance_max_noise=max_noise, batch_size=64)
        if strength < 1.0:
            real = sources[label]
            start = np.stack([load_image(real[k % len(real)], model.image_size, model.channels)
                              for k in range(n)])
            images = model.img2img(start, strength=strength, seed=list(range(n)), **common)
        else:
            images = model.generate(n, seed=1, **common)
        paths[label] = [save_rgb(folder / f"{k:04d}.png", to_uint8(img))
                        for k, img in enumerate(images)]
        rows.append(images[:12])
    save_sheet(rows, out / "contact_sheet.png")
    return paths


def save_sheet(rows: list[np.ndarray], path: Path) -> None:
    """One row of up to 12 images per label, small images enlarged (nearest) for the eye:
    what a reader looks at before any number."""
    from dataset.images import save_rgb
    from diffusion.callbacks import image_grid
    rows = [r if r.shape[-1] == 3 else np.repeat(r, 3, axis=-1) for r in rows]
    sheet = np.concatenate([np.pad(r, ((0, 12 - len(r)), (0, 0), (0, 0), (0, 0)))
                            for r in rows])
    grid = image_grid(sheet, cols=12)
    scale = max(1, 96 // sheet.shape[1])
    save_rgb(path, grid.repeat(scale, 0).repeat(scale, 1))


def gate_sheet(audit, labels: list[str], size: int, path: Path) -> None:
    """Two rows per label: up to 12 images the memorisation gate keeps, then up to 12 it
    moves aside (black when none): are the recognisable images only the copies?"""
    from diffusion.data import load_image
    rows = []
    for label in labels:
        mine = audit[audit.label == label]
        for flagged in (False, True):
            paths = list(mine.path[mine.flagged.astype(bool) == flagged])[:12]
            rows.append(np.stack([load_image(p, (size, size)) for p in paths]) if paths
                        else np.zeros((1, size, size, 3), np.float32))
    save_sheet(rows, path)


def real_sheet(train: dict, size: int, path: Path) -> Path:
    """The first 12 training images of each label at the generator's resolution, the sheet
    every generated one is read against (can a person name the label at this size?)."""
    from diffusion.data import load_image
    save_sheet([np.stack([load_image(p, (size, size), 3) for p in paths[:12]])
                for paths in train.values()], path)
    return path


def generate_sd(task, labels: list[str], names: dict, n: int, out: Path, strength: float,
                sources: dict, steps: int = 28, guidance: float = 7.0) -> dict:
    """n Stable Diffusion 3 edits per label into out/<label>/: image k varies the label's
    training photo k mod len with "a photo of a <name>" and seed k; {label: paths}."""
    from dataset.images import save_rgb, to_uint8
    from diffusion.data import load_image
    from pretrained.sd3 import image_size_of, sd3_img2img
    paths = {}
    for label in labels:
        real = sources[label]
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        paths[label] = [
            save_rgb(folder / f"{k:04d}.png", to_uint8(sd3_img2img(
                task, load_image(real[k % len(real)], image_size_of(task), 3),
                f"a photo of a {names.get(label, label)}", k, strength, steps, guidance)))
            for k in range(n)]
    return paths


def images_of(folder: Path, labels: list[str]) -> dict[str, list[Path]]:
    from diffusion.data import find_label_images
    return {lab: find_label_images(folder / lab) for lab in labels}


def kid_per_label(extractor, generated: dict, train: dict, test: dict, size: int) -> dict:
    from classifier.data import load_images
    from diffusion.kid import kid_from_features
    feats = lambda paths: extractor(load_images([str(p) for p in paths], size)[0] / 255.0)  # noqa: E731
    out = {}
    for label, gen in generated.items():
        t = feats(test[label])
        out[label] = (kid_from_features(t, feats(gen)), kid_from_features(t, feats(train[label])))
    return out


def evaluate(generated: dict, train: dict, test: dict, classifier_run: Path, work: Path,
             size: int, quick: bool) -> list[dict]:
    """Per-label KID, GAN-test, GAN-train and memorisation of one set of generated images."""
    from config import ClassifierConfig
    from diffusion.kid import build_feature_extractor
    from quality.audit import audit_synthetic, closest_pairs_sheet
    from quality.features import kid_space, pixel_space
    from quality.recognisability import gan_test, gan_train

    pairs = lambda d: [(str(p), lab) for lab, ps in d.items() for p in ps]  # noqa: E731
    kid = kid_per_label(build_feature_extractor("auto"), generated, train, test, size)
    gt = gan_test(classifier_run, pairs(generated), pairs(test)).set_index("label")
    base = ClassifierConfig(backbone="small_cnn", input_shape=size,
                            number_epochs=3 if quick else 30, batch_size=32, seed=0,
                            early_stop_patience=3 if quick else 8)
    # The images were just generated again: a finished classifier of an earlier
    # evaluation in this folder (the same tag, other weights) must not stand in for them.
    shutil.rmtree(work / "gan_train", ignore_errors=True)
    gtr, _ = gan_train(pairs(generated), pairs(train), pairs(test), base, work / "gan_train")
    gtr = gtr.set_index("label")
    shares, audits = {}, {}
    for key, space in (("pixels", pixel_space()), ("kid", kid_space("auto"))):
        audit = audits[key] = audit_synthetic(
            [p for ps in generated.values() for p in ps], train, test, space, scope="label",
            synthetic_labels=[lab for lab, ps in generated.items() for _ in ps])
        closest_pairs_sheet(audit, title=space.name).save(
            work / f"closest_pairs_{space.name}.png")
        shares[key] = audit.groupby("label").flagged.mean()
    # what stage 3's gate (pixels) would keep: are the recognisable images only the copies?
    gate_sheet(audits["pixels"], list(generated), size, work / "gate_sheet.png")
    copies = set(audits["pixels"].path[audits["pixels"].flagged.astype(bool)])
    kept = [pair for pair in pairs(generated) if pair[0] not in copies]
    gk = gan_test(classifier_run, kept, pairs(test)).set_index("label") if kept else None
    rows = []
    for label in generated:
        rows.append({"label": label, "kid_gen": kid[label][0], "kid_train": kid[label][1],
                     "gan_test": gt.loc[label, "gan_test_accuracy"],
                     "gan_test_kept": (gk.loc[label, "gan_test_accuracy"]
                                       if gk is not None and label in gk.index
                                       else float("nan")),
                     "real_test": gt.loc[label, "real_test_accuracy"],
                     "gan_train": gtr.loc[label, "gan_train_accuracy"],
                     "real_train": gtr.loc[label, "real_train_accuracy"],
                     "memorised": shares["pixels"].get(label, float("nan")),
                     "memorised_kid": shares["kid"].get(label, float("nan"))})
    return rows


def real_only_classifier(train_dir: Path, test_dir: Path, work: Path, size: int,
                         quick: bool) -> Path:
    from config import ClassifierConfig
    from quality.recognisability import train_real_only
    labels = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    pairs = lambda d: [(str(p), lab) for lab, ps in images_of(d, labels).items() for p in ps]  # noqa: E731
    base = ClassifierConfig(backbone="small_cnn", input_shape=size,
                            number_epochs=3 if quick else 30, batch_size=32, seed=0,
                            early_stop_patience=3 if quick else 8)
    return train_real_only(pairs(train_dir), pairs(test_dir), base, work / "real_only")


def full_fmnist_judge(work: Path, size: int, quick: bool) -> Path:
    """A judge that knows the labels: the same classifier recipe trained on every Fashion-MNIST
    training image of the long-tail arrangement's six classes (6,000 each, grey, `size` px),
    so GAN-test does not divide by a classifier that has seen 20 ankle boots. Validated on
    the full Fashion-MNIST test split of those classes (1,000 each); its per-label accuracy
    is printed. Only the benchmark uses it: a user's data has no such reference set.
    """
    from config import ClassifierConfig
    from quality.recognisability import train_real_only
    from sample_data.__main__ import LONGTAIL_LABELS
    from sample_data.fashion_mnist import load_fashion_mnist
    from sample_data.fmnist_lt import write_split

    root = work / (f"fmnist_full_{size}px" + ("_quick" if quick else ""))
    names = list(LONGTAIL_LABELS)
    for split in ("train", "test"):
        if not (root / split / ".complete").is_file():
            images, classes = load_fashion_mnist(split)
            picks = [np.flatnonzero(classes == cls)[:200 if quick else None]
                     for cls, _ in LONGTAIL_LABELS.values()]
            write_split(root / split, images, picks, size, names=names)
            (root / split / ".complete").write_text("")
    pairs = lambda d: [(str(p), lab) for lab, ps in images_of(d, names).items() for p in ps]  # noqa: E731
    base = ClassifierConfig(backbone="small_cnn", input_shape=size, grayscale=True,
                            number_epochs=2 if quick else 15, batch_size=64, seed=0,
                            validation_split=0.05, early_stop_patience=3 if quick else 4,
                            evaluation_type="balanced_accuracy", tensorboard=False)
    run = train_real_only(pairs(root / "train"), pairs(root / "test"), base, work / "judge",
                          run_name="full_fmnist")
    per_label = json.loads((run / "metrics.json").read_text())["tests"]["test"]["per_class"]
    print("judge (full Fashion-MNIST training split, its test split): "
          + ", ".join(f"{FMNIST_NAMES[lab]} {per_label[lab]['recall']:.3f}" for lab in names))
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", choices=("fmnist", "coco"), default="fmnist")
    parser.add_argument("--sd_preset", default="stable_diffusion_3_medium",
                        help="the sd recipe's KerasHub Stable Diffusion 3 preset (name or "
                             "local folder)")
    parser.add_argument("--recipes", nargs="+", choices=("landed", "new", "gan", "sd"),
                        default=["landed", "new"])
    parser.add_argument("--gan_steps", type=int, nargs="+", default=None,
                        help="the GAN's budgets (default: --steps); give it the steps that "
                             "take the DDIM's wall time, its steps are cheaper")
    parser.add_argument("--steps", nargs="+", type=int, default=[1000, 3000],
                        help="budgets; the new recipe is evaluated at each, landed at the last")
    parser.add_argument("--images_per_label", type=int, default=100)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0],
                        help="guidance scales; each is evaluated")
    parser.add_argument("--guidance_rescale", type=float, nargs="+", default=[0.0],
                        help="guidance rescale values (0 = off); each is evaluated with each "
                             "guidance scale above 1")
    parser.add_argument("--guidance_max_noise", type=float, default=0.0,
                        help="guide only steps whose noise-to-signal ratio is at most this "
                             "(stage 3's --guidance_max_noise; 0 = every step)")
    parser.add_argument("--strength", type=float, nargs="+", default=[1.0],
                        help="1 = sampling from noise (ddim); below 1 = SDEdit variations of the "
                             "label's training images at that strength; each is evaluated")
    parser.add_argument("--eta", type=float, default=1.0,
                        help="sampling noise (stage 3's default 1; 0 = deterministic DDIM)")
    parser.add_argument("--model_dir", default="", help="evaluate this run folder only")
    parser.add_argument("--network", choices=("large", "medium", "small"), default="large",
                        help="large: the benchmark's U-Net (coco: 64 px); medium (coco): the "
                             "evidence benchmark's 32 px one; small: the demo-sized one")
    parser.add_argument("--train_flags", default="",
                        help="extra train_all.py flags for the new and gan recipes, e.g. "
                             "'--prediction v --loss_weighting min_snr'")
    parser.add_argument("--context", choices=("evidence", "all"), default="evidence",
                        help="coco: the diffusion model trains on the evidence benchmark's 6 "
                             "classes, or on all 23 (more photos behind the shared trunk; "
                             "scores stay on the 6)")
    parser.add_argument("--judge", choices=("full", "real_only"), default=None,
                        help="GAN-test's classifier: full = trained on the whole Fashion-MNIST "
                             "training split (fmnist's default), real_only = on the "
                             "benchmark's own training images (coco's only choice)")
    parser.add_argument("--work_dir", default="/tmp/bench_generator")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.images_per_label = [20], 8
    work = Path(args.work_dir)
    train_dir, test_dir, filled = dataset(args.dataset, work, args.quick)
    if args.context == "all" and args.dataset != "coco":
        parser.error("--context all is for --dataset coco")
    if (args.dataset, args.network) not in NETWORK:
        parser.error(f"--network {args.network} is defined for "
                     f"{', '.join(d for d, n in NETWORK if n == args.network)} only")
    # the classifiers look at the generator's resolution
    size = 16 if args.quick else (64 if (args.dataset, args.network) == ("coco", "large")
                                  else 48 if args.dataset == "coco" and args.network == "small"
                                  else 32)
    train, test = images_of(train_dir, filled), images_of(test_dir, filled)
    judge = args.judge or ("full" if args.dataset == "fmnist" else "real_only")
    if judge == "full" and args.dataset != "fmnist":
        parser.error("--judge full is for --dataset fmnist (custom_coco has no larger set)")
    clf = (full_fmnist_judge(work, size, args.quick) if judge == "full"
           else real_only_classifier(train_dir, test_dir, work, size, args.quick))
    from diffusion.kid import build_feature_extractor
    print(f"dataset {args.dataset}: filled labels {', '.join(filled)} "
          f"({', '.join(str(len(train[lab])) for lab in filled)} training images); KID features "
          f"{build_feature_extractor('auto').kind}; {args.images_per_label} images per label, "
          f"50 steps, eta {args.eta:g}")

    sheet = real_sheet(train, size, work / f"real_sheet_{size}px.png")
    print(f"real training images at {size} px: {sheet}")
    print("recipe | steps | train s | label | KID gen (real train) | GAN-test / real test "
          "(ratio) | GAN-test of the images the gate keeps | GAN-train (real train) | "
          "memorised: pixels (KID features)")

    combos = [(g, r, s) for s in args.strength for g in args.guidance
              for r in (args.guidance_rescale if g > 1 else [0.0])]

    def report(recipe: str, steps: int, run: Path, sec: float) -> None:
        # evaluated at once: the next budget resumes this run folder and moves its weights on
        for guidance, rescale, strength in dict.fromkeys(combos):
            evaluate_one(recipe, steps, run, sec, guidance, rescale, strength)

    def evaluate_one(recipe, steps, run, sec, guidance, rescale, strength) -> None:
        sdedit = f" sdedit s{strength:g}" if strength < 1 else ""
        m = args.guidance_max_noise
        limited = f" m{m:g}" if m and guidance > 1 else ""
        tag = (f"{args.dataset}_{args.network}_{recipe}_{steps}_g{guidance:g}"
               + (f"_r{rescale:g}" if rescale else "") + limited.replace(" ", "_")
               + sdedit.replace(" ", "_")
               + (f"_eta{args.eta:g}" if args.eta != 1.0 else "")
               # --model_dir RUN/last.weights.h5: the folder and which weights
               + (f"_{run.name}" if run.is_dir()
                  else f"_{run.parent.name}_{run.name.split('.')[0]}"))
        gen = generate(run, filled, args.images_per_label, work / "generated" / tag,
                       guidance, rescale, args.eta, strength, train, args.guidance_max_noise)
        print(f"contact sheet: {work / 'generated' / tag / 'contact_sheet.png'}")
        print_rows(f"{recipe} g{guidance:g}" + (f" r{rescale:g}" if rescale else "") + limited
                   + sdedit, str(steps), f"{sec:.0f}", gen, tag)

    def print_rows(what: str, steps: str, sec: str, gen: dict, tag: str) -> None:
        print(f"kept and moved aside by the gate: {work / 'eval' / tag / 'gate_sheet.png'}")
        for r in evaluate(gen, train, test, clf, work / "eval" / tag, size, args.quick):
            name = FMNIST_NAMES.get(r["label"], r["label"]) if args.dataset == "fmnist" else r["label"]
            ratio = r["gan_test"] / r["real_test"] if r["real_test"] else float("nan")
            print(f"{what} | {steps} | {sec} | {name} | {r['kid_gen']:.4f} "
                  f"({r['kid_train']:.4f}) | {r['gan_test']:.2f} / {r['real_test']:.2f} "
                  f"({ratio:.2f}) | {r['gan_test_kept']:.2f} | "
                  f"{r['gan_train']:.2f} ({r['real_train']:.2f}) | "
                  f"{r['memorised']:.1%} ({r['memorised_kid']:.1%})", flush=True)

    def evaluate_sd() -> None:
        from pretrained.sd3 import PresetError, load_sd3_task
        try:
            task = load_sd3_task(args.sd_preset, "img2img")
        except PresetError as err:
            print(f"sd | absent | - | all | no usable Stable Diffusion 3 weights: {err}")
            return
        names = FMNIST_NAMES if args.dataset == "fmnist" else {}
        for strength in [s for s in args.strength if s < 1] or [0.6]:
            tag = f"{args.dataset}_sd_s{strength:g}"
            gen = generate_sd(task, filled, names, args.images_per_label,
                              work / "generated" / tag, strength, train)
            print_rows(f"sd s{strength:g}", "-", "-", gen, tag)

    if args.model_dir:
        given = Path(args.model_dir)
        state = (given if given.is_dir() else given.parent) / "state.json"
        # the steps the weights have seen name the evaluation, so budgets never share one
        done = json.loads(state.read_text()).get("train_steps_done", 0) if state.exists() else 0
        report("given", done, given, 0.0)
        return 0
    if "sd" in args.recipes:
        evaluate_sd()
    for recipe in (r for r in args.recipes if r != "sd"):
        spent = 0.0
        flags = args.train_flags.split() if recipe in ("new", "gan") else []
        variant = ("_" + "_".join(f.lstrip("-") for f in flags)) if flags else ""
        diffusion_dir = train_dir
        if args.context == "all" and recipe != "landed":
            diffusion_dir, variant = coco_context_dir(work), variant + "_context_all"
        budgets = {"new": args.steps, "gan": args.gan_steps or args.steps}
        for steps in budgets.get(recipe, args.steps[-1:]):
            run, sec = train_recipe(recipe, args.dataset, diffusion_dir, filled, steps, work,
                                    args.quick, args.network, variant, flags)
            spent += sec
            report(recipe, steps, run, spent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
