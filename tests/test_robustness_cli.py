"""python3 -m robustness end to end on tiny images: search, report (checked in a real headless
Chromium), synthesize (+ resume, replay, an impossible error window), evaluate, and the
one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import save_image
from dataset.images import load_rgb
from dataset.manifest import read_manifest
from robustness.__main__ import main
from robustness.chains import replay

ROOT = Path(__file__).resolve().parents[1]
OPS = ["brightness_up", "rotation", "gaussian_noise", "fog"]
FAST = ["--step", "0.25", "--ops", *OPS]
TITLES = "[...document.querySelectorAll('h2')].map(e => e.textContent)"
DECODED = "[...document.images].every(i => i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two labels of 4 images (40x48 px, loaded at 32 px), a brightness-threshold .keras
    model, and a stage-4 run folder (small CNN, random weights) as a reference."""
    import keras

    from classifier.backbones import build_classifier
    from cli.flags import save_config_json
    from config import ClassifierConfig

    root = tmp_path_factory.mktemp("robustness")
    rng = np.random.default_rng(0)
    for label, base in (("dark", 80), ("light", 125)):
        for i in range(4):
            save_image(root / "imgs" / label / f"S{i % 2}_{i}.png",
                       rng.normal(base, 20, (40, 48, 3)))
    inp = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(2)
    model = keras.Model(inp, keras.layers.Softmax()(dense(
        keras.layers.GlobalAveragePooling2D()(inp))))
    dense.set_weights([np.array([[0, 0.1]] * 3, np.float32), np.array([0, -0.3 * 102.5],
                                                                      np.float32)])
    model.save(root / "model.keras")
    keras.utils.set_random_seed(0)
    cnn, _ = build_classifier("small_cnn", 2, 32, verbose=False)
    run = root / "run"
    run.mkdir()
    cnn.save_weights(run / "best.weights.h5")
    save_config_json(ClassifierConfig(train_dir="x", backbone="small_cnn", input_shape=32),
                     run / "config.json", class_names=["dark", "light"])
    return root


def check_page(path: Path, titles: list[str]) -> None:
    from reporting.browser import find_chromium, load_page
    if find_chromium() is None:
        pytest.skip("no Chromium installed")
    shot = path.with_suffix(".png")
    page = load_page(path, screenshot=shot, evaluate={"titles": TITLES, "decoded": DECODED,
                                                      "n": "document.images.length"})
    assert page.errors == [] and page.external_requests == []
    assert page.values["titles"] == titles
    assert page.values["decoded"] is True and page.values["n"] > 0
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 400 and pixels.std() > 10  # a page, not a blank screen


def test_cli_end_to_end(work, capsys):
    imgs, keras_model, run = str(work / "imgs"), str(work / "model.keras"), str(work / "run")
    out, syn = work / "search", work / "synthetic"
    common = ["--images", imgs, *FAST]

    assert main(["search", "--model", keras_model, "--out_dir", str(out), *common]) == 0
    summary = json.loads((out / "search.json").read_text())
    assert set(summary["ops"]) == set(OPS) and summary["probes_this_run"] > 0
    assert "brightness_up" in (out / "curves.csv").read_text()
    # The dark images turn "light" when brightened: a finite limit.
    assert summary["ops"]["brightness_up"]["first_critical"] is not None

    # The report: a stage-4 run as the model (class names -> top-1 table), the .keras model
    # as the reference (normalised CE).
    assert main(["report", "--model", run, "--reference_model", keras_model,
                 "--out_dir", str(out), *common]) == 0
    html = (out / "report.html").read_text()
    assert "Top-1 error against the ground truth" in html and "mCE" in html
    check_page(out / "report.html", ["Summary", "Where the model breaks", "Error curves",
                                     "Examples at the boundary",
                                     "Severity table (ImageNet-C style)"])

    def synth(count=6, seed=1):
        return main(["synthesize", "--model", keras_model, "--out_dir", str(syn),
                     "--search_dir", str(out), "--count", str(count), "--seed", str(seed),
                     "--min_augs", "1", "--max_augs", "3", *common])

    assert synth() == 0
    rows = read_manifest(syn / "manifest.csv")
    assert len(rows) == 6 and {r.generator for r in rows} == {"robustness"}
    for r in rows:
        assert r.path.startswith(f"{r.label}/") and r.quality is not None
        assert all(s["op"] in OPS and s["seed"] >= 0 for s in r.params["ops"])
        assert np.array_equal(replay(r.params), load_rgb(syn / r.path))  # bit for bit
    check_page(syn / "preview.html", ["Summary", "Originals and synthetics",
                                      "Intensity ranges"])
    before = {p.name: p.stat().st_mtime_ns for p in syn.rglob("*.png")}
    assert synth() == 0  # resumes: nothing new, nothing rewritten
    assert {p.name: p.stat().st_mtime_ns for p in syn.rglob("*.png")} == before
    assert synth(count=8) == 0  # two more
    assert len(read_manifest(syn / "manifest.csv")) == 8
    assert synth(count=8, seed=2) == 2  # other settings in the same folder are refused
    assert "made with seed=1, now 2" in capsys.readouterr().err

    # An error window the model never meets: stops, says how many it made.
    assert main(["synthesize", "--model", keras_model, "--out_dir", str(work / "none"),
                 "--search_dir", str(out), "--count", "5", "--realism", "1",
                 "--min_error", "0.99", "--max_attempts", "20", *common]) == 0
    printed = capsys.readouterr().out
    assert "could make only 0 of 5 images within 20 attempts" in printed

    ev = work / "evaluation"
    assert main(["evaluate", "--model", run, "--before_model", keras_model, "--images",
                 str(syn), "--out_dir", str(ev)]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n"] == 8 and set(metrics["models"]) == {"before", "after"}
    assert metrics["models"]["after"]["overall"]["accuracy"] is not None
    assert set(metrics["families"]) <= {"colour", "geometric", "noise", "weather"}
    assert "error_vs_clean" in metrics["change"]
    assert (ev / "evaluation.html").is_file()


def test_synthesize_resume_checks_the_pixels_and_folders_keep_their_kind(work, tmp_path,
                                                                          monkeypatch, capsys):
    """A resume accepts the same folder spelt differently (./imgs, imgs) but refuses images
    changed in place; search refuses a synthetic set as its folder, synthesize a search."""
    import shutil
    shutil.copytree(work / "imgs", tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    model = str(work / "model.keras")

    def synth(images, count):
        return main(["synthesize", "--model", model, "--images", images, "--out_dir", "syn",
                     "--search_dir", "search", "--count", str(count), "--min_augs", "1",
                     "--max_augs", "2", "--preview", "2", *FAST])

    assert synth("imgs", 2) == 0
    assert synth("./imgs", 3) == 0  # the same folder: resumed
    rows = read_manifest(tmp_path / "syn" / "manifest.csv")
    assert len(rows) == 3
    capsys.readouterr()
    first = sorted((tmp_path / "imgs" / "dark").iterdir())[0]
    save_image(first, np.full((40, 48, 3), 200))  # overwritten in place
    assert synth("imgs", 5) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "images in --images imgs changed since the first run" in err[0]
    assert read_manifest(tmp_path / "syn" / "manifest.csv") == rows

    # A search (or report) into the synthetic set, or the synthetic set as --search_dir.
    config = (tmp_path / "syn" / "config.json").read_text()
    assert main(["search", "--model", model, "--images", "imgs", "--out_dir", "syn",
                 *FAST]) == 2
    assert main(["synthesize", "--model", model, "--images", "imgs", "--out_dir", "syn2",
                 "--search_dir", "syn", *FAST]) == 2
    assert main(["synthesize", "--model", model, "--images", "imgs", "--out_dir", "search",
                 "--search_dir", "search2", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == ("error: --out_dir syn holds a synthetic set of python3 -m robustness "
                      "synthesize, not a search: choose another folder (nothing changed)")
    assert err[1].startswith("error: --search_dir syn holds a synthetic set")
    assert err[2].startswith("error: --out_dir search holds a search")
    assert (tmp_path / "syn" / "config.json").read_text() == config
    assert not (tmp_path / "syn2").exists() and not (tmp_path / "search2").exists()


def test_a_grayscale_run_sees_grey_images(work, tmp_path):
    """A stage-4 run trained with grayscale=True predicts a colour image as its grey
    version (PIL's convert("L"), as the classifier's loader does)."""
    import shutil

    from cli.flags import save_config_json
    from config import ClassifierConfig
    from robustness.predict import load_predictor, to_grey

    grey_run = tmp_path / "grey_run"
    grey_run.mkdir()
    shutil.copy(work / "run" / "best.weights.h5", grey_run)
    save_config_json(ClassifierConfig(train_dir="x", backbone="small_cnn", input_shape=32,
                                      grayscale=True),
                     grey_run / "config.json", class_names=["dark", "light"])
    colour = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    grey = np.stack([np.asarray(Image.fromarray(im).convert("L").convert("RGB"))
                     for im in colour])
    assert np.array_equal(to_grey(colour), grey)
    grey_p, colour_p = load_predictor(grey_run), load_predictor(work / "run")
    assert grey_p.grayscale and not colour_p.grayscale
    assert grey_p.fingerprint != colour_p.fingerprint  # caches and resumes tell them apart
    np.testing.assert_allclose(grey_p(colour), grey_p(grey), atol=1e-6)
    np.testing.assert_allclose(grey_p(colour), colour_p(grey), atol=1e-6)
    assert not np.allclose(colour_p(colour), colour_p(grey), atol=1e-6)


def test_an_unbounded_large_folder_gets_a_note(work, monkeypatch, capsys):
    from config import RobustnessSearchConfig
    from robustness import runs
    cfg = RobustnessSearchConfig(model=str(work / "model.keras"), images=str(work / "imgs"),
                                 ops=OPS, step=0.25)
    runs._note_unbounded(cfg, (32, 32))
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(runs, "_NOTE_ABOVE", 4)
    runs._note_unbounded(cfg, (32, 32))
    assert capsys.readouterr().out == (
        "note: no --max_images: all 8 images are used (0 MiB in memory at 32x32, up to 288 "
        "probes); --max_images 4 takes a seeded subset in proportion to the labels\n")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustness", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_bad_inputs_give_one_line_errors(work, tmp_path):
    res = _cli("search", "--model", str(tmp_path / "missing.keras"), "--images",
               str(work / "imgs"), "--out_dir", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: --model {tmp_path / 'missing.keras'} does not exist"]
    (tmp_path / "empty").mkdir()
    res = _cli("synthesize", "--model", str(work / "model.keras"), "--images",
               str(tmp_path / "empty"), "--out_dir", str(tmp_path / "o"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(f"error: no images found in {tmp_path / 'empty'}")
    assert not (tmp_path / "o").exists()
    # A file that is not a model, and a folder of someone else's files as out_dir.
    (tmp_path / "notes.txt").write_text("x")
    assert main(["search", "--model", str(tmp_path / "notes.txt"), "--images",
                 str(work / "imgs"), "--out_dir", str(tmp_path / "o")]) == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("x")
    assert main(["search", "--model", str(work / "model.keras"), "--images",
                 str(work / "imgs"), "--out_dir", str(tmp_path / "mine"), *FAST]) == 2
    assert (tmp_path / "mine" / "thesis.docx").read_text() == "x"


def test_dry_run_and_ops_listing(work, tmp_path, capsys):
    assert main(["synthesize", "--model", str(work / "model.keras"), "--images",
                 str(work / "imgs"), "--out_dir", str(tmp_path / "s"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "34 ops x (20 steps + 5 severities)" in out and "dry run" in out
    assert not (tmp_path / "s").exists()
    assert main(["ops"]) == 0
    assert "superpixels" in capsys.readouterr().out
