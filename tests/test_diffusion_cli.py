"""Stage 2 end to end through the CLIs: run folder, resume, inference with manifest,
inpainting, dry runs, bad input, train_all (per-label failures, MirroredStrategy on 2 CPUs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import run_diffusion  # noqa: E402
import train_all  # noqa: E402
from conftest import TINY_UNET_FLAGS, save_image, tensorboard_tags, tree_hashes  # noqa: E402
from dataset.images import load_rgb  # noqa: E402
from dataset.manifest import read_manifest  # noqa: E402
from diffusion.data import load_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = [*TINY_UNET_FLAGS, "--batch_size", "8", "--kid_features", "random",
              "--kid_images", "8", "--kid_diffusion_steps", "3", "--sample_every", "1",
              "--generate_diffusion_steps", "4", "--learning_rate", "0.003"]


def _write_images(folder: Path, n: int, colour, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = np.empty((20, 24, 3), np.uint8)
        img[:] = np.clip(np.array(colour) * rng.uniform(0.6, 1.0), 0, 255)
        img[::3] //= 2
        save_image(folder / f"S{i % 2}_{i}.{'jpg' if i % 2 else 'png'}", img)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """red/ (images directly + one corrupt file) and blue/2/ (images one folder down)."""
    root = tmp_path_factory.mktemp("diffusion_data")
    _write_images(root / "red", 20, (220, 40, 40), 0)
    (root / "red" / "S9_broken.jpg").write_bytes(b"not a jpeg")
    _write_images(root / "blue" / "2", 20, (30, 60, 210), 1)
    return root


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    code = run_diffusion.main(["--in_dir", str(data_dir / "red"), "--out_dir", str(out),
                               "--num_epochs", "2", "--kid_every", "1", *TINY_FLAGS])
    assert code == 0
    (run,) = list(out.iterdir())
    return run


def test_training_fills_a_run_folder(run_dir):
    for name in ("config.json", "last.weights.h5", "best.weights.h5", "history.csv",
                 "curves.png", "state.json", "samples/epoch_0001.png", "samples/final.png"):
        assert (run_dir / name).is_file(), name
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["widths"] == [8, 16] and cfg["image_size"] == [16, 16]
    assert cfg["_label"] == "red" and cfg["_num_train"] + cfg["_num_val"] == 20  # corrupt skipped
    state = json.loads((run_dir / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["finished"] and state["best_epoch"] in (1, 2)
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 3 and "val_kid" in header and "val_n_loss" in header
    kid = [float(line.split(",")[header.index("val_kid")]) for line in lines[1:]]
    assert all(np.isfinite(kid))
    # best is a copy, not the same file
    assert not os.path.samefile(run_dir / "best.weights.h5", run_dir / "last.weights.h5")
    tags = tensorboard_tags(run_dir / "logs")   # what TensorBoard shows: per epoch
    assert tags["train/epoch_n_loss"] == 2 and tags["validation/epoch_n_loss"] == 2
    assert tags["validation/epoch_kid"] == 2 and tags["samples/samples"] == 2


def _optimizer_iterations(weights: Path) -> int:
    import h5py
    with h5py.File(weights, "r") as fh:
        return int(fh["optimizer/vars/0"][()])


def test_resume_continues_epochs_and_optimizer(run_dir, tmp_path, capsys):
    run = shutil.copytree(run_dir, tmp_path / "run")
    steps_before = _optimizer_iterations(run / "last.weights.h5")
    assert steps_before > 0
    # a learning-rate schedule has no saved rate variable: the run keeps its constant rate
    code = run_diffusion.main(["--load_and_train", "--model_dir", str(run), "--num_epochs", "3",
                               "--kid_every", "0", "--kid_features", "random",
                               "--lr_decay", "cosine"])
    assert code == 0
    assert "ignoring --lr_decay" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["lr_decay"] == "constant"
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 3
    lines = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2"]
    assert len({len(line.split(",")) for line in lines}) == 1  # same columns after resume
    assert _optimizer_iterations(run / "last.weights.h5") == steps_before * 3 // 2
    assert run_diffusion.main(["--load_and_train", "--model_dir", str(run),
                               "--num_epochs", "3"]) == 2  # nothing left to do: clear error


def test_a_resumed_run_keeps_its_kid_features(run_dir, tmp_path, capsys):
    """Started with the offline random features, a resumed run with --kid_features auto
    keeps them (its best KID stays comparable) instead of switching to InceptionV3."""
    run = shutil.copytree(run_dir, tmp_path / "run_kid")
    assert json.loads((run / "state.json").read_text())["kid_features"] == "random"
    capsys.readouterr()
    assert run_diffusion.main(["--load_and_train", "--model_dir", str(run), "--num_epochs", "3",
                               "--kid_every", "1", "--kid_features", "auto"]) == 0
    assert "InceptionV3" not in capsys.readouterr().out  # never tried the other features
    state = json.loads((run / "state.json").read_text())
    assert state["kid_features"] == "random" and state["epochs_done"] == 3


def test_inference_writes_images_and_manifest(run_dir, tmp_path):
    out = tmp_path / "generated"
    argv = ["--runtime", "inference", "--model_dir", str(run_dir), "--out_dir", str(out),
            "--images_to_generate", "3", "--generate_diffusion_steps", "4", "--eta", "0.5"]
    assert run_diffusion.main(argv) == 0
    files = sorted((out / "red").iterdir())
    assert len(files) == 3 and all(f.name.startswith("ddim_red_") for f in files)
    assert load_rgb(files[0]).shape == (16, 16, 3)
    rows = read_manifest(out / "manifest.csv")
    assert [r.generator for r in rows] == ["ddim"] * 3
    assert rows[0].params["eta"] == 0.5 and rows[0].params["steps"] == 4 and rows[0].seed == 42
    assert {(out / r.path) for r in rows} == set(files)
    # same seed again: same names (deterministic), nothing overwritten or listed twice
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    assert run_diffusion.main(argv) == 0
    assert sorted((out / "red").iterdir()) == files
    assert all(f.stat().st_mtime_ns == t for f, t in mtimes.items())
    assert len(read_manifest(out / "manifest.csv")) == 3
    # another seed: new images beside the old ones
    assert run_diffusion.main(argv + ["--seed", "7"]) == 0
    assert len(list((out / "red").iterdir())) == 6
    assert len(read_manifest(out / "manifest.csv")) == 6


def test_load_model_from_folder_or_weights_file_gives_same_samples(run_dir):
    from diffusion.inference import load_model
    best, cfg, meta = load_model(run_dir)
    last, _, _ = load_model(run_dir / "last.weights.h5")
    assert meta["_label"] == "red" and cfg.widths == [8, 16]
    a = best.generate(2, steps=3, seed=1)
    np.testing.assert_array_equal(a, load_model(run_dir / "best.weights.h5")[0].generate(
        2, steps=3, seed=1))
    assert last.generate(2, steps=3, seed=1).shape == a.shape


def test_inpainting_keeps_unmasked_pixels(run_dir, data_dir, tmp_path):
    src = tmp_path / "inp"
    originals = sorted((data_dir / "red").glob("*.png"))[:2]
    for p in originals:
        (src / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(p, src / "images" / p.name)
        mask = np.zeros((20, 24, 3), np.uint8)
        mask[6:14, 8:16] = 255
        save_image(src / "masks" / p.name, mask)
    out = tmp_path / "out"
    assert run_diffusion.main(["--runtime", "inpainting", "--model_dir", str(run_dir),
                               "--inpainting_dir", str(src), "--out_dir", str(out),
                               "--generate_diffusion_steps", "4", "--jump_length", "2",
                               "--jump_n_sample", "2"]) == 0
    rows = read_manifest(out / "manifest.csv")
    assert [r.generator for r in rows] == ["repaint"] * 2
    assert rows[0].site_id == originals[0].name.split("_")[0]
    from diffusion.data import load_mask
    for row, orig in zip(rows, originals):
        result = load_rgb(out / row.path)
        expected = np.rint(load_image(orig, (16, 16)) * 255).astype(np.uint8)
        keep = load_mask(src / "masks" / orig.name, (16, 16)) == 0
        np.testing.assert_array_equal(result[keep], expected[keep])


def test_dry_runs_write_nothing(data_dir, tmp_path, capsys):
    out = tmp_path / "never"
    assert run_diffusion.main(["--in_dir", str(data_dir / "blue"), "--out_dir", str(out),
                               "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "[DiffusionConfig]" in text and "would train label blue on 20 images" in text
    assert train_all.main(["--in_dir", str(data_dir), "--out_dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "[red]" in text and "[blue]" in text
    assert train_all.main(["--in_dir", str(data_dir), "--out_dir", str(out), "--conditional",
                           "--dry-run"]) == 0
    assert "one conditional model for labels blue, red" in capsys.readouterr().out
    assert not out.exists()


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    assert run_diffusion.main(["--in_dir", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_diffusion.main(["--in_dir", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    assert run_diffusion.main(["--runtime", "inference", "--model_dir", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_diffusion.main(["--in_dir", "x", "--widths", "8", "20"])
    assert "multiple of the 8 GroupNorm groups" in capsys.readouterr().err


def test_a_dataset_root_with_a_stray_image_is_not_trained_as_one_label(data_dir, tmp_path,
                                                                        capsys):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    shutil.copy(next((root / "red").iterdir()), root / "stray.png")
    assert run_diffusion.main(["--in_dir", str(root), "--out_dir", str(tmp_path / "o"),
                               *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "holds 1 image(s) and sub-folders with" in err and "stray.png" in err
    assert not (tmp_path / "o").exists()


def test_train_all_stops_at_first_failure(data_dir, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    (root / "a_bad").mkdir()
    (root / "a_bad" / "S1_x.jpg").write_bytes(b"broken")
    out = tmp_path / "models"
    assert train_all.main(["--in_dir", str(root), "--out_dir", str(out), *TINY_FLAGS]) == 1
    text = capsys.readouterr().out
    assert "a_bad | failed" in text and "blue | not run" in text and "red | not run" in text
    (report,) = out.glob("train_all_*.csv")
    assert "a_bad,failed" in report.read_text()


@pytest.mark.slow
def test_train_all_rerun_keeps_finished_labels_and_resumes_the_interrupted_one(
        data_dir, tmp_path, capsys):
    out = tmp_path / "models"
    argv = ["--in_dir", str(data_dir), "--out_dir", str(out), "--num_epochs", "2",
            "--kid_every", "0", "--sample_every", "0", *TINY_FLAGS]
    assert train_all.main(argv) == 0
    runs = {p.name.split("_")[0]: p for p in out.iterdir() if p.is_dir()}
    assert set(runs) == {"red", "blue"}
    # As a kill during blue's second epoch leaves it.
    state = json.loads((runs["blue"] / "state.json").read_text())
    (runs["blue"] / "state.json").write_text(json.dumps({**state, "epochs_done": 1,
                                                         "finished": False}))
    red_before = tree_hashes(runs["red"])
    capsys.readouterr()
    assert train_all.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"[red] finished earlier with the same settings: {runs['red']}" in printed
    assert f"[blue] resuming {runs['blue']}" in printed
    assert {p for p in out.iterdir() if p.is_dir()} == set(runs.values())   # no new folder
    assert tree_hashes(runs["red"]) == red_before
    assert json.loads((runs["blue"] / "state.json").read_text())["finished"] is True
    # Two finished runs of one label with the same settings: an error naming both.
    shutil.copytree(runs["red"], out / (runs["red"].name + "x"))
    assert train_all.main(argv) == 1
    assert "2 finished runs of red with these settings" in capsys.readouterr().err
    # Other settings: a new run, the old ones untouched.
    assert train_all.main([*argv, "--labels", "blue", "--seed", "7"]) == 0
    assert len([p for p in out.iterdir() if p.name.startswith("blue_")]) == 2


@pytest.mark.slow
def test_train_all_keep_going_mirrored_on_two_cpu_devices(data_dir, tmp_path):
    """A fresh process: logical CPU devices must be set before TensorFlow starts."""
    root = tmp_path / "data"
    (root / "a_bad").mkdir(parents=True)
    (root / "a_bad" / "S1_x.jpg").write_bytes(b"broken")
    shutil.copytree(data_dir / "blue", root / "blue")
    out = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "train_all.py", "--in_dir", str(root), "--out_dir", str(out),
         "--keep_going", "--distribute", "mirrored", "--cpu_devices", "2", "--num_epochs", "1",
         "--kid_every", "0", *TINY_FLAGS],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]  # one label failed
    assert "a_bad | failed" in proc.stdout and "blue | ok" in proc.stdout
    assert "2 replica(s)" in proc.stdout
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert (run / "best.weights.h5").exists()


@pytest.mark.parametrize("command", ["run_diffusion", "train_all"])
def test_an_out_dir_inside_the_training_data_is_refused(command, data_dir, tmp_path, capsys):
    """Otherwise the sample grids and curves become training images of the next run."""
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    before = tree_hashes(root)
    main = run_diffusion.main if command == "run_diffusion" else train_all.main
    in_dir = root / "red" if command == "run_diffusion" else root
    for out in (in_dir, in_dir / "models"):
        assert main(["--in_dir", str(in_dir), "--out_dir", str(out), *TINY_FLAGS]) == 2
        err = capsys.readouterr().err
        assert f"--out_dir {out} is inside --in_dir {in_dir}" in err
    assert tree_hashes(root) == before


def test_resuming_from_damaged_weights_is_a_one_line_error(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    last = broken / "last.weights.h5"
    last.write_bytes(last.read_bytes()[:1000])
    assert run_diffusion.main(["--load_and_train", "--model_dir", str(broken),
                               "--num_epochs", "9"]) == 2
    err = capsys.readouterr().err
    assert f"{last} cannot be loaded" in err and "Traceback" not in err
