"""The GAN generator family end to end with a tiny real model: train_all.py --model gan writes
the usual run folder (config, model.json, weights, curves, samples, KID), resumes, loads
without its flags, and stage 3 samples it with the same plan and manifest."""
from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import run_diffusion  # noqa: E402
import train_all  # noqa: E402
from conftest import GAP_LAYOUT, make_dataset  # noqa: E402
from dataset.manifest import read_manifest  # noqa: E402
from diffusion.inference import load_model  # noqa: E402
from diffusion_augmentation import main as augment  # noqa: E402
from gan_model import ConditionalGan, diff_augment  # noqa: E402

LAYOUT = GAP_LAYOUT
GAN = ["--model", "gan", "--image_size", "16", "16", "--widths", "8", "16",
       "--gan_latent_dim", "8", "--batch_size", "8", "--kid_every", "1", "--kid_images", "8",
       "--kid_features", "random", "--sample_every", "1", "--validation_split", "0.2"]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("orig") / "data", LAYOUT, size=(20, 16))


@pytest.fixture(scope="module")
def gan_run(original, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # DDIM-only flags: trained without, with a note
        assert train_all.main(["--in_dir", str(original), "--out_dir", str(out),
                               "--conditional", "--train_steps", "6", "--prediction", "v",
                               "--lr_decay", "cosine", *GAN]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    (out / "printed.txt").write_text(printed.getvalue())
    return run


def test_diff_augment_changes_images_alike_per_seed_and_passes_gradients():
    import tensorflow as tf
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)), "float32")
    a, b = diff_augment(x, tf.constant([1, 2])), diff_augment(x, tf.constant([1, 2]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - x.numpy()).mean() > 0.05
    assert np.abs(diff_augment(x, tf.constant([1, 3])).numpy() - a.numpy()).mean() > 0.01
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(diff_augment(x, tf.constant([1, 2])))
    assert tape.gradient(total, x) is not None


def test_train_all_gan_writes_a_run_folder_that_loads_and_resumes(gan_run, original):
    assert ("note: --model gan trains without the DDIM-only --prediction, --lr_decay"
            in (gan_run.parent / "printed.txt").read_text())
    files = {p.name for p in gan_run.iterdir()}
    assert {"config.json", "model.json", "last.weights.h5", "history.csv", "state.json",
            "curves.png", "samples"} <= files
    description = json.loads((gan_run / "model.json").read_text())
    assert description["class"] == "ConditionalGan" and description["config"]["num_classes"] == 4
    state = json.loads((gan_run / "state.json").read_text())
    assert state["train_steps_done"] >= 6 and state["monitor"] == "val_kid"
    history = (gan_run / "history.csv").read_text().splitlines()
    assert "d_loss" in history[0] and "val_kid" in history[0]
    model, _, meta = load_model(gan_run)
    assert isinstance(model, ConditionalGan) and meta["_class_names"] == ["1", "2", "3", "4"]
    a = model.generate(5, seed=3, labels=1, batch_size=2)
    assert a.shape == (5, 16, 16, 3) and 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(model.generate(1, seed=3, labels=1, start_index=4)[0], a[4])
    assert np.abs(model.generate(1, seed=3, labels=2)[0] - a[0]).mean() > 1e-4  # label counts
    # resumed to a larger budget from the folder alone: the GAN carries on
    assert run_diffusion.main(["--load_and_train", "--model_dir", str(gan_run),
                               "--train_steps", "12"]) == 0
    assert json.loads((gan_run / "state.json").read_text())["train_steps_done"] >= 12
    assert len((gan_run / "history.csv").read_text().splitlines()) > len(history)


def test_stage3_samples_a_gan_with_the_same_plan_and_manifest(gan_run, original, tmp_path,
                                                              capsys):
    out = tmp_path / "balanced"
    # without the gate: which of a barely trained GAN's images the audit flags among noise
    # photos is chance, and the plan's counts are what is checked (the audit still runs)
    assert augment(["--in_dir", str(original), "--out_dir", str(out), "--categories", "1,2",
                    "3,4", "--weight_paths", str(gan_run), "--no-memorisation_gate"]) == 0
    rows = read_manifest(out / "manifest.csv")
    made = [r for r in rows if r.generator == "ddim"]
    assert Counter(r.label for r in made) == {"1": 3, "2": 6}
    assert made[0].params["model"] == str(gan_run.resolve())
    assert all(r.quality is not None for r in made)                  # audited
    assert augment(["--in_dir", str(original), "--out_dir", str(tmp_path / "s"),
                    "--categories", "1,2", "3,4", "--weight_paths", str(gan_run),
                    "--generator", "sdedit"]) == 2
    assert "cannot vary real images (sdedit)" in capsys.readouterr().err


def test_inpainting_with_a_gan_folder_is_one_clear_error(gan_run, original, tmp_path, capsys):
    from inpainting.__main__ import main as inpainting
    out = tmp_path / "ood"
    assert inpainting(["generate", "--test_dir", str(original), "--out_dir", str(out),
                       "--backend", "ddim", "--model_dir", str(gan_run)]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "ConditionalGan, which cannot inpaint" in errors[0]
    assert not (out / "manifest.csv").exists()
