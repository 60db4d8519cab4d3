"""Shared fixtures: tiny real image datasets written to tmp folders."""
from __future__ import annotations

import hashlib
import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


# The tiny U-Net every stage-2 test trains in seconds on a CPU (16x16, widths 8-16, one
# block per level), as DiffusionModel arguments and as the flags of the stage-2 commands.
TINY_UNET = dict(image_size=(16, 16), widths=[8, 16], block_depth=1, embedding_dims=8)


def as_flags(settings: dict) -> list[str]:
    """Command-line flags of settings: {"widths": [8, 16]} -> ["--widths", "8", "16"]."""
    flags = []
    for name, value in settings.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        flags += [f"--{name}", *(str(v) for v in values)]
    return flags


TINY_UNET_FLAGS = as_flags(TINY_UNET)


# A stage-3 dataset: categories {1,2} (9 real) vs {3,4} (18 real), so labels 1 and 2 gain
# 3 and 6 images (label 1 split over its sites S1 and S2).
GAP_LAYOUT = {"1": {"S1": 4, "S2": 2}, "2": {"S1": 3}, "3": {"S1": 8, "S2": 4}, "4": {"S1": 6}}


def save_image(path: Path, image: np.ndarray, fmt: str | None = None) -> Path:
    """The one image writer of the tests: an (H, W) grey or (H, W, 3) RGB array, clipped to
    0..255, written with PIL (not the code under test); the suffix picks the format.

    Example:
        >>> save_image(tmp_path / "in" / "1" / "S1_000.png", np.zeros((16, 24, 3)))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8)).save(path, format=fmt)
    return path


def write_image(path: Path, size=(24, 16), seed: int = 0, fmt: str | None = None) -> Path:
    """Writes a small random RGB image (width, height) = size; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    return save_image(path, rng.integers(30, 226, size=(size[1], size[0], 3)), fmt)


def make_dataset(root: Path, layout: dict[str, dict[str, int]], size=(24, 16),
                 suffix: str = ".jpg") -> Path:
    """Writes root/<label>/<site>_<n><suffix> for layout {label: {site: count}}."""
    seed = 0
    for label, sites in layout.items():
        for site, count in sites.items():
            for n in range(count):
                seed += 1
                write_image(root / label / f"{site}_{n:03d}{suffix}", size, seed)
    return root


# Small coloured classes a classifier can learn in a few epochs: plain red, striped green,
# blue with a bright square (purple: a label the test data does not have).
CLASS_COLOURS = {"red": (200, 50, 50), "green": (50, 170, 60), "blue": (50, 70, 200),
                 "purple": (150, 40, 160)}


def class_image(label: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A noisy (size, size, 3) uint8 image of one of CLASS_COLOURS' classes."""
    img = np.array(CLASS_COLOURS[label], dtype=float)[None, None] + rng.normal(0, 35, (size, size, 3))
    if label == "green":      # stripes
        img[::4] *= 0.5
    elif label == "blue":     # a bright square
        img[4:10, 4:10] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


def write_class_images(root: Path, per_class: dict[str, int], seed: int,
                       suffix: str = ".png") -> Path:
    """root/<label>/s_NNN<suffix> with per_class[label] images of `class_image`."""
    rng = np.random.default_rng(seed)
    for label, n in per_class.items():
        for i in range(n):
            save_image(root / label / f"s_{i:03d}{suffix}", class_image(label, rng))
    return root


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tiny_sd3(kind: str = "img2img"):
    """A Stable Diffusion 3 task with random weights at 32 px: character-level CLIP
    tokenizers, 2-layer text encoders, a 1-layer MMDiT, a small VAE."""
    import keras
    import keras_hub
    from keras_hub.src.models.clip.clip_preprocessor import CLIPPreprocessor
    from keras_hub.src.models.clip.clip_text_encoder import CLIPTextEncoder
    from keras_hub.src.models.clip.clip_tokenizer import CLIPTokenizer
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    chars = string.ascii_lowercase + string.digits + ".,;!?'-"
    vocab = list(chars) + [c + "</w>" for c in chars] + ["ai", "<|endoftext|>",
                                                         "<|startoftext|>"]
    vocab = {t: i for i, t in enumerate(vocab)}
    merges = ["a i"]  # the tokenizer needs at least one merge rule
    pre = keras_hub.models.StableDiffusion3TextToImagePreprocessor(
        CLIPPreprocessor(CLIPTokenizer(vocab, merges, pad_with_end_token=True),
                         sequence_length=16),
        CLIPPreprocessor(CLIPTokenizer(vocab, merges), sequence_length=16))
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.StableDiffusion3Backbone(
        mmdit_patch_size=2, mmdit_hidden_dim=32, mmdit_num_layers=1, mmdit_num_heads=2,
        mmdit_position_size=32, mmdit_qk_norm=None, mmdit_dual_attention_indices=None,
        vae=VAEBackbone([32, 32, 32, 32], [1, 1, 1, 1], [32, 32, 32, 32], [1, 1, 1, 1],
                        sampler_method="mode", name="vae"),
        clip_l=CLIPTextEncoder(len(vocab), 16, 16, 2, 2, 32, "quick_gelu", -2, name="clip_l"),
        clip_g=CLIPTextEncoder(len(vocab), 32, 32, 2, 2, 64, "gelu", -2, name="clip_g"),
        image_shape=(32, 32, 3))
    cls = (keras_hub.models.StableDiffusion3Inpaint if kind == "inpaint"
           else keras_hub.models.StableDiffusion3ImageToImage)
    return cls(backbone=backbone, preprocessor=pre)


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    """Two labels; label 1 has sites of 6, 2 and 1 images, label 2 of 3 and 3."""
    return make_dataset(tmp_path / "in", {"1": {"S1": 6, "S2": 2, "S3": 1},
                                          "2": {"A": 3, "B": 3}})


# One tiny randomly initialised model per kind of model folder (seeded: the same weights
# every time), at the size each kind's tests load in well under a second.
TINY_CLASSES = ["a", "b", "c"]
TINY_MODELS = {
    "ddim": dict(TINY_UNET, conditional=True),
    "gan": dict(model="gan", image_size=(16, 16), widths=[8, 16], gan_latent_dim=8,
                conditional=True),
    "classifier": dict(backbone="small_cnn", input_shape=16),
    "feature": dict(hidden_dim=16, blocks=1, embedding_dims=8),
}
FEATURE_DIM = 6


def tiny_model_folder(kind: str, folder: Path, **changes) -> Path:
    """Writes a model folder of `kind` ("ddim", "gan", "classifier", "feature") with a tiny
    random model, through the project's own writers; `changes` alter TINY_MODELS[kind].

    Example:
        >>> tiny_model_folder("classifier", tmp_path / "clf", input_shape=24)
    """
    import keras

    from model_folder.folder import ModelFolder
    settings = {**TINY_MODELS[kind], **changes}
    keras.utils.set_random_seed(0)
    folder = Path(folder)
    if kind in ("ddim", "gan"):
        from config import DiffusionConfig
        from diffusion.training import build_model
        cfg = DiffusionConfig(**settings, channels="3", use_mix_precision=False)
        model = build_model(cfg, len(TINY_CLASSES))
        run = ModelFolder(folder, "diffusion")
        run.describe(model, cfg, label="conditional", class_names=TINY_CLASSES,
                     precision="float32")
        run.save_weights(model, "last")
        run.save_weights(model, "best")
    elif kind == "classifier":
        from classifier.backbones import build_classifier
        from classifier.runs import architecture, save_model_json
        from config import ClassifierConfig
        cfg = ClassifierConfig(**settings)
        arch = architecture(cfg, len(TINY_CLASSES))
        model, _ = build_classifier(**arch, weights=None, verbose=False)
        run = ModelFolder(folder, "classifier")
        run.write_config(cfg, class_names=TINY_CLASSES)
        save_model_json(folder, arch)
        run.save_weights(model)
    else:
        from config import FeatureDiffusionConfig
        from feature_diffusion.train import train_feature_model
        rng = np.random.default_rng(0)
        x = np.abs(rng.normal(size=(30, FEATURE_DIM))).astype("float32")
        cfg = FeatureDiffusionConfig(**settings, train_steps=2, batch_size=8, loss_every=1)
        train_feature_model(x, np.arange(30) % 3, TINY_CLASSES, cfg, folder, progress=False)
    return folder


@pytest.fixture(scope="session")
def tiny_model_folders(tmp_path_factory) -> dict[str, Path]:
    """{kind: a folder of tiny_model_folder(kind)}, made once: copy one before changing it."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {kind: tiny_model_folder(kind, root / kind) for kind in TINY_MODELS}


@pytest.fixture(autouse=True)
def restore_float32_policy():
    """Training sets Keras' global dtype policy, as a command does for its process
    (mixed_bfloat16 on this CPU; loading sets none); every test, and so every module
    fixture set up after one, starts with float32, so that none depends on another's order."""
    import sys

    def reset():
        if "keras" in sys.modules:
            sys.modules["keras"].config.set_dtype_policy("float32")
    reset()
    yield
    reset()


def _tensorboard_events(log_dir: Path):
    """("<sub-folder>/<tag>", step, summary value) of every event file below `log_dir`, read
    as TensorBoard reads them."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                yield f"{path.parent.relative_to(log_dir)}/{value.tag}", event.step, value


def tensorboard_tags(log_dir: Path) -> dict[str, int]:
    """{"<sub-folder>/<tag>": number of events} below `log_dir` (e.g. "validation/epoch_kid")."""
    tags: dict[str, int] = {}
    for key, _, _ in _tensorboard_events(log_dir):
        tags[key] = tags.get(key, 0) + 1
    return tags


def tensorboard_scalars(log_dir: Path, key: str) -> list[float]:
    """The values of one "<sub-folder>/<tag>" (e.g. "train/epoch_learning_rate") below
    `log_dir`, in step order."""
    import tensorflow as tf
    points = [(step, float(tf.make_ndarray(value.tensor)))
              for k, step, value in _tensorboard_events(log_dir) if k == key]
    return [v for _, v in sorted(points)]


def _copy_originals(train: Path, out: Path) -> list:
    """Copies train/<label>/*.jpg into out/ as a stage-3 folder's originals; their rows."""
    from dataset.manifest import ManifestRow
    rows = []
    for p in sorted(train.rglob("*.jpg")):
        dst = out / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
        rows.append(ManifestRow(f"{p.parent.name}/{p.name}", p.parent.name, "s", str(p),
                                "original"))
    return rows


def classifier_dataset(root: Path) -> dict:
    """Three colour classes (14/10/8 training, 6 test each), a stage-3-like balanced folder
    (12 synthetic images, one of them mislabelled: a blue picture filed under red) and a
    classic fill at the same counts, each with its manifest."""
    from PIL import Image

    from dataset.manifest import ManifestRow, write_manifest
    train = write_class_images(root / "train", {"red": 14, "green": 10, "blue": 8}, seed=1,
                               suffix=".jpg")
    test = write_class_images(root / "test", {"red": 6, "green": 6, "blue": 6}, seed=2)
    # Stage-3-like balanced folder: originals + synthetic ("ddim") images, with a manifest.
    bal = root / "balanced"
    rows = _copy_originals(train, bal)
    rng = np.random.default_rng(3)
    for label, n in {"green": 4, "blue": 6, "red": 2}.items():
        for i in range(n):
            name = f"{label}/ddim_{i}.png"
            # The last red synthetic image is really blue: DIAGen should weight it down.
            save_image(bal / name, class_image("blue" if (label, i) == ("red", 1) else label, rng))
            rows.append(ManifestRow(name, label, "s", "", "ddim", i, {}, 0.5))
    write_manifest(bal / "manifest.csv", rows)
    # The same gap filled classically: flipped copies of real images, the same counts.
    fill = root / "classic_fill"
    crow = _copy_originals(train, fill)
    for label, n in {"green": 4, "blue": 6, "red": 2}.items():
        for i, src in enumerate(sorted((train / label).glob("*.jpg"))[:n]):
            name = f"{label}/classic_{i}.png"
            Image.open(src).transpose(Image.FLIP_LEFT_RIGHT).save(fill / name)
            crow.append(ManifestRow(name, label, "s", str(src), "albumentations", i,
                                    {"flip": True}))
    write_manifest(fill / "manifest.csv", crow)
    return {"root": root, "train": train, "test": test, "balanced": bal,
            "classic_fill": fill}
