"""Stage 3 end to end with a real (tiny, briefly trained) DDIM model and real image files."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

import run_diffusion  # noqa: E402
from conftest import GAP_LAYOUT, TINY_UNET_FLAGS, make_dataset, tree_hashes  # noqa: E402
from dataset.images import load_rgb  # noqa: E402
from dataset.manifest import read_manifest  # noqa: E402
from diffusion_augmentation import main  # noqa: E402
from gap_filling.contact_sheet import write_contact_sheet  # noqa: E402

TINY = [*TINY_UNET_FLAGS, "--batch_size", "8", "--kid_every", "0", "--sample_every", "0",
        "--generate_diffusion_steps", "2"]
LAYOUT = GAP_LAYOUT


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("orig") / "data", LAYOUT, size=(20, 16))


@pytest.fixture(scope="module")
def model_dir(original, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    assert run_diffusion.main(["--in_dir", str(original / "1"), "--out_dir", str(out),
                               "--num_epochs", "1", *TINY]) == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def augment(original, out, *extra) -> int:
    return main(["--in_dir", str(original), "--out_dir", str(out), "--categories", "1,2", "3,4",
                 "--generate_diffusion_steps", "3", "--batch_size", "4", *extra])


def label_site_counts(out: Path) -> dict[str, dict[str, int]]:
    return {lab: dict(Counter(p.name.split("_")[0] for p in (out / lab).iterdir()))
            for lab in LAYOUT}


def test_exact_counts_provenance_and_resume(original, model_dir, tmp_path, capsys):
    out = tmp_path / "balanced"
    # noise images from an untrained model among noise photos: which of them the audit flags
    # is chance, so the counts are checked without the gate (it has its own tests)
    ungated = ("--weight_paths", str(model_dir), "--label_models", f"2={model_dir}",
               "--no-memorisation_gate")
    before = tree_hashes(original)
    # labels 1 and 2 share one model (trained on label 1) through --label_models
    assert augment(original, out, *ungated) == 0
    assert label_site_counts(out) == {"1": {"S1": 4, "S2": 5}, "2": {"S1": 9},
                                      "3": {"S1": 8, "S2": 4}, "4": {"S1": 6}}
    rows = read_manifest(out / "manifest.csv")
    assert Counter(r.generator for r in rows) == {"original": 27, "ddim": 9}
    ddim = [r for r in rows if r.generator == "ddim"]
    assert {r.params["steps"] for r in ddim} == {3} and all(r.seed is not None for r in ddim)
    assert {r.path for r in rows} == {p.relative_to(out).as_posix() for p in out.glob("[1-4]/*")}
    assert load_rgb(out / ddim[0].path).shape == (16, 16, 3)
    # originals unchanged, input untouched
    assert (out / "3" / "S2_000.jpg").read_bytes() == (original / "3" / "S2_000.jpg").read_bytes()
    assert tree_hashes(original) == before
    assert (out / "contact_sheets" / "1.png").exists() and (out / "contact_sheets" / "2.png").exists()
    assert "category {1,2}: 9 real -> 18 images" in (out / "summary.txt").read_text()

    # an interrupted run: two images and the manifest missing; the re-run makes just those
    first = {p.name: load_rgb(p) for p in (out / "1").glob("*_ddim_*")}
    lost = sorted(first)[:2]
    for name in lost:
        (out / "1" / name).unlink()
    (out / "manifest.csv").unlink()
    capsys.readouterr()
    assert augment(original, out, *ungated) == 0
    assert "generated 2 image(s) (7 already present)" in capsys.readouterr().out
    for name in lost:  # per-image seeds: the same pixels again, alone or in a batch
        assert np.abs(load_rgb(out / "1" / name).astype(int) - first[name]).max() <= 1
    assert len(read_manifest(out / "manifest.csv")) == 36


def test_same_seed_same_images_other_seed_other_images(original, model_dir, tmp_path):
    args = ("--label_models", f"1={model_dir}", f"2={model_dir}", "--eta", "0.5")
    assert augment(original, tmp_path / "a", *args) == 0
    assert augment(original, tmp_path / "b", *args) == 0
    assert augment(original, tmp_path / "c", *args, "--seed", "7") == 0
    pick = lambda d: sorted(p for p in (d / "2").glob("*_ddim_*"))
    a, b, c = (np.stack([load_rgb(p) for p in pick(tmp_path / d)]) for d in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_mapping_fails_before_any_work(original, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert augment(original, out, "--weight_paths", str(model_dir)) == 2
    assert "no model for label(s) 2" in capsys.readouterr().err
    not_a_model = tmp_path / "empty_model"
    not_a_model.mkdir()
    assert augment(original, out, "--label_models", f"1={not_a_model}", f"2={model_dir}") == 2
    assert "is not a run folder (no config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        augment(original, out, "--label_models", "1", "--weight_paths", str(model_dir))
    assert exc.value.code == 2 and "expects LABEL=MODEL_DIR" in capsys.readouterr().err
    assert not out.exists()


def test_dry_run_and_balance_labels(original, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert augment(original, out, "--balance", "labels", "--dry-run",
                   "--label_models", *[f"{lab}={model_dir}" for lab in "124"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "dry run: nothing written" in text
    assert "total: 21 synthetic images to generate" in text  # 6 + 9 + 0 + 6: all up to 12
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["_label"] == "1"


def test_memorisation_gate_moves_flagged_images_aside_and_lists_them(original, model_dir,
                                                                     tmp_path, capsys):
    out = tmp_path / "gated"
    # the 100th percentile: every image nearer than the farthest real pair is flagged
    args = ("--label_models", f"1={model_dir}", f"2={model_dir}", "--memorisation_gate",
            "--gate_rounds", "0", "--audit_percentile", "100", "--audit_features", "random")
    assert augment(original, out, *args) == 0
    audit = {Path(r["path"]).name: r for r in csv.DictReader((out / "audit.csv").open())}
    flagged = sorted(name for name, r in audit.items() if r["flagged"] == "True")
    assert len(audit) == 9 and flagged, "the 100th percentile flags the generated images"
    assert f"memorisation gate: {len(flagged)} flagged image(s) moved" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "rejected").glob("*/*.png")) == flagged
    assert (out / "closest_pairs.png").is_file() and (out / "audit_summary.csv").is_file()
    rejected = read_manifest(out / "rejected.csv")
    assert len(rejected) == len(flagged) and all(r.path.startswith("rejected/") for r in rejected)
    assert all(r.quality is not None and r.quality < 1 for r in rejected)  # distance / threshold
    kept = [r for r in read_manifest(out / "manifest.csv") if r.generator == "ddim"]
    assert len(kept) == 9 - len(flagged) and all(r.quality >= 1 for r in kept)
    assert f"short by {len(flagged)}" in (out / "summary.txt").read_text()
    for label in {r.label for r in rejected}:  # a third row: the images moved aside
        assert Image.open(out / "contact_sheets" / f"{label}.png").height == 22 + 3 * 100 + 4
    assert augment(original, out, *args) == 0  # a re-run does not generate them again
    assert "generated 0 image(s) (9 already present)" in capsys.readouterr().out


def test_contact_sheet_rows_real_generated_and_moved_aside(tmp_path):
    colours = {"real": (200, 0, 0), "generated": (0, 200, 0), "aside": (0, 0, 200)}
    files = {}
    for name, rgb in colours.items():
        files[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (8, 8), rgb).save(files[name])
    cell, head, margin, label_w = 32, 22, 4, 78

    def centre(row: int) -> tuple[int, int]:  # of the row's first thumbnail
        return label_w + margin + cell // 2, head + row * (cell + margin) + cell // 2
    two = write_contact_sheet([files["real"]], [files["generated"]], tmp_path / "two.png", cell)
    three = write_contact_sheet([files["real"]], [files["generated"]], tmp_path / "three.png",
                                cell, aside=[files["aside"]])
    assert Image.open(two).height == head + 2 * (cell + margin) + margin
    sheet = Image.open(three).convert("RGB")
    assert sheet.height == head + 3 * (cell + margin) + margin
    assert [sheet.getpixel(centre(k)) for k in range(3)] == list(colours.values())


@pytest.mark.parametrize("generator", ["ddim", "sdedit"])
def test_the_gate_replaces_flagged_images_with_fresh_ones_and_resumes_the_same(
        original, model_dir, tmp_path, capsys, generator):
    """Each flagged image gets a fresh one (the next index of its label, same cell; sdedit:
    the next real image of the cell), audited in turn, for --gate_rounds rounds; a rerun
    plans and keeps exactly the same images."""
    out = tmp_path / "gated"
    args = ("--label_models", f"1={model_dir}", f"2={model_dir}", "--memorisation_gate",
            "--gate_rounds", "2", "--audit_percentile", "60", "--audit_features", "random",
            "--generator", generator)
    assert augment(original, out, *args) == 0
    first_run = capsys.readouterr().out
    planned = {1: 3, 2: 6}  # GAP_LAYOUT: labels 1 and 2 gain 3 and 6 images
    kept = [r for r in read_manifest(out / "manifest.csv") if r.generator == generator]
    rejected = read_manifest(out / "rejected.csv")
    fresh = [r for r in kept + rejected if "replaces" in r.params]
    assert rejected and fresh, "the 60th percentile flags some images, replaced by fresh ones"
    assert len(kept) + len(rejected) == 9 + len(fresh)
    first_round = [r for r in rejected if r.params["index"] < planned[int(r.label)]]
    assert len(fresh) >= len(first_round)   # every planned image flagged got a replacement
    by_name = {Path(r.path).name: r for r in kept + rejected}
    for r in fresh:
        replaced = by_name[Path(r.params["replaces"]).name]
        assert r.label == replaced.label and r.site_id == replaced.site_id
        assert r.params["index"] >= planned[int(r.label)]
        if generator == "sdedit":  # another real image of the cell, where it has one
            cell = [p for p in (original / r.label).iterdir() if p.name.startswith(r.site_id)]
            assert (r.params["source"] != replaced.params["source"]) == (len(cell) > 1)
    assert all(r.quality >= 1 for r in kept) and all(r.quality < 1 for r in rejected)
    assert "fresh replacement(s) made in" in (out / "summary.txt").read_text()
    # every round's images counted once; none was there before this run
    assert f"generated {9 + len(fresh)} image(s) (0 already present)" in first_run
    before = tree_hashes(out)
    assert augment(original, out, *args) == 0
    assert f"generated 0 image(s) ({9 + len(fresh)} already present)" in capsys.readouterr().out
    assert {k: v for k, v in tree_hashes(out).items() if k.endswith(".png")} == \
        {k: v for k, v in before.items() if k.endswith(".png")}


def test_sample_weights_picks_the_file_of_the_folder(original, model_dir, tmp_path, capsys):
    import shutil
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    (folder / "last.weights.h5").write_bytes(b"")   # only a run that reads it can fail
    args = ("--label_models", f"1={folder}", f"2={folder}", "--no-memorisation_gate")
    assert augment(original, tmp_path / "best", *args) == 0
    made = [r for r in read_manifest(tmp_path / "best" / "manifest.csv") if r.generator == "ddim"]
    assert made and {r.params["weights"] for r in made} == {"best"}
    capsys.readouterr()
    assert augment(original, tmp_path / "last", *args, "--sample_weights", "last") == 2
    assert "last.weights.h5" in capsys.readouterr().err
    assert not (tmp_path / "last").exists()
    # a weights file instead of the folder is sampled as it is, whatever --sample_weights says
    assert augment(original, tmp_path / "file", "--label_models",
                   f"1={folder / 'best.weights.h5'}", f"2={folder / 'best.weights.h5'}",
                   "--no-memorisation_gate", "--sample_weights", "last") == 0
    made = [r for r in read_manifest(tmp_path / "file" / "manifest.csv") if r.generator == "ddim"]
    assert made and all("weights" not in r.params for r in made)


@pytest.mark.parametrize("damage", ["truncated", "empty", "pickle", "other_architecture",
                                    "deeper", "config_nonsense", "config_not_json"])
def test_a_broken_model_folder_fails_before_any_output_and_the_fix_reruns(
        damage, original, model_dir, tmp_path, capsys):
    import pickle
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = [broken / n for n in ("best.weights.h5", "last.weights.h5")
               if (broken / n).exists()]
    config = json.loads((broken / "config.json").read_text())
    if damage == "truncated":
        for w in weights:
            w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "empty":
        for w in weights:
            w.write_bytes(b"")
    elif damage == "pickle":
        for w in weights:
            w.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    elif damage in ("other_architecture", "deeper"):   # the network the folder describes
        described = json.loads((broken / "model.json").read_text())
        # deeper: Keras would load the shared layers and only warn
        described["config"].update({"widths": [16, 32]} if damage == "other_architecture"
                                   else {"block_depth": 2})
        (broken / "model.json").write_text(json.dumps(described))
    elif damage == "config_nonsense":
        (broken / "config.json").write_text(json.dumps({**config, "widths": "8,16"}))
    else:
        (broken / "config.json").write_text("{not json")
    out = tmp_path / "out"
    argv = ["--label_models", f"1={broken}", f"2={model_dir}"]
    assert augment(original, out, *argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(broken) in err
    assert not out.exists()            # so the corrected rerun is not refused
    assert augment(original, out, "--label_models", f"1={model_dir}", f"2={model_dir}") == 0
