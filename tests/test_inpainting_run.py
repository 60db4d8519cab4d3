"""OOD inpainting end to end with tiny randomly initialised models (no download): the ddim
backend (RePaint, SDEdit) with DDIM run folders, the keras_hub backend with a tiny Stable
Diffusion 3 built from a config (passed in as a task object, and saved as a local preset
that the command line loads), the comparison with a tiny classifier run."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cli.flags import parse_config, save_config_json  # noqa: E402
from config import DiffusionConfig, InpaintingConfig  # noqa: E402
from conftest import make_dataset, save_image, tiny_sd3, tree_hashes, write_image  # noqa: E402
from dataset.images import load_rgb  # noqa: E402
from dataset.manifest import read_manifest  # noqa: E402
from inpainting.__main__ import main  # noqa: E402
from generators.sd3 import Sd3Inpaint  # noqa: E402
from inpainting.backends import DDIM_FALLBACK, sampling_settings  # noqa: E402
from pretrained.sd3 import PresetError, load_sd3_task  # noqa: E402
from inpainting.run import plan_inpainting, run_inpainting  # noqa: E402

DDIM_FAST = ["--num_steps", "3", "--jump_length", "2", "--jump_n_sample", "2"]


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    """Two classes; images larger than the models (48x40), one smaller, one model-sized."""
    root = make_dataset(tmp_path_factory.mktemp("data") / "test",
                        {"1": {"S1": 3, "S2": 2}, "2": {"A": 3}}, size=(48, 40))
    write_image(root / "2" / "B_small.png", (20, 16), 99)
    write_image(root / "1" / "S3_square.png", (32, 32), 98)
    return root


def _ddim_run(folder: Path, conditional: bool, classes: list[str], size: int = 32) -> Path:
    """A DDIM run folder (config.json, model.json, best.weights.h5) of a tiny untrained model."""
    from diffusion.training import build_model
    from model_folder.folder import ModelFolder
    cfg = DiffusionConfig(image_size=(size, size), widths=[8, 16], block_depth=1,
                          embedding_dims=8, conditional=conditional, use_mix_precision=False,
                          channels="3")
    keras.utils.set_random_seed(0)
    model = build_model(cfg, len(classes) if conditional else 0)
    folder.mkdir(parents=True)
    run = ModelFolder(folder, "diffusion")
    run.describe(model, cfg, label="conditional" if conditional else classes[0],
                 class_names=classes, precision="float32")
    run.save_weights(model, "best")
    return folder


@pytest.fixture(scope="module")
def ddim_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"cond": _ddim_run(root / "cond", True, ["1", "2"]),
            "only1": _ddim_run(root / "only1", False, ["1"])}


@pytest.fixture(scope="module")
def sd3(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sd3")
    tasks = {kind: tiny_sd3(kind) for kind in ("inpaint", "img2img")}
    for kind, task in tasks.items():
        task.save_to_preset(str(root / kind))
    return {"tasks": tasks, "presets": {k: root / k for k in tasks}}


@pytest.fixture(scope="module")
def prompt_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.csv"
    path.write_text("class;prompt\n1;a log\n1;a tyre\n2;a heron\n*;foam\n")
    return path


def generate(*argv) -> int:
    return main(["generate", *map(str, argv)])


def _by_original(files: dict, marker: str) -> dict:
    """{original stem: bytes} of the transformed images among written files."""
    return {Path(k).name.split(marker)[0]: v for k, v in files.items() if marker in k}


def _check_outputs(test_dir: Path, out: Path, augm_type: str) -> list:
    """Every image of the test set is in out/<augm_type> at its own size; copies are
    byte-identical; transformed images equal the input wherever their mask is 0."""
    rows = read_manifest(out / "manifest.csv")
    assert len(rows) == len(list(test_dir.rglob("*.*")))
    for row in rows:
        src = Path(row.origin)
        assert row.path.startswith(f"{augm_type}/{row.label}/")
        if row.generator == "original":
            assert (out / row.path).read_bytes() == src.read_bytes()
            continue
        assert row.path.endswith(".png")
        orig, result = load_rgb(src), load_rgb(out / row.path)
        assert result.shape == orig.shape
        weights = load_rgb(out / row.params["mask_file"])[..., 0]
        assert weights.shape == orig.shape[:2] and weights.any()
        np.testing.assert_array_equal(result[weights == 0], orig[weights == 0])
        assert not np.array_equal(result[weights > 0], orig[weights > 0])
    return rows


def test_ddim_repaint_cli_end_to_end_with_resume(test_dir, ddim_runs, tmp_path, capsys):
    before = tree_hashes(test_dir)
    out = tmp_path / "ood"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--backend", "ddim",
                    "--model_dir", ddim_runs["cond"], "--mask_mode", "box", "--mask_blur", 1.5,
                    "--augm_probability", 0.6, "--batch_size", 4, *DDIM_FAST) == 0
    rows = _check_outputs(test_dir, out, "inpaint_box")
    done = [r for r in rows if r.generator == "repaint"]
    assert Counter(r.label for r in done) == {"1": 4, "2": 2}   # round(0.6 * 6), round(0.6 * 4)
    p = done[0].params
    assert p["mask"] == {"mode": "box", "area": 0.15, "region": "all"} and p["steps"] == 3
    assert p["backend"] == "ddim" and p["jump_length"] == 2 and p["prompt"] is None
    assert all(r.seed is not None for r in done) and len({r.seed for r in done}) == len(done)
    assert all(Path(r.path).name.split("_ddim_")[0] == Path(r.origin).stem for r in done)
    # feathered band: weights strictly between 0 and 255 exist and blend
    weights = load_rgb(out / p["mask_file"])[..., 0]
    assert ((weights > 0) & (weights < 255)).any()
    assert tree_hashes(test_dir) == before                      # originals untouched
    assert (out / "samples.png").is_file() and (out / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["augm_type"] == "inpaint_box"

    # resume: nothing to do; then one lost image is regenerated alone, the same
    files = {f: f.read_bytes() for f in (out / "inpaint_box").rglob("*.png")}
    capsys.readouterr()
    argv = ["--test_dir", test_dir, "--out_dir", out, "--backend", "ddim", "--model_dir",
            ddim_runs["cond"], "--mask_mode", "box", "--mask_blur", 1.5,
            "--augm_probability", 0.6, *DDIM_FAST]
    assert generate(*argv) == 0
    assert "generated 0 image(s) (6 already present)" in capsys.readouterr().out
    lost = out / done[1].path
    first = load_rgb(lost)
    lost.unlink()
    (out / "manifest.csv").unlink()
    assert generate(*argv) == 0
    assert "generated 1 image(s) (5 already present)" in capsys.readouterr().out
    # one image alone vs in a batch: the same noise; the network's float rounding may move
    # a pixel by one level
    assert np.abs(load_rgb(lost).astype(int) - first.astype(int)).max() <= 1
    assert len(read_manifest(out / "manifest.csv")) == len(rows)
    assert all(f.read_bytes() == b for f, b in files.items() if f != lost)
    # other settings in the same folder: refused, nothing changed
    assert generate(*argv[:-6], "--num_steps", 5) == 2
    assert "num_steps" in capsys.readouterr().err


def test_ddim_same_seed_same_files_other_seed_differs(test_dir, ddim_runs, tmp_path):
    def run(out, seed):
        assert generate("--test_dir", test_dir, "--out_dir", out, "--backend", "ddim",
                        "--label_models", f"1={ddim_runs['only1']}", f"2={ddim_runs['only1']}",
                        "--mask_mode", "blob", "--mask_region", "lower_third",
                        "--mask_area", 0.2, "--seed", seed, "--samples", 0, *DDIM_FAST) == 0
        return {f.relative_to(out).as_posix(): f.read_bytes()
                for f in out.rglob("*.png")}
    a, b, c = run(tmp_path / "a", 3), run(tmp_path / "b", 3), run(tmp_path / "c", 4)
    assert a == b and len(a) == 2 * 10                          # images + masks
    assert set(a) != set(c)
    a_img, c_img = _by_original(a, "_ddim_"), _by_original(c, "_ddim_")
    assert a_img.keys() == c_img.keys() and all(a_img[k] != c_img[k] for k in a_img)
    masks = [load_rgb(tmp_path / "a" / k)[..., 0] for k in a if k.startswith("masks/")]
    for m in masks:                                             # the water's region
        assert not m[: int(np.ceil(m.shape[0] * 2 / 3)) - 1].any()


def test_ddim_models_of_different_sizes_never_share_a_batch(test_dir, ddim_runs, tmp_path):
    run16 = _ddim_run(tmp_path / "run16", False, ["2"], size=16)
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--backend", "ddim",
                    "--label_models", f"1={ddim_runs['only1']}", f"2={run16}",
                    "--batch_size", 8, "--samples", 0, *DDIM_FAST) == 0  # 6 + 4 images
    rows = _check_outputs(test_dir, out, "inpaint_box")
    assert Counter(r.label for r in rows if r.generator == "repaint") == {"1": 6, "2": 4}


def test_changed_inputs_or_stray_images_refuse_a_resume(test_dir, sd3, tmp_path, capsys):
    prompts, masks, out = tmp_path / "prompts.csv", tmp_path / "masks", tmp_path / "o"
    prompts.write_text("*;a red kayak\n")
    for img in test_dir.rglob("*.*"):
        h, w = load_rgb(img).shape[:2]
        m = np.zeros((h, w), np.uint8)
        m[h // 2:, w // 2:] = 255
        save_image(masks / img.parent.name / f"{img.stem}.png", m)
    argv = ["--test_dir", str(test_dir), "--out_dir", str(out), "--prompt_dir", str(prompts),
            "--sd_preset", str(sd3["presets"]["inpaint"]), "--mask_dir", str(masks),
            "--num_steps", "2", "--augm_probability", "0.3", "--samples", "0"]
    plan = plan_inpainting(parse_config(InpaintingConfig, argv)[0], progress=False)
    run_inpainting(plan, Sd3Inpaint({"tiny": sd3["tasks"]["inpaint"]},
                                    sampling_settings(plan.cfg)), progress=False)
    assert len(plan.transformed()) == 3
    assert json.loads((out / "config.json").read_text())["_inputs"] == plan.inputs
    before = tree_hashes(out)
    capsys.readouterr()
    assert generate(*argv, "--dry-run") == 0                   # same inputs: resumable

    prompts.write_text("*;a wooden log\n")                     # same path, other contents
    assert generate(*argv) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: --out_dir {out}: the contents of the prompt file (--prompt_dir) "
                      f"changed since the first run: choose a new --out_dir"]
    prompts.write_text("*;a red kayak\n")
    used = Path(plan.transformed()[0].mask_file)
    kept = used.read_bytes()
    save_image(used, 255 - load_rgb(used))                        # a mask's pixels changed
    assert generate(*argv) == 2
    assert "mask file(s)" in capsys.readouterr().err
    used.write_bytes(kept)
    stray = out / plan.cfg.augm_type / "1" / "old_result.png"
    save_image(stray, np.zeros((8, 8, 3), np.uint8))
    assert generate(*argv) == 2
    assert "1 image(s) this run would not write" in capsys.readouterr().err
    stray.unlink()
    assert tree_hashes(out) == before                           # nothing new written


def test_ddim_sdedit_img2img_whole_image(test_dir, ddim_runs, tmp_path):
    cfg, _ = parse_config(InpaintingConfig, [
        "--test_dir", str(test_dir), "--out_dir", str(tmp_path / "o"), "--backend", "ddim",
        "--model_dir", str(ddim_runs["cond"]), "--mode", "img2img", "--num_steps", "4",
        "--strength", "0.5", "--augm_probability", "0.5"])
    plan = plan_inpainting(cfg, progress=False)
    assert plan.cfg.augm_type == "img2img" and plan.cfg.eta == 0.0
    result = run_inpainting(plan, progress=False)
    assert result.generated == 5 and result.copied == 5
    rows = read_manifest(tmp_path / "o" / "manifest.csv")
    done = [r for r in rows if r.generator == "sdedit"]
    assert len(done) == 5 and done[0].params["strength"] == 0.5
    for r in done:  # the whole image is re-rendered, at its own size
        orig, res = load_rgb(r.origin), load_rgb(tmp_path / "o" / r.path)
        assert res.shape == orig.shape and (res != orig).mean() > 0.5
        assert (load_rgb(tmp_path / "o" / r.params["mask_file"]) == 255).all()


def test_diffusion_model_img2img_and_per_image_seeds(ddim_runs):
    from diffusion.inference import load_model
    model = load_model(ddim_runs["only1"])[0]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.img2img(images, strength=0.0, steps=4), images)
    a = model.img2img(images, strength=0.5, steps=4, seed=[7, 8, 9], batch_size=3)
    assert a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, model.img2img(images, 0.5, 4, seed=[7, 8, 9],
                                                   batch_size=3))
    alone = model.img2img(images[1:2], strength=0.5, steps=4, seed=8)
    np.testing.assert_allclose(alone[0], a[1], atol=1e-4)        # its own seed, any batch
    assert not np.allclose(model.img2img(images, 0.5, 4, seed=[1, 2, 3]), a)
    eta = model.img2img(images, 0.5, 4, eta=1.0, seed=[7, 8, 9])
    assert not np.allclose(eta, a)
    masks = np.zeros((3, 32, 32), np.float32)
    masks[:, 8:20, 8:20] = 1
    b = model.inpaint(images, masks, steps=3, jump_length=2, jump_n_sample=2, seed=[7, 8, 9])
    one = model.inpaint(images[2:], masks[2:], steps=3, jump_length=2, jump_n_sample=2, seed=9)
    np.testing.assert_allclose(one[0], b[2], atol=1e-4)
    np.testing.assert_array_equal(b[masks == 0], images[masks == 0])


def test_ddim_class_without_a_model_stops_before_any_work(test_dir, ddim_runs, tmp_path,
                                                          capsys):
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--backend", "ddim",
                    "--model_dir", ddim_runs["only1"]) == 2
    err = capsys.readouterr().err
    assert "no model for label(s) 2" in err and "--model_dir" in err
    assert not out.exists()


def test_keras_hub_inpaint_with_a_task_object(test_dir, sd3, prompt_csv, tmp_path):
    before = tree_hashes(test_dir)

    def run(out, seed):
        cfg, _ = parse_config(InpaintingConfig, [
            "--test_dir", str(test_dir), "--out_dir", str(out), "--prompt_dir",
            str(prompt_csv), "--mask_mode", "box", "--num_steps", "2", "--seed", str(seed),
            "--guidance_scale", "2", "--samples", "0"])
        plan = plan_inpainting(cfg, progress=False)
        backend = Sd3Inpaint({"tiny": sd3["tasks"]["inpaint"]}, sampling_settings(plan.cfg))
        run_inpainting(plan, backend, progress=False)
        return {f.relative_to(out).as_posix(): f.read_bytes() for f in out.rglob("*.png")}

    a = run(tmp_path / "a", 5)
    rows = _check_outputs(test_dir, tmp_path / "a", "inpaint_box")
    done = [r for r in rows if r.generator == "sd3_inpaint"]
    assert len(done) == 10
    # each class takes its own prompts, then the shared ones, in file order
    by_class = {lab: [r.params["prompt"] for r in done if r.label == lab] for lab in "12"}
    assert by_class == {"1": ["a log", "a tyre", "foam", "a log", "a tyre", "foam"],
                        "2": ["a heron", "foam", "a heron", "foam"]}
    assert done[0].params["guidance_scale"] == 2.0 and done[0].params["strength"] == 1.0
    assert a == run(tmp_path / "b", 5)                          # same seed: same files
    a_img, c_img = _by_original(a, "_keras_hub_"), _by_original(run(tmp_path / "c", 6),
                                                                "_keras_hub_")
    assert a_img.keys() == c_img.keys() and all(a_img[k] != c_img[k] for k in a_img)
    assert tree_hashes(test_dir) == before


def test_keras_hub_cli_loads_a_local_preset_img2img_with_mask_dir(test_dir, sd3, prompt_csv,
                                                                  tmp_path, capsys):
    masks = tmp_path / "masks"
    for img in test_dir.rglob("*.*"):
        h, w = load_rgb(img).shape[:2]
        m = np.zeros((2 * h, 2 * w), np.uint8)                 # twice the size: resized
        m[h // 2: h, w // 2: w] = 255
        save_image(masks / img.parent.name / f"{img.stem}.png", m)
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--prompt_dir", prompt_csv,
                    "--sd_preset", sd3["presets"]["img2img"], "--mode", "img2img",
                    "--mask_dir", masks, "--num_steps", 2, "--strength", 0.6) == 0
    text = capsys.readouterr().out
    assert "note: mask" in text and "resized (nearest)" in text
    rows = _check_outputs(test_dir, out, "img2img_masks")
    done = [r for r in rows if r.generator == "sd3_img2img"]
    assert len(done) == 10 and done[0].params["model"] == str(sd3["presets"]["img2img"])
    assert done[0].params["mask"].endswith(".png") and done[0].params["strength"] == 0.6


def test_mask_of_another_aspect_ratio_is_rejected_before_any_work(test_dir, sd3, prompt_csv,
                                                                  tmp_path, capsys):
    mask = tmp_path / "m.png"
    save_image(mask, np.full((30, 30), 255, np.uint8))
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--prompt_dir", prompt_csv,
                    "--sd_preset", sd3["presets"]["inpaint"], "--mask_path", mask) == 2
    err = capsys.readouterr().err
    assert f"mask {mask} is 30x30 px but the image is" in err and "aspect" in err
    assert not out.exists()


def test_missing_prompt_file_and_unloadable_presets_fail_at_once(test_dir, tmp_path, capsys):
    before = tree_hashes(test_dir)
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--prompt_dir",
                    tmp_path / "nope.json") == 2
    assert "prompt file" in capsys.readouterr().err and not out.exists()
    prompts = tmp_path / "p.json"
    prompts.write_text('{"prompts": ["a log"]}')
    assert generate("--test_dir", test_dir, "--out_dir", out, "--prompt_dir", prompts,
                    "--sd_preset", tmp_path / "no_such_preset") == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no such folder" in errors[0] and "--backend ddim" in errors[0]
    assert not out.exists()
    empty = tmp_path / "empty_preset"
    empty.mkdir()
    with pytest.raises(PresetError, match="could not be loaded.*--backend ddim"):
        load_sd3_task(str(empty), "inpaint", fallback=DDIM_FALLBACK)
    assert tree_hashes(test_dir) == before


def test_dry_run_prints_the_plan_and_writes_nothing(test_dir, ddim_runs, tmp_path, capsys):
    out = tmp_path / "o"
    assert generate("--test_dir", test_dir, "--out_dir", out, "--backend", "ddim",
                    "--model_dir", ddim_runs["cond"], "--mask_mode", "region",
                    "--mask_region", "lower_third", "--augm_probability", 0.5,
                    "--dry-run") == 0
    text = capsys.readouterr().out
    assert "inpaint_lower_third" in text and "total: 5 image(s) to transform, 5 to copy" in text
    assert "dry run: nothing written" in text and not out.exists()


def test_compare_writes_per_class_table_and_samples(test_dir, ddim_runs, tmp_path, capsys):
    from classifier.backbones import build_classifier
    from config import ClassifierConfig
    run = tmp_path / "clf"
    run.mkdir()
    keras.utils.set_random_seed(0)
    model, _ = build_classifier("small_cnn", 2, 32, dropout=0.0, verbose=False)
    model.save_weights(run / "best.weights.h5")
    save_config_json(ClassifierConfig(train_dir="x", backbone="small_cnn", input_shape=32,
                                      dropout=0.0), run / "config.json",
                     class_names=["1", "2"])
    ood = tmp_path / "ood"
    assert generate("--test_dir", test_dir, "--out_dir", ood, "--backend", "ddim",
                    "--model_dir", ddim_runs["cond"], *DDIM_FAST) == 0
    cmp_dir = tmp_path / "cmp"
    argv = ["compare", "--model", str(run), "--test_dir", str(test_dir), "--ood_dir",
            str(ood / "inpaint_box"), "--out_dir", str(cmp_dir), "--samples", "3"]
    assert main(argv) == 0
    lines = (cmp_dir / "compare.csv").read_text().splitlines()
    assert lines[0].split(",")[:6] == ["class", "support_in", "support_ood", "recall_in",
                                       "recall_ood", "recall_drop"]
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "all (balanced acc. / macro-F1)"]
    r1 = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert int(r1["support_in"]) == int(r1["support_ood"]) == 6
    assert float(r1["recall_drop"]) == pytest.approx(float(r1["recall_in"])
                                                     - float(r1["recall_ood"]), abs=1e-5)
    assert "| class |" in (cmp_dir / "compare.md").read_text()
    assert (cmp_dir / "samples.png").is_file()
    assert (cmp_dir / "in_distribution" / "metrics.json").is_file()
    assert main(argv) == 0                       # finished evaluations are reused
    for inside in (test_dir / "cmp", ood / "inpaint_box" / "cmp"):  # never into the inputs
        assert main([*argv[:-4], "--out_dir", str(inside), "--samples", "3"]) == 2
        assert "is inside" in capsys.readouterr().err and not inside.exists()
    assert main([*argv[:-4], "--ood_dir", str(test_dir), *argv[-4:]]) == 2
    assert "another model or folder" in capsys.readouterr().err
    generate_sheet = (ood / "samples.png").read_bytes()
    assert main([*argv[:-4], "--out_dir", str(ood), "--samples", "3"]) == 2   # generate's run
    assert "inside the inpainting run that holds --ood_dir" in capsys.readouterr().err
    assert (ood / "samples.png").read_bytes() == generate_sheet
