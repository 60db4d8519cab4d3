"""classic_fill: stage 3's counts, exact replay from manifest rows, resume, bad input."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classic_fill.__main__ import main
from classic_fill.config import ClassicFillConfig
from classic_fill.presets import PRESETS, build_preset
from classic_fill.replay import (augment, decode_replay, encode_replay, image_seed, load_image,
                                 replay_params, replay_row)
from classic_fill.run import plan_classic_fill, run_classic_fill
from cli.flags import ConfigError, validate_config
from conftest import make_dataset, save_image, tree_hashes
from dataset.manifest import read_manifest

LAYOUT = {"1": {"S1": 6, "S2": 2, "S3": 1}, "2": {"A": 3, "B": 1},
          "3": {"S1": 2, "S2": 1}, "4": {"S1": 9, "S2": 4}}
CATEGORIES = ["1,2", "3,4"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "in", LAYOUT, size=(40, 28))


def _fill(in_dir: Path, out_dir: Path, **kw) -> tuple:
    cfg = ClassicFillConfig(in_dir=str(in_dir), out_dir=str(out_dir), workers=1, **kw)
    validate_config(cfg)
    plan = plan_classic_fill(cfg, progress=False)
    return plan, run_classic_fill(plan, progress=False)


def _classic_rows(out_dir: Path):
    return [r for r in read_manifest(out_dir / "manifest.csv") if r.generator == "classic_fill"]


def _stage3_plan(cfg: ClassicFillConfig, monkeypatch, **aug):
    """Stage 3's plan for the same settings (models stubbed out)."""
    import dataclasses

    import gap_filling.run as stage3

    monkeypatch.setattr(stage3, "resolve_label_models", lambda aug, needed: {
        lab: stage3.ModelRef("model", None) for lab in needed})
    return stage3.plan_gap_fill(dataclasses.replace(cfg.as_augmentation(), **aug),
                                progress=False)


def _stage3_counts(cfg: ClassicFillConfig, monkeypatch) -> Counter:
    """(label, site) -> images stage 3 plans for the same settings."""
    return Counter((s.label, s.site_id) for s in _stage3_plan(cfg, monkeypatch).synthetic)


@pytest.mark.parametrize("kw", [
    {"categories": CATEGORIES},
    {"categories": ["1,3", "2,4"], "split_sites": False},
    {"balance": "labels", "site_regex": r"^(S\d)"},
], ids=["categories", "no-site-split", "labels-regex"])
def test_counts_equal_stage3_plan_and_sources_match(data, tmp_path, monkeypatch, kw):
    if "site_regex" in kw:  # label 2's sites A/B do not match: give them S-sites
        for path in sorted((data / "2").iterdir()):
            path.rename(path.with_name("S9" + path.name))
    cfg = ClassicFillConfig(in_dir=str(data), out_dir=str(tmp_path / "out"), workers=1, **kw)
    validate_config(cfg)
    expected = _stage3_counts(cfg, monkeypatch)
    _, result = _fill(data, tmp_path / "out", **kw)
    rows = _classic_rows(tmp_path / "out")
    assert Counter((r.label, r.site_id) for r in rows) == expected
    assert result.generated == len(rows) == sum(expected.values()) > 0
    originals = {r.origin: r for r in read_manifest(tmp_path / "out" / "manifest.csv")
                 if r.generator == "original"}
    for row in rows:  # each new image augments a real image of its label (and site)
        src = originals[row.origin]
        assert src.label == row.label
        assert cfg.split_sites is False or src.site_id == row.site_id
        assert (tmp_path / "out" / src.path).is_file()
    # every source of a cell is used once before any is used twice
    per_cell: dict = {}
    for row in rows:
        per_cell.setdefault((row.label, row.site_id), []).append(row.origin)
    for (label, site), origins in per_cell.items():
        n_sources = sum(LAYOUT[label].values()) if not cfg.split_sites else \
            sum(1 for r in originals.values() if r.label == label and r.site_id == site)
        uses = Counter(origins).values()
        assert max(uses) - min(uses) <= 1 and len(set(origins)) == min(len(origins), n_sources)


@pytest.mark.parametrize("kw", [{"categories": CATEGORIES, "seed": 3},
                                {"balance": "labels", "split_sites": False}])
def test_sources_pair_with_stage3_sdedit(data, tmp_path, monkeypatch, kw):
    """Image k of a label augments the real image stage 3's sdedit image k varies."""
    from config import AugmentationConfig

    if "generator" not in AugmentationConfig.__dataclass_fields__:
        pytest.skip("stage 3 has no sdedit generator in this tree")
    cfg = ClassicFillConfig(in_dir=str(data), out_dir=str(tmp_path / "out"), workers=1, **kw)
    stage3 = _stage3_plan(cfg, monkeypatch, generator="sdedit")
    ours = plan_classic_fill(cfg, progress=False)
    assert [(s.label, s.site_id, s.index, s.source) for s in stage3.synthetic] == \
        [(i.label, i.site_id, i.index, i.source.relpath) for i in ours.images]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_rows_replay_pixel_exactly(data, tmp_path, preset):
    _fill(data, tmp_path / "out", balance="labels", preset=preset)
    rows = _classic_rows(tmp_path / "out")
    assert len(rows) >= 5
    assert {r.params["pipeline"] for r in rows} == {preset}
    assert {r.params["replay_by"] for r in rows} == {"params"}
    for row in rows:
        written = np.asarray(Image.open(tmp_path / "out" / row.path))
        assert np.array_equal(replay_row(row, data), written)
        assert np.array_equal(replay_row(row), written)   # from the absolute origin
        source = load_image(row.origin)
        assert source.shape != written.shape or not np.array_equal(source, written)
    assert len({(tmp_path / "out" / r.path).read_bytes() for r in rows}) == len(rows)


def test_grey_stays_grey_and_noise_pipeline_replays_by_seed(tmp_path):
    """Grey PNG in -> grey PNG out; a pipeline drawing whole noise images (too big for a
    manifest row) is replayed from the seed, still exactly."""
    import albumentations as A

    rng = np.random.default_rng(0)
    for label, n in (("a", 5), ("b", 2)):
        for i in range(n):
            save_image(tmp_path / "in" / label / f"S1_{i}.png", rng.integers(0, 255, (40, 48)))
    pipe = tmp_path / "noise.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=0.5), A.GaussNoise(std_range=(0.05, 0.1), p=1.0),
                      A.SomeOf([A.Rotate(limit=30), A.Blur(), A.RandomGamma()], n=2)], p=0.9),
           str(pipe), data_format="yaml")
    _fill(tmp_path / "in", tmp_path / "out", balance="labels", pipeline=str(pipe))
    rows = _classic_rows(tmp_path / "out")
    assert len(rows) == 3 and {r.params["replay_by"] for r in rows} == {"seed"}
    assert {r.params["pipeline"] for r in rows} == {"file:noise.yaml"}
    for row in rows:
        img = Image.open(tmp_path / "out" / row.path)
        assert img.mode == "L" and row.path.endswith(".png")
        assert np.array_equal(replay_row(row, tmp_path / "in"), np.asarray(img))
    assert len(json.dumps(rows[0].params)) < 8000  # the noise map is not in the row


def test_nested_composes_replay_from_params(data, tmp_path):
    import albumentations as A

    pipe = tmp_path / "nested.json"
    A.save(A.Compose([
        A.OneOf([A.HorizontalFlip(), A.VerticalFlip(), A.Transpose()], p=0.9),
        A.SomeOf([A.Blur(blur_limit=(3, 5)), A.RandomBrightnessContrast(), A.CLAHE(),
                  A.HueSaturationValue()], n=2),
        A.Sequential([A.Affine(rotate=(-20, 20), p=1.0), A.CoarseDropout(p=0.5)], p=0.7),
        A.RandomResizedCrop(size=(24, 24), scale=(0.5, 1.0), p=1.0)], p=0.95), str(pipe))
    _fill(data, tmp_path / "out", balance="labels", pipeline=str(pipe))
    rows = _classic_rows(tmp_path / "out")
    assert len(rows) == 23 and {r.params["replay_by"] for r in rows} == {"params"}
    for row in rows:
        written = np.asarray(Image.open(tmp_path / "out" / row.path))
        assert written.shape == ((24, 24, 3) if row.params["replay"]["applied"] else (28, 40, 3))
        assert np.array_equal(replay_row(row, data), written)


def test_rgb_stays_rgb_and_image_k_alone(data, tmp_path):
    plan, _ = _fill(data, tmp_path / "out", balance="labels", preset="micro")
    rows = {r.path: r for r in _classic_rows(tmp_path / "out")}
    img = plan.images[3]  # made again alone, from the plan (no other image drawn first)
    out, record = augment(build_preset("micro"), load_image(img.source.path), img.seed)
    written = Image.open(tmp_path / "out" / img.name)
    assert written.mode == "RGB" and np.array_equal(out, np.asarray(written))
    assert rows[img.name].seed == img.seed == image_seed(42, img.label, img.index)
    assert json.loads(json.dumps(record["replay"])) == rows[img.name].params["replay"]


def test_pool_writes_the_same_images(data, tmp_path):
    _fill(data, tmp_path / "one", categories=CATEGORIES)
    cfg = ClassicFillConfig(in_dir=str(data), out_dir=str(tmp_path / "two"), workers=2,
                            categories=CATEGORIES)
    run_classic_fill(plan_classic_fill(cfg, progress=False), progress=False)
    one, two = _classic_rows(tmp_path / "one"), _classic_rows(tmp_path / "two")
    assert [r.path for r in one] == [r.path for r in two]
    for a, b in zip(one, two):
        assert a.params == b.params and a.seed == b.seed
        assert np.array_equal(load_image(tmp_path / "one" / a.path),
                              load_image(tmp_path / "two" / b.path))


def test_resume_skips_what_the_manifest_holds(data, tmp_path):
    out = tmp_path / "out"
    _, first = _fill(data, out, categories=CATEGORIES)
    rows = _classic_rows(out)
    stamps = {r.path: os.stat(out / r.path).st_mtime_ns for r in rows}
    _, again = _fill(data, out, categories=CATEGORIES)
    assert (again.generated, again.reused, again.copied) == (0, len(rows), 0)
    assert stamps == {r.path: os.stat(out / r.path).st_mtime_ns for r in rows}
    # an interrupted run: one image gone, one image written but its row lost
    (out / rows[0].path).unlink()
    text = (out / "manifest.csv").read_text().splitlines(keepends=True)
    (out / "manifest.csv").write_text("".join(t for t in text if rows[1].path not in t))
    _, resumed = _fill(data, out, categories=CATEGORIES)
    assert (resumed.generated, resumed.reused) == (2, len(rows) - 2)
    after = _classic_rows(out)
    assert [r.path for r in after] == [r.path for r in rows]
    assert [r.params for r in after] == [r.params for r in rows]
    assert len(read_manifest(out / "manifest.csv")) == sum(map(sum, (
        s.values() for s in LAYOUT.values()))) + len(rows)


def test_resume_refuses_other_settings_or_pipeline(data, tmp_path, capsys):
    out = tmp_path / "out"
    _fill(data, out, categories=CATEGORIES)
    base = ["--in_dir", str(data), "--out_dir", str(out), "--workers", "1", "--categories",
            *CATEGORIES]
    assert main(base + ["--seed", "7"]) == 2
    assert "seed=42" in capsys.readouterr().err
    assert main(base + ["--preset", "micro"]) == 2
    assert "another pipeline" in capsys.readouterr().err


def test_dry_run_writes_nothing_and_input_untouched(data, tmp_path, capsys):
    before = tree_hashes(data)
    out = tmp_path / "out"
    assert main(["--in_dir", str(data), "--out_dir", str(out), "--categories", *CATEGORIES,
                 "--workers", "1", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "dry run: nothing written" in text and "pipeline: upright" in text
    assert not out.exists()
    assert main(["--in_dir", str(data), "--out_dir", str(out), "--categories", *CATEGORIES,
                 "--workers", "1", "--link_originals"]) == 0
    assert tree_hashes(data) == before  # same files, same bytes: no stray temp files either


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases = {
        "missing": (tmp_path / "nope.json", "file not found"),
        "not-json": (tmp_path / "bad.json", "not valid JSON"),
        "not-yaml": (tmp_path / "bad.yaml", "not valid YAML"),
        "no-transform": (tmp_path / "other.json", "not an albumentations pipeline"),
        "unknown-op": (tmp_path / "unknown.json", "unknown transform"),
        "bad-setting": (tmp_path / "range.json", "invalid transform settings"),
        "suffix": (tmp_path / "policy.txt", "expected a .json"),
    }
    texts = {"not-json": "{not json", "not-yaml": "transform: [1", "no-transform": "[1, 2]",
             "unknown-op": '{"transform": {"__class_fullname__": "NoSuchOp", "p": 1}}',
             "bad-setting": '{"transform": {"__class_fullname__": "HorizontalFlip", "p": 7}}',
             "suffix": "{}"}
    for name, text in texts.items():
        cases[name][0].write_text(text)
    return cases


@pytest.mark.parametrize("case", ["missing", "not-json", "not-yaml", "no-transform",
                                  "unknown-op", "bad-setting", "suffix"])
def test_bad_pipeline_file_one_line_error(data, tmp_path, capsys, case):
    path, message = _bad_files(tmp_path)[case]
    code = main(["--in_dir", str(data), "--out_dir", str(tmp_path / "out"), "--categories",
                 *CATEGORIES, "--workers", "1", "--pipeline", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: --pipeline {path}") and message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_input_errors(data, tmp_path, capsys):
    args = ["--categories", *CATEGORIES, "--workers", "1"]
    assert main(["--in_dir", str(tmp_path / "missing"), "--out_dir", str(tmp_path / "o")]
                + args) == 2
    assert "does not exist" in capsys.readouterr().err
    for dry in ([], ["--dry-run"]):
        assert main(["--in_dir", str(data), "--out_dir", str(data / "out")] + args + dry) == 2
        assert "inside --in_dir" in capsys.readouterr().err
    assert not (data / "out").exists()
    assert main(["--in_dir", str(data), "--out_dir", str(tmp_path / "o"), "--categories",
                 "1,2", "3,9"]) == 2
    assert "label(s) without images: 9" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: unknown preset / both given
        main(["--in_dir", str(data), "--preset", "heavy"])
    assert "invalid choice: 'heavy'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--in_dir", str(data), "--preset", "micro", "--pipeline", "p.json"])
    assert "either --preset or --pipeline" in capsys.readouterr().err


def test_pipeline_that_changes_dtype_is_refused(data, tmp_path):
    import albumentations as A

    pipe = tmp_path / "norm.json"
    A.save(A.Compose([A.Normalize()]), str(pipe))
    with pytest.raises(ConfigError, match="must return uint8"):
        _fill(data, tmp_path / "out", categories=CATEGORIES, pipeline=str(pipe))


def test_encoded_params_keep_numpy_types():
    replay = {"__class_fullname__": "X", "p": 1.0, "params": {
        "f32": np.float32(0.1), "i64": np.int64(3), "arr": np.arange(6, dtype=np.uint8)
        .reshape(2, 3), "empty": np.zeros((0, 4)), "shape": (3, 4), "n": None}}
    data, exact = encode_replay(replay)
    back = decode_replay(json.loads(json.dumps(data)))["params"]
    assert exact
    assert type(back["f32"]) is np.float32 and back["f32"] == np.float32(0.1)
    assert type(back["i64"]) is np.int64
    assert back["arr"].dtype == np.uint8 and np.array_equal(back["arr"], replay["params"]["arr"])
    assert back["empty"].shape == (0, 4) and back["shape"] == (3, 4) and back["n"] is None
    big, exact = encode_replay({"params": {"noise": np.zeros((64, 64))}})
    assert not exact and "__ndarray_omitted__" in big["params"]["noise"]


def test_replay_params_from_augment_record():
    image = np.random.default_rng(1).integers(0, 255, (21, 33, 3), dtype=np.uint8)
    for name in PRESETS:
        transform = build_preset(name)
        for seed in (0, 1, 2**31 + 5):
            out, record = augment(transform, image, seed)
            again = replay_params(json.loads(json.dumps(record)), image, seed)
            assert np.array_equal(out, again)
