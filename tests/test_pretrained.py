"""Stable Diffusion 3 as stage 3's generator (`--generator sd_img2img`) and the prompt writer,
with tiny randomly initialised KerasHub models saved as local presets and loaded through the
real `from_preset` (no download)."""
from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import GAP_LAYOUT, make_dataset, tiny_sd3, tree_hashes  # noqa: E402
from dataset.images import load_rgb  # noqa: E402
from dataset.manifest import read_manifest  # noqa: E402
from diffusion_augmentation import main  # noqa: E402
from pretrained.__main__ import main as pretrained_main  # noqa: E402
from pretrained.prompts import load_prompts  # noqa: E402
from pretrained.sd3 import noisy_embeddings, sd3_img2img  # noqa: E402

LAYOUT = GAP_LAYOUT


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("orig") / "data", LAYOUT, size=(40, 32))


@pytest.fixture(scope="module")
def sd3(tmp_path_factory) -> dict:
    task = tiny_sd3("img2img")
    preset = tmp_path_factory.mktemp("sd3") / "tiny_sd3"
    task.save_to_preset(str(preset))
    return {"task": task, "preset": preset}


def tiny_gpt2():
    """A GPT-2 causal LM with random weights: one layer, a character vocabulary."""
    import keras_hub
    chars = list(string.ascii_letters + string.digits + string.punctuation) + ["\u0120"]
    vocab = {c: i for i, c in enumerate(chars + ["\u0120a", "<|endoftext|>"])}
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=["\u0120 a"])
    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocab), num_layers=1,
                                             num_heads=2, hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=64)
    return keras_hub.models.GPT2CausalLM(
        backbone=backbone,
        preprocessor=keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=32))


def augment(original: Path, out: Path, *extra) -> int:
    return main(["--in_dir", str(original), "--out_dir", str(out), "--categories", "1,2", "3,4",
                 "--generator", "sd_img2img", "--generate_diffusion_steps", "4",
                 "--strength", "0.5", "--guidance_scale", "2", *map(str, extra)])


def test_sd3_edit_is_reproducible_per_seed_and_prompt_noise_varies_it(sd3):
    task = sd3["task"]
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    def edit(**kw):
        return sd3_img2img(task, image, "a log", **{"seed": 3, "strength": 0.5,
                                                   "num_steps": 4, **kw})
    first = edit()
    assert first.shape == (32, 32, 3) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(edit(), first)                      # its seed alone decides
    assert np.abs(edit(seed=4) - first).mean() > 1e-3                 # another seed, another image
    noisy = edit(prompt_noise_std=0.5)
    assert np.abs(noisy - first).mean() > 1e-4                        # DIAGen's prompt noise
    np.testing.assert_array_equal(edit(prompt_noise_std=0.5), noisy)  # ...from the same seed
    np.testing.assert_array_equal(edit(strength=0.0), image)          # strength 0: the source
    embeddings = ("context", "negative", "pooled", "negative pooled")
    assert noisy_embeddings(embeddings, 0.0, 1) is embeddings
    with pytest.raises(ValueError, match="works at"):
        sd3_img2img(task, image[:16], "a log", seed=0)


def test_stage3_sd_img2img_prompts_manifest_audit_and_resume(original, sd3, tmp_path, capsys):
    before = tree_hashes(original)
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("class;prompt\n1;a log\n1;a tyre\n2;a heron\n")
    out = tmp_path / "balanced"
    flags = ["--sd_preset", sd3["preset"], "--prompt_file", prompts, "--prompt_noise_std", 0.1]
    assert augment(original, out, *flags) == 0
    rows = read_manifest(out / "manifest.csv")
    edits = [r for r in rows if r.generator == "sd_img2img"]
    assert Counter(r.label for r in edits) == {"1": 3, "2": 6}
    by_index = sorted((r for r in edits if r.label == "1"), key=lambda r: r.params["index"])
    assert [r.params["prompt"] for r in by_index] == ["a log", "a tyre", "a log"]
    assert {r.params["prompt"] for r in edits if r.label == "2"} == {"a heron"}
    first = by_index[0]
    assert first.params["model"] == str(sd3["preset"].resolve())
    assert first.params["strength"] == 0.5 and first.params["prompt_noise_std"] == 0.1
    assert (original / first.params["source"]).is_file()
    assert first.params["source"].split("/")[0] == "1" and "image_seed" in first.params
    assert first.origin == (original / first.params["source"]).resolve().as_posix()
    assert all(r.quality is not None for r in edits)                  # the audit ran
    assert (out / "audit.csv").is_file() and (out / "contact_sheets" / "2.png").is_file()
    assert load_rgb(out / first.path).shape == (32, 32, 3)
    assert tree_hashes(original) == before

    # interrupted: an image and the manifest lost; the re-run makes that image alone, the same
    lost = out / first.path
    pixels = load_rgb(lost)
    lost.unlink()
    (out / "manifest.csv").unlink()
    capsys.readouterr()
    assert augment(original, out, *flags) == 0
    assert "generated 1 image(s) (8 already present)" in capsys.readouterr().out
    np.testing.assert_array_equal(load_rgb(lost), pixels)
    # other prompt settings are another run: refused, nothing changed
    assert augment(original, out, *flags[:4], "--prompt_noise_std", 0.2) == 2
    assert "prompt_noise_std" in capsys.readouterr().err
    # an edited prompt file is another run too: refused, nothing changed
    before = tree_hashes(out)
    prompts.write_text("class;prompt\n1;a log\n1;a tyre\n2;a grey heron\n")
    assert augment(original, out, *flags) == 2
    assert "other prompts" in capsys.readouterr().err and tree_hashes(out) == before


def test_template_prompts_name_label_and_site(original, sd3, tmp_path):
    out = tmp_path / "balanced"
    assert augment(original, out, "--sd_preset", sd3["preset"], "--prompt_template",
                   "a {label} at {site}", "--categories", "1", "3") == 0
    edits = [r for r in read_manifest(out / "manifest.csv") if r.generator == "sd_img2img"]
    assert {r.params["prompt"] for r in edits} == {f"a 1 at {r.site_id}" for r in edits}


def test_unusable_presets_and_prompts_fail_in_one_line_before_any_work(original, sd3,
                                                                      tmp_path, capsys):
    out = tmp_path / "o"
    missing = tmp_path / "no_such_preset"
    assert augment(original, out, "--sd_preset", missing) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "no such folder" in err[0] and "--generator sdedit" in err[0]
    empty = tmp_path / "empty_preset"
    empty.mkdir()
    assert augment(original, out, "--sd_preset", empty) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "could not be loaded" in err[0]
    prompts = tmp_path / "p.csv"
    prompts.write_text("1;a log\n")
    assert augment(original, out, "--sd_preset", sd3["preset"], "--prompt_file", prompts) == 2
    assert "no prompt for class(es) 2" in capsys.readouterr().err
    assert augment(original, out, "--sd_preset", sd3["preset"], "--prompt_template",
                   "a {colour} {label}") == 2
    assert "unknown field(s) colour" in capsys.readouterr().err
    assert not out.exists()


def test_prompts_command_writes_varied_prompts_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "prompts.csv"
    assert pretrained_main(["prompts", "--labels", "bicycle", "car", "--per_class", "5",
                            "--out", str(out)]) == 0
    table = load_prompts(out)
    assert list(table) == ["bicycle", "car"] and all(len(v) == 5 for v in table.values())
    assert all(p.startswith("a photo of a bicycle, ") for p in table["bicycle"])
    assert len(set(table["car"])) == 5                                # no variation twice
    text = out.read_text()
    assert pretrained_main(["prompts", "--labels", "x", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == text


def test_prompts_command_with_a_local_causal_lm_preset(tmp_path):
    preset = tmp_path / "tiny_gpt2"
    tiny_gpt2().save_to_preset(str(preset))
    out = tmp_path / "lm.csv"
    assert pretrained_main(["prompts", "--labels", "car", "--per_class", "3", "--lm_preset",
                            str(preset), "--max_length", "20", "--out", str(out)]) == 0
    prompts = load_prompts(out)["car"]
    assert len(prompts) == 3 and all(p.startswith("a photo of a car") for p in prompts)
    assert pretrained_main(["prompts", "--labels", "car", "--lm_preset",
                            str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()
