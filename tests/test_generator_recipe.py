"""The small-data generator recipe end to end on tiny real models and real image files:
grey 1-channel models, site-conditioned (label, site) cells in stage 3, SDEdit from real
images, "no augmentation" sampling, the step budget, and old model folders still loading."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

import train_all  # noqa: E402
from cli.flags import ConfigError  # noqa: E402
from conftest import (TINY_UNET_FLAGS, save_image, tensorboard_scalars,  # noqa: E402
                      tree_hashes)
from dataset.manifest import read_manifest  # noqa: E402
from diffusion.data import (AUGMENT_DIMS, detect_channels, find_label_images,  # noqa: E402
                            load_image, load_training_data, make_dataset, split_paths)
from diffusion.online_augment import ONLINE_AUGMENT_DIMS  # noqa: E402
from diffusion.inference import load_model, sampling_runtime  # noqa: E402
from diffusion.training import augment_inputs, read_run  # noqa: E402
from diffusion_maths.schedule import diffusion_schedule, outputs_to_noise_and_image  # noqa: E402
from diffusion_augmentation import main as augment_main  # noqa: E402
from diffusion_model import DiffusionModel  # noqa: E402

TINY = [*TINY_UNET_FLAGS, "--batch_size", "4", "--kid_every", "0", "--sample_every", "0",
        "--generate_diffusion_steps", "2"]
# categories {1} (5 real) vs {2} (9 real): label 1 gains 4, given to its rarer sites first
LAYOUT = {"1": {"S1": 4, "S2": 1}, "2": {"S1": 5, "S2": 4}}


def write_grey(path: Path, value: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = value + rng.integers(-20, 20, (20, 20))
    save_image(path, np.repeat(img[..., None], 3, axis=-1))  # RGB file, grey data


@pytest.fixture(scope="module")
def grey_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("grey") / "data"
    k = 0
    for label, sites in LAYOUT.items():
        for site, count in sites.items():
            for n in range(count):
                k += 1
                write_grey(root / label / f"{site}_{n:03d}.png", 60 if label == "1" else 180, k)
    return root


@pytest.fixture(scope="module")
def grey_model(grey_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    assert train_all.main(["--in_dir", str(grey_data), "--out_dir", str(out), "--conditional",
                           "--site_conditioning", "--train_steps", "6", "--augment_p", "0.5",
                           "--lr_decay", "cosine", "--learning_rate", "0.002", *TINY]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_grey_data_trains_a_one_channel_site_conditioned_model(grey_data, grey_model):
    assert detect_channels(find_label_images(grey_data / "1")) == 1
    saved = json.loads((grey_model / "config.json").read_text())
    assert saved["channels"] == "1" and saved["block_conditioning"] is True
    assert saved["_site_names"] == ["S1", "S2"] and saved["_class_names"] == ["1", "2"]
    # the step budget: 14 images, 15% validation -> 12 train / batch 4 = 3 steps a pass
    assert saved["_epochs"] * saved["_steps_per_epoch"] >= 6
    state = json.loads((grey_model / "state.json").read_text())
    assert state["train_steps_done"] == saved["_epochs"] * saved["_steps_per_epoch"]
    # the cosine reaches 0 at the last planned step, not before (2 passes of 3 steps)
    rates = tensorboard_scalars(grey_model / "logs", "train/epoch_learning_rate")
    assert saved["lr_decay"] == "cosine" and rates == pytest.approx([0.001, 0.0], abs=1e-6)
    model, _, _ = load_model(grey_model)
    assert model.channels == 1 and model.num_sites == 2
    assert model.augment_dims == AUGMENT_DIMS + ONLINE_AUGMENT_DIMS and saved["augment_p"] == 0.5
    images = model.generate(3, steps=2, seed=0, labels=[0, 1, 1], sites=[0, 1, 2])
    assert images.shape == (3, 16, 16, 1)
    with pytest.raises(ValueError, match="sites must be in"):
        model.generate(1, steps=2, labels=0, sites=5)


def test_stage3_writes_grey_images_for_their_site_cells(grey_data, grey_model, tmp_path):
    out = tmp_path / "balanced"
    before = tree_hashes(grey_data)
    assert augment_main(["--in_dir", str(grey_data), "--out_dir", str(out), "--balance",
                         "labels", "--weight_paths", str(grey_model), "--batch_size", "3",
                         "--generate_diffusion_steps", "2"]) == 0
    rows = [r for r in read_manifest(out / "manifest.csv") if r.generator == "ddim"]
    assert len(rows) == 4 and {r.label for r in rows} == {"1"}
    for r in rows:  # each image was generated for the site it is credited to
        assert r.params["site_index"] == ["S1", "S2"].index(r.site_id)
        assert r.path.split("/")[-1].startswith(f"{r.site_id}_ddim_")
        assert Image.open(out / r.path).mode == "L"
    assert tree_hashes(grey_data) == before


def test_sdedit_at_strength_zero_returns_its_source(grey_data, grey_model, tmp_path):
    # exact copies by design: the memorisation gate would move every one aside
    out = tmp_path / "sdedit"
    assert augment_main(["--in_dir", str(grey_data), "--out_dir", str(out), "--balance",
                         "labels", "--weight_paths", str(grey_model), "--generator", "sdedit",
                         "--strength", "0", "--generate_diffusion_steps", "4",
                         "--no-memorisation_gate"]) == 0
    rows = [r for r in read_manifest(out / "manifest.csv") if r.generator == "sdedit"]
    assert len(rows) == 4
    for r in rows:
        source = grey_data / r.params["source"]
        assert r.origin == source.resolve().as_posix() and r.params["strength"] == 0.0
        assert source.name.startswith(r.site_id + "_")  # a real image of its own cell
        expected = np.rint(load_image(source, (16, 16), 1)[..., 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(Image.open(out / r.path)), expected)
    # by default the memorisation gate moves such copies aside
    gated = tmp_path / "gated"
    assert augment_main(["--in_dir", str(grey_data), "--out_dir", str(gated), "--balance",
                         "labels", "--weight_paths", str(grey_model), "--generator", "sdedit",
                         "--strength", "0", "--generate_diffusion_steps", "4",
                         "--gate_rounds", "0"]) == 0
    assert not [r for r in read_manifest(gated / "manifest.csv") if r.generator == "sdedit"]
    assert len(read_manifest(gated / "rejected.csv")) == 4
    # strength > 0 changes the image, and each image can be made again alone (float32: bf16
    # rounding differs with the batch size)
    saved, _ = read_run(grey_model)
    sampling_runtime(grey_model, dataclasses.replace(saved, use_mix_precision=False))
    model, _, _ = load_model(grey_model)
    src = np.stack([load_image(grey_data / rows[0].params["source"], (16, 16), 1)] * 2)
    varied = model.img2img(src, strength=0.8, steps=4, seed=[7, 8], labels=0)
    assert np.abs(varied - src).mean() > 1e-3
    alone = model.img2img(src[1:], strength=0.8, steps=4, seed=[8], labels=0)
    np.testing.assert_allclose(alone[0], varied[1], atol=1e-5)


def test_img2img_starts_at_its_own_strength():
    """10 steps at strength 0.9 start at t = 0.9, not at the grid level of strength 1."""
    model = DiffusionModel(image_size=(8, 8), widths=[8, 16], block_depth=1, embedding_dims=8)
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    near, full = (model.img2img(images, strength=s, steps=10, seed=1) for s in (0.9, 1.0))
    assert np.abs(near - full).mean() > 1e-3


def test_sampling_asks_for_no_augmentation():
    """The compiled sampling step feeds a zero augmentation vector: its prediction is the
    network's with zeros, not the one for images that were flipped and rotated."""
    model = DiffusionModel(image_size=(8, 8), widths=[8, 16], block_depth=1, embedding_dims=8,
                           augment_dims=4, channels=1)
    out_layer = model.ema_network.get_layer("pred_noise")  # an untrained net predicts 0
    rng = np.random.default_rng(0)
    out_layer.kernel.assign(rng.normal(0, 0.5, out_layer.kernel.shape).astype("float32"))
    # a data range of +-50 in normalised units: sampling's clipping leaves these predictions be
    model.pixel_mean.assign([0.5])
    model.pixel_std.assign([0.01])
    noisy = rng.standard_normal((2, 8, 8, 1)).astype("float32")
    t = 0.5
    noise_rate, signal_rate = [np.float32(v) for v in diffusion_schedule(np.float64(t))]

    def predicted(augment):
        out = model.ema_network([noisy, np.full((2, 1, 1, 1), noise_rate ** 2, "float32"),
                                 np.tile(np.asarray(augment, "float32"), (2, 1))]).numpy()
        return outputs_to_noise_and_image(out, noisy, noise_rate, signal_rate, "eps")[1]

    ids = np.zeros(2, "int32")
    _, pred = model._step_fn(False)(noisy, np.float32(t), np.float32(0.4), np.float32(0),
                                    np.zeros_like(noisy), ids, ids,
                                    np.zeros((2, 8), "float32"), np.float32(1),
                                    np.float32(0))
    np.testing.assert_allclose(pred.numpy(), predicted([0, 0, 0, 0]), rtol=1e-4, atol=1e-4)
    assert np.abs(pred.numpy() - predicted([1, 0.5, 0.1, 0.2])).mean() > 1e-2


def test_online_augmentation_is_told_to_the_network(grey_data):
    """While training, each image is shifted (whole pixels), scaled, brightened and changed
    in contrast with probability p, and its vector says so; validation images, and p = 0,
    stay as they are with zeros in the online entries."""
    paths = find_label_images(grey_data / "2")
    stage1 = np.tile([[1.0, 0.1, 0.0, 0.0]], (len(paths), 1)).astype("float32")
    originals = np.stack([load_image(p, (16, 16), 1) for p in paths])

    def batch(p, training):
        ds = make_dataset(paths, None, (16, 16), len(paths), training, seed=0, channels=1,
                          augment=stage1, augment_p=p, drop_remainder=False)
        images, cond = next(iter(ds))
        return images.numpy(), cond["augment"].numpy()

    for p, training in ((0.0, True), (1.0, False)):
        images, vectors = batch(p, training)
        assert vectors.shape == (len(paths), AUGMENT_DIMS + ONLINE_AUGMENT_DIMS)
        assert np.all(vectors[:, AUGMENT_DIMS:] == 0)
        np.testing.assert_allclose(vectors[:, :AUGMENT_DIMS], stage1)
        if not training:
            np.testing.assert_allclose(images, originals, atol=1e-6)
    images, vectors = batch(1.0, True)
    online = vectors[:, AUGMENT_DIMS:]
    assert np.all(online[:, 2:] != 0)           # scale, brightness, contrast always drawn
    shifts = online[:, :2] * 16
    np.testing.assert_allclose(shifts, np.round(shifts), atol=1e-5)   # whole pixels
    assert np.abs(shifts).max() <= 2 and images.min() >= 0 and images.max() <= 1
    assert np.abs(np.sort(images.reshape(len(paths), -1), 1)
                  - np.sort(originals.reshape(len(paths), -1), 1)).mean() > 1e-2


@pytest.mark.parametrize("balance", [0.0, 1.0])
def test_label_balance_draws_the_rare_label_as_often_and_keeps_validation_distinct(
        grey_data, balance):
    """5 dark images of label 0 against 9 bright ones of label 1: with balance 1 one pass of
    the training data holds about as many of each, every copy with its own label; the
    validation images are split off first and never repeated."""
    paths = [*find_label_images(grey_data / "1"), *find_label_images(grey_data / "2")]
    labels = [0] * 5 + [1] * 9
    data = load_training_data(paths, labels, (16, 16), 1, 0.15, seed=0, channels=1,
                              label_balance=balance)
    seen = [(float(img.numpy().mean()), int(lab[0])) for img, lab in data.train]
    assert len(seen) == data.n_train
    assert all((mean < 0.5) == (lab == 0) for mean, lab in seen)   # dark = label 0
    counts = np.bincount([lab for _, lab in seen], minlength=2)
    val = [int(x) for x in data.val_labels]
    train_distinct = {0: 5 - val.count(0), 1: 9 - val.count(1)}
    assert data.n_val == 2 and sorted(val) == [0, 1]   # one of each label (stratified)
    if balance == 0:
        assert data.repeats == {} and list(counts) == [train_distinct[0], train_distinct[1]]
    else:
        assert counts[0] == train_distinct[0] * data.repeats[0]
        assert counts[1] == train_distinct[1] * data.repeats[1]
        assert abs(counts[0] / counts[1] - 1) <= 0.2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_split_takes_each_labels_share_and_no_more(seed):
    """20 photos of a rare label beside 100: the rare label gives exactly 3 of 15% to
    validation whatever the seed (a random 18 of all 120 hold 3 of them only on average),
    and without labels the split is the one-group split, so runs of one label keep their
    validation images."""
    paths = [f"p{i}" for i in range(120)]
    labels = [0] * 20 + [1] * 100
    train, val = split_paths(paths, 0.15, seed, labels=labels)
    rare_val = [p for p in val if int(p[1:]) < 20]
    assert len(rare_val) == 3 and len(val) == 18
    assert sorted(train + val, key=lambda p: int(p[1:])) == paths
    assert split_paths(paths, 0.15, seed) == split_paths(paths, 0.15, seed, labels=[0] * 120)
    assert split_paths(paths, 0.15, seed)[1] != split_paths(paths, 0.15, seed + 1)[1]
    assert split_paths(paths, 0.0, seed) == (paths, [])


def test_augment_inputs_of_new_and_old_run_folders(grey_model, tmp_path):
    """A new run gets the online entries; a folder keeps what its model.json says; a folder
    from before model.json (and online augmentation) has the stage-1/flip entries only."""
    import shutil
    from config import DiffusionConfig
    cfg = DiffusionConfig(in_dir="x")
    assert augment_inputs(cfg) == AUGMENT_DIMS + ONLINE_AUGMENT_DIMS
    assert augment_inputs(dataclasses.replace(cfg, augment_conditioning=False)) == 0
    assert augment_inputs(dataclasses.replace(cfg, model="gan")) == 0  # DiffAugment instead
    assert augment_inputs(cfg, grey_model) == AUGMENT_DIMS + ONLINE_AUGMENT_DIMS
    old = tmp_path / "old"
    shutil.copytree(grey_model, old)
    described = json.loads((old / "model.json").read_text())
    described["config"]["augment_dims"] = AUGMENT_DIMS
    (old / "model.json").write_text(json.dumps(described))
    assert augment_inputs(cfg, old) == AUGMENT_DIMS
    (old / "model.json").unlink()
    assert augment_inputs(cfg, old) == AUGMENT_DIMS


def test_a_model_folder_from_before_the_recipe_still_loads(tmp_path):
    data = tmp_path / "data"
    for n in range(6):
        write_grey(data / "1" / f"S1_{n}.png", 100, n)
    out = tmp_path / "models"
    assert train_all.main(["--in_dir", str(data), "--out_dir", str(out), "--num_epochs", "1",
                           "--channels", "3", "--no-block_conditioning",
                           "--no-augment_conditioning", "--residual_block", "postnorm",
                           "--unet_dropout", "0.2", *TINY]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    before = load_model(run)[0].generate(2, steps=2, seed=1)
    described = json.loads((run / "model.json").read_text())
    assert described["config"].pop("dropout") == 0.2   # sampling without dropout layers
    described["config"].pop("residual_block")   # a model.json from before the block choice
    (run / "model.json").write_text(json.dumps(described))
    assert load_model(run)[0].residual_block == "postnorm"
    cfg = json.loads((run / "config.json").read_text())
    for key in ("channels", "block_conditioning", "site_conditioning", "augment_conditioning",
                "prediction", "loss_weighting", "min_snr_gamma", "site_dropout", "train_steps",
                "residual_block", "unet_dropout"):
        cfg.pop(key)  # as written before these settings existed
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "model.json").unlink()  # and before folders described their network
    model = load_model(run)[0]
    assert not model.block_conditioning and model.channels == 3
    assert model.residual_block == "postnorm"
    np.testing.assert_array_equal(model.generate(2, steps=2, seed=1), before)


def test_a_model_folder_describes_its_network_and_loading_sets_no_policy(grey_model, tmp_path):
    """model.json (the model's get_config) builds the network, whatever config.json's
    architecture settings say; loading leaves the dtype policy and devices to the caller."""
    import shutil
    from model_folder.files import MODEL_JSON
    run = tmp_path / "run"
    shutil.copytree(grey_model, run)
    described = json.loads((run / MODEL_JSON).read_text())
    assert described["class"] == "DiffusionModel"
    assert described["config"]["channels"] == 1 and described["config"]["num_sites"] == 2
    before = load_model(run)[0].generate(2, steps=2, seed=3, labels=[0, 1])
    cfg = json.loads((run / "config.json").read_text())
    cfg.update(widths=[64, 128, 256], block_depth=3, use_mix_precision=True)  # a renamed flag
    (run / "config.json").write_text(json.dumps(cfg))
    model = load_model(run)[0]
    assert keras.config.dtype_policy().name == "float32"
    assert model.widths == described["config"]["widths"]
    np.testing.assert_array_equal(model.generate(2, steps=2, seed=3, labels=[0, 1]), before)
    (run / MODEL_JSON).write_text("{not json")
    with pytest.raises(ConfigError, match="model.json is damaged"):
        load_model(run)
