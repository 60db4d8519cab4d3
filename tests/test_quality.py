"""Memorisation audit and recognisability (quality/): the threshold maths, the audit on real
files with the fixed random KID network and a tiny trained classifier, GAN-test/GAN-train,
the CLI's folder rules and the report panel.

Images: three labels that differ by colour and pattern (16 px), as in the classifier tests,
so a small CNN learns them in a few epochs; one trained classifier is shared per module.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset.manifest import ManifestRow, write_manifest
from quality_maths import neighbours
from conftest import class_image, save_image, tree_hashes, write_class_images

SIZE = 16


def _checkerboard() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    c = (((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8)
    return np.stack([c, 255 - c, c // 2], -1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """train/ and test/ folders, a grey 1-channel training image, and a stage-3-like
    balanced/ folder whose synthetic rows hold: an exact copy of a training image, a grey
    copy of the grey training image, a checkerboard unlike any real image, good red images,
    and 'blue' images that look green."""
    root = tmp_path_factory.mktemp("quality")
    train = write_class_images(root / "train", {"red": 10, "green": 10, "blue": 10}, seed=1)
    test = write_class_images(root / "test", {"red": 6, "green": 6, "blue": 6}, seed=2)
    grey = class_image("green", np.random.default_rng(7))[..., 1]
    save_image(train / "green" / "grey_000.png", grey)
    bal = root / "balanced"
    rows = []
    for p in sorted(train.rglob("*.png")):
        dst = bal / p.parent.name / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
        rows.append(ManifestRow(f"{p.parent.name}/{p.name}", p.parent.name, "s", str(p),
                                "original"))
    rng = np.random.default_rng(3)
    synthetic = {"red/ddim_copy.png": None, "green/ddim_grey_copy.png": None,
                 "red/ddim_checker.png": _checkerboard()}
    synthetic.update({f"red/ddim_{i}.png": class_image("red", rng) for i in range(4)})
    synthetic.update({f"blue/ddim_{i}.png": class_image("green", rng) for i in range(4)})
    for name, arr in synthetic.items():
        if name == "red/ddim_copy.png":
            shutil.copyfile(train / "red" / "s_003.png", bal / name)
        elif name == "green/ddim_grey_copy.png":
            shutil.copyfile(train / "green" / "grey_000.png", bal / name)
        else:
            save_image(bal / name, arr)
        rows.append(ManifestRow(name, name.split("/")[0], "s", "", "ddim", 0, {}))
    write_manifest(bal / "manifest.csv", rows)
    return {"root": root, "train": train, "test": test, "balanced": bal}


@pytest.fixture(scope="module")
def classifier_run(data):
    """A real-only small CNN trained on train/ (the GAN-test judge)."""
    from classifier.training import train_run
    from cli.flags import parse_config
    from config import ClassifierConfig
    cfg, _ = parse_config(ClassifierConfig, [
        "--train_dir", str(data["train"]), "--test_dir", str(data["test"]),
        "--out_dir", str(data["root"] / "runs"), "--run_name", "real_only",
        "--backbone", "small_cnn", "--input_shape", str(SIZE), "--batch_size", "8",
        "--learning_rate", "3e-3", "--number_epochs", "8", "--early_stop_patience", "0",
        "--seed", "0", "--workers", "1"])
    result = train_run(cfg, verbose=0)
    assert result.metrics["tests"]["test"]["accuracy"] > 0.6   # chance is 1/3
    return result.run_dir


@pytest.fixture(scope="module")
def kid_random():
    from quality.features import kid_space
    return kid_space("random")


def _by_label(folder: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.png")) for d in sorted(folder.iterdir()) if d.is_dir()}


def _synthetic(data) -> list[Path]:
    return sorted(p for p in data["balanced"].rglob("ddim_*.png"))


# ---------------------------------------------------------------- pure maths


def test_threshold_is_the_percentile_of_test_to_train_nearest_distances():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 8)), rng.normal(size=(25, 8))
    idx, dist = neighbours.nearest(test, train, chunk=7)   # chunks must not change anything
    # Brute force, written independently: cosine distance of every pair, row minimum.
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)   # noqa: E731
    full = 1.0 - unit(test) @ unit(train).T
    np.testing.assert_allclose(dist, full.min(axis=1), atol=1e-12)
    np.testing.assert_array_equal(idx, full.argmin(axis=1))
    t = neighbours.memorisation_threshold(dist, percentile=5.0)
    assert t.value == pytest.approx(np.percentile(full.min(axis=1), 5.0))
    assert t.n_reference == 25 and "5th percentile of 25" in t.rule
    assert neighbours.memorisation_threshold(dist, 50.0).value == pytest.approx(np.median(dist))
    # l2 on unit vectors is sqrt(2 * cosine distance)
    _, d_l2 = neighbours.nearest(test, train, metric="l2")
    np.testing.assert_allclose(d_l2, np.sqrt(2 * dist), atol=1e-9)


def test_tiny_reference_sets_use_the_minimum_and_none_is_an_error():
    t = neighbours.memorisation_threshold([0.4, 0.2, 0.3], percentile=5.0, min_reference=5)
    assert t.value == 0.2 and "minimum of 3" in t.rule
    assert neighbours.memorisation_threshold([0.4] * 4 + [0.1], min_reference=5).value \
        == pytest.approx(np.percentile([0.4] * 4 + [0.1], 5))
    with pytest.raises(ValueError, match="at least one real"):
        neighbours.memorisation_threshold([])
    with pytest.raises(ValueError, match="percentile"):
        neighbours.memorisation_threshold([0.1], percentile=101)


def test_flags_copies_even_at_a_zero_threshold_and_leave_one_out_skips_itself():
    assert neighbours.flag_memorised([0.0, 0.03, 0.05, 0.2], 0.05).tolist() == \
        [True, True, False, False]
    assert neighbours.flag_memorised([0.0, 1e-9, 0.01], 0.0).tolist() == [True, True, False]
    assert np.isnan(neighbours.memorisation_share([]))
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    idx, d = neighbours.nearest(x, x, exclude_self=True)
    assert idx.tolist() == [1, 0, 1] and (d > 0).all()
    thr = neighbours.label_thresholds([0.1, 0.2, 0.3, 0.4, 0.5, 0.9], ["a"] * 5 + ["b"],
                                      ["a", "b"], percentile=0.0)
    assert thr["a"].value == 0.1 and thr["b"].value == 0.1
    assert thr["b"].rule.startswith("all labels")


def test_gan_tables_from_predictions():
    from quality.recognisability import gan_test_table, gan_train_table
    t = gan_test_table(["a", "a", "a", "a", "b", "c"], ["a", "a", "b", "a", "b", "a"],
                       ["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b", "c"],
                       known=["a", "b"])
    assert t.gan_test_accuracy[0] == 0.75 and t.real_test_accuracy[0] == 0.5
    assert t.gan_test_relative[0] == 1.5 and t.gan_test_accuracy[1] == 1.0
    assert np.isnan(t.gan_test_accuracy[2]) and "unknown" in t.note[2]
    m = {"tests": {"test": {"per_class": {"a": {"recall": 0.5, "support": 4},
                                          "b": {"recall": 1.0, "support": 0}}}},
         "train_counts": {"a": 7, "b": 3}}
    r = {"tests": {"test": {"per_class": {"a": {"recall": 0.8, "support": 4}}}},
         "train_counts": {"a": 5}}
    g = gan_train_table(m, r)
    assert g.gan_train_accuracy[0] == 0.5 and g.gan_train_relative[0] == pytest.approx(0.625)
    assert np.isnan(g.gan_train_accuracy[1]) and g.n_synthetic_train.tolist() == [7, 3]


# ---------------------------------------------------------------- the audit on real files


def test_audit_flags_exact_copies_grey_included_and_passes_a_distinct_image(data, kid_random):
    from quality.audit import audit_synthetic
    syn = _synthetic(data)
    df = audit_synthetic(syn, _by_label(data["train"]), _by_label(data["test"]), kid_random)
    by_name = df.set_index(df.path.map(lambda p: Path(p).name))
    assert len(df) == len(syn) and df.attrs["reference"] == "test-to-train"
    assert by_name.loc["ddim_copy.png", "flagged"]
    assert by_name.loc["ddim_copy.png", "distance"] < 1e-6
    assert Path(by_name.loc["ddim_copy.png", "nearest_path"]).name == "s_003.png"
    # A 1-channel grey file is read as RGB (channel repeated) and its copy is found.
    assert by_name.loc["ddim_grey_copy.png", "flagged"]
    assert Path(by_name.loc["ddim_grey_copy.png", "nearest_path"]).name == "grey_000.png"
    checker = by_name.loc["ddim_checker.png"]
    assert not checker.flagged and checker.ratio > 5
    # Every image is judged against the same test-derived threshold.
    assert df.threshold.nunique() == 1 and df.threshold.iloc[0] > 0
    assert df.attrs["n_reference"] == 18 and df.attrs["skipped"] == []


def test_pixel_space_flags_flipped_and_brightened_copies_and_passes_fresh_images(data,
                                                                               tmp_path):
    """The default space: a copy stays a copy flipped (stage 2 trains on flips), brighter
    or lower in contrast; a fresh image of the same class is judged like a real test image."""
    from dataset.images import load_rgb
    from quality.audit import audit_synthetic, closest_pairs_sheet
    source = load_rgb(data["train"] / "red" / "s_003.png").astype(np.float32)
    made = {"flipped.png": source[:, ::-1], "brighter.png": source * 0.6 + 90,
            "fresh.png": class_image("red", np.random.default_rng(99))}
    for name, arr in made.items():
        save_image(tmp_path / "red" / name, np.clip(arr, 0, 255).astype(np.uint8))
    syn = sorted((tmp_path / "red").glob("*.png"))
    df = audit_synthetic(syn, _by_label(data["train"]), _by_label(data["test"]))
    by_name = df.set_index(df.path.map(lambda p: Path(p).name))
    assert df.space.iloc[0] == "pixels32"
    flipped, brighter, fresh = (by_name.loc[n] for n in ("flipped.png", "brighter.png",
                                                         "fresh.png"))
    assert flipped.flagged and flipped.nearest_mirrored and flipped.distance < 0.01
    assert Path(flipped.nearest_path).name == "s_003.png"
    assert brighter.flagged and not brighter.nearest_mirrored and brighter.distance < 0.01
    assert not fresh.flagged and fresh.ratio > 1.0
    unmirrored = audit_synthetic(syn, _by_label(data["train"]), _by_label(data["test"]),
                                 mirror=False)
    assert not unmirrored.set_index(unmirrored.path.map(lambda p: Path(p).name)).loc[
        "flipped.png", "flagged"]
    assert closest_pairs_sheet(df).width > 2 * 96


def test_audit_without_a_test_set_uses_leave_one_out_distances(data, kid_random):
    from quality.audit import audit_synthetic, summarise
    syn = _synthetic(data)
    df = audit_synthetic(syn, _by_label(data["train"]), None, kid_random)
    assert df.attrs["reference"] == "leave-one-out train-to-train"
    assert df.attrs["n_reference"] == 31
    assert df.set_index(df.path.map(lambda p: Path(p).name)).loc["ddim_copy.png", "flagged"]
    s = summarise(df)
    every = s[s.label == "(all)"].iloc[0]
    assert every.n_synthetic == len(syn) and every.n_flagged == int(df.flagged.sum())
    assert 0 < every.memorisation_share < 1


def test_classifier_penultimate_space_finds_the_copy(data, classifier_run):
    from quality.audit import audit_synthetic
    from quality.features import classifier_space
    space = classifier_space(classifier_run)
    feats, ok, errors = space.features(sorted((data["train"] / "red").glob("*.png"))[:3])
    assert feats.shape == (3, 64) and ok == [0, 1, 2] and errors == []   # small CNN width
    df = audit_synthetic(_synthetic(data), _by_label(data["train"]), _by_label(data["test"]),
                         space)
    assert set(df.space) == {"classifier"}
    assert df.set_index(df.path.map(lambda p: Path(p).name)).loc["ddim_copy.png", "flagged"]


# ---------------------------------------------------------------- recognisability


def test_gan_test_gives_per_label_accuracies_that_tell_good_from_wrong_images(
        data, classifier_run):
    from quality.recognisability import gan_test
    syn = [(str(p), p.parent.name) for p in _synthetic(data)]
    test = [(str(p), p.parent.name) for p in data["test"].rglob("*.png")]
    t = gan_test(classifier_run, syn, test).set_index("label")
    assert sorted(t.index) == ["blue", "green", "red"]
    for col in ("gan_test_accuracy", "real_test_accuracy", "mean_p_label"):
        assert t[col].between(0, 1).all(), col
    assert t.loc["blue", "n_generated"] == 4 and t.loc["red", "n_generated"] == 6
    assert t.loc["red", "n_test"] == 6
    # 'blue' images that look green are not recognised as blue; real blue ones are.
    assert t.loc["blue", "gan_test_accuracy"] <= 0.25
    assert t.loc["blue", "real_test_accuracy"] >= 0.5
    assert t.loc["blue", "gan_test_relative"] < 0.5


def _cli(*args) -> int:
    from quality.__main__ import main
    return main([str(a) for a in args])


def test_cli_recognisability_writes_gan_test_and_gan_train_tables(data, classifier_run,
                                                                  tmp_path):
    before = {k: tree_hashes(data[k]) for k in ("train", "test", "balanced")}
    out = tmp_path / "recog"
    assert _cli("recognisability", "--balanced_dir", data["balanced"], "--train_dir",
                data["train"], "--test_dir", data["test"], "--classifier_run",
                classifier_run, "--out_dir", out, "--number_epochs", 3) == 0
    import pandas as pd
    gt = pd.read_csv(out / "gan_test.csv")
    assert sorted(gt.label) == ["blue", "green", "red"]
    gtr = pd.read_csv(out / "gan_train.csv").set_index("label")
    assert sorted(gtr.index) == ["blue", "green", "red"]
    assert gtr.gan_train_accuracy.between(0, 1).all()
    assert gtr.real_train_accuracy.between(0, 1).all()
    assert gtr.n_synthetic_train.to_dict() == {"blue": 4, "green": 1, "red": 6}
    # The GAN-train classifier saw synthetic images only; the recipe came from the run.
    m = json.loads((out / "classifiers" / "gan_train" / "metrics.json").read_text())
    assert m["n_train"] == m["n_train_synthetic"] == 11
    saved = json.loads((out / "classifiers" / "gan_train" / "config.json").read_text())
    assert saved["backbone"] == "small_cnn" and saved["number_epochs"] == 3
    rec = json.loads((out / "recognisability.json").read_text())
    assert rec["classifier_run"] == str(Path(classifier_run).resolve())
    assert {k: tree_hashes(data[k]) for k in before} == before     # inputs untouched


def test_cli_audit_writes_its_files_resumes_and_refuses_other_settings(data, classifier_run,
                                                                      tmp_path, capsys):
    before = {k: tree_hashes(data[k]) for k in ("train", "test", "balanced")}
    out = tmp_path / "audit"
    args = ["audit", "--balanced_dir", data["balanced"], "--train_dir", data["train"],
            "--test_dir", data["test"], "--out_dir", out, "--kid_features", "random",
            "--classifier_run", classifier_run]
    assert _cli(*args) == 0
    import pandas as pd
    df = pd.read_csv(out / "audit.csv")
    assert set(df.space) == {"pixels32", "kid_random", "classifier"} and len(df) == 3 * 11
    assert list(df.columns[:10]) == ["path", "label", "space", "nearest_path", "nearest_label",
                                     "distance", "threshold", "ratio", "flagged",
                                     "nearest_mirrored"]
    copy = df[df.path.str.endswith("ddim_copy.png")]
    assert copy.flagged.all() and len(copy) == 3
    assert (out / "audit_summary.csv").is_file() and (out / "config.json").is_file()
    assert "threshold =" in (out / "audit_summary.txt").read_text()
    with Image.open(out / "closest_pairs.png") as im:
        assert im.width > 2 * 96 and im.height > 96
    assert {k: tree_hashes(data[k]) for k in before} == before
    assert _cli(*args) == 0                                 # same settings: resumes
    assert _cli(*args, "--percentile", "10") == 2           # other settings: refused
    assert "other settings (percentile)" in capsys.readouterr().err


@pytest.mark.parametrize("inside", ["balanced", "train", "test"])
def test_cli_refuses_an_out_dir_inside_an_input(data, inside, capsys):
    before = tree_hashes(data[inside])
    out = data[inside] / "quality_out"
    assert _cli("audit", "--balanced_dir", data["balanced"], "--train_dir", data["train"],
                "--test_dir", data["test"], "--out_dir", out,
                "--kid_features", "random") == 2
    assert "is inside" in capsys.readouterr().err
    assert not out.exists() and tree_hashes(data[inside]) == before
    assert _cli("recognisability", "--balanced_dir", data["balanced"], "--train_dir",
                data["train"], "--test_dir", data["test"], "--out_dir", out / "x") == 2
    assert not out.exists()


def test_cli_refuses_a_folder_it_did_not_write_and_a_manifest_without_synthetic_rows(
        data, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert _cli("audit", "--balanced_dir", data["balanced"], "--test_dir", data["test"],
                "--out_dir", foreign, "--kid_features", "random") == 2
    assert "not written by" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert _cli("audit", "--balanced_dir", data["balanced"], "--test_dir", data["test"],
                "--out_dir", tmp_path / "o", "--real_generators", "original", "ddim") == 2
    assert "no synthetic images" in capsys.readouterr().err
    assert _cli("audit", "--balanced_dir", data["balanced"], "--test_dir", data["test"],
                "--out_dir", tmp_path / "o", "--dry-run") == 0
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- report panel


def test_report_panel_shows_shares_recognisability_kid_and_the_pairs(data, kid_random,
                                                                    tmp_path):
    from quality.audit import audit_synthetic
    from quality.recognisability import gan_test_table
    from quality.report import panel_html, quality_panel
    df = audit_synthetic(_synthetic(data), _by_label(data["train"]),
                         _by_label(data["test"]), kid_random)
    gt = gan_test_table(["red", "blue"], ["red", "green"], ["red", "blue"], ["red", "blue"],
                        ["blue", "red"])
    kid = [{"label": "red", "kid_generated": 0.0123, "kid_real_train": 0.001}]
    html = panel_html(audit=df, gan_test=gt, kid_rows=kid)
    assert html.count("data:image/png;base64,") == 1
    for text in ("memorised (kid_random)", "GAN-test", "KID generated", "0.0123", "<td>red</td>",
                 "<td>green</td>", "<td>blue</td>"):
        assert text in html, text
    # From folders: a missing recognisability folder is simply left out.
    assert "No quality measurements" in quality_panel(tmp_path / "none", None)
