"""The demo dataset builder: site-tinted, imbalanced train split and a balanced test split."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sample_data.__main__ import LABELS, SITES, _write_split


def test_split_counts_sites_and_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8)
    classes = np.repeat(np.arange(10), 40).astype(np.uint8)
    totals = {lab: 7 + i for i, lab in enumerate(LABELS)}
    summary = _write_split(tmp_path, images, classes, totals,
                           [s[0] for s in SITES.values()], 32, rng)
    for label, total in totals.items():
        files = list((tmp_path / label).iterdir())
        assert len(files) == total == sum(summary[label]["sites"].values())
        assert Counter(f.name.split("_")[0] for f in files) == {
            s: n for s, n in summary[label]["sites"].items() if n}
    from dataset.images import load_rgb
    assert load_rgb(next((tmp_path / "1").iterdir())).shape == (32, 32, 3)


def test_fmnist_lt_counts_follow_the_exponential_profile():
    from sample_data.fmnist_lt import longtail_counts
    assert longtail_counts(100) == [6000, 3597, 2156, 1293, 775, 465, 278, 167, 100, 60]
    assert longtail_counts(10) == [6000, 4646, 3597, 2785, 2156, 1670, 1293, 1001, 775, 600]
    assert longtail_counts(1) == [6000] * 10
    assert longtail_counts(50, n_max=100, num_classes=2) == [100, 2]
    for bad in ({"imbalance": 0.5}, {"imbalance": 10, "num_classes": 1}):
        with pytest.raises(ValueError):
            longtail_counts(**bad)


def test_fmnist_lt_draw_is_seeded_and_nested():
    from sample_data.fmnist_lt import draw_indices
    classes = np.repeat(np.arange(3), 50)
    big, small = draw_indices(classes, [40, 30, 20], 7), draw_indices(classes, [40, 3, 2], 7)
    again = draw_indices(classes, [40, 30, 20], 7)
    for cls, (b, s, a) in enumerate(zip(big, small, again)):
        assert np.array_equal(b, a) and set(s) <= set(b)       # same seed: subset
        assert (classes[b] == cls).all() and len(set(b)) == len(b)
    assert not np.array_equal(draw_indices(classes, [40, 30, 20], 8)[1], big[1])
    with pytest.raises(ValueError, match="class 2 has 50 images"):
        draw_indices(classes, [1, 1, 51], 0)


def test_fmnist_lt_build_writes_grey_pngs_by_class_name(tmp_path, monkeypatch):
    from PIL import Image

    from sample_data import __main__ as cli
    from sample_data import fmnist_lt
    rng = np.random.default_rng(0)
    fake = {split: (rng.integers(0, 256, (n * 10, 28, 28), dtype=np.uint8),
                    np.tile(np.arange(10, dtype=np.uint8), n)) for split, n in
            (("train", 30), ("test", 4))}
    monkeypatch.setattr(fmnist_lt, "load_fashion_mnist", lambda split: fake[split])
    monkeypatch.setattr(fmnist_lt, "N_MAX", 30)
    monkeypatch.setattr(fmnist_lt, "longtail_counts",
                        lambda imbalance: [30, 20, 12, 9, 6, 5, 4, 3, 3, 3])
    out = tmp_path / "lt"
    assert cli.main(["--arrangement", "fmnist_lt", "--imbalance", "10", "--out_dir",
                     str(out), "--seed", "3"]) == 0
    counts = {p.name: len(list(p.iterdir())) for p in (out / "train").iterdir()}
    assert counts["t_shirt"] == 30 and counts["ankle_boot"] == 3 and len(counts) == 10
    assert {p.name: len(list(p.iterdir())) for p in (out / "test").iterdir()} == {
        name: 4 for name in fmnist_lt.FOLDER_NAMES}
    first = sorted((out / "train" / "ankle_boot").iterdir())[0]
    assert first.name.startswith("fmnist_") and first.suffix == ".png"
    with Image.open(first) as img:
        assert (img.mode, img.size) == ("L", (28, 28))
        row = int(first.stem.split("_")[1])
        assert np.array_equal(np.asarray(img), fake["train"][0][row])   # lossless, no resize
    assert not out.with_name("lt.partial").exists()
    # A finished set is reused; another imbalance in the same folder is refused.
    assert cli.build(out, None, 3, "fmnist_lt", 10)["counts"][0] == 30
    with pytest.raises(SystemExit, match="fmnist_lt at imbalance 10"):
        cli.build(out, None, 3, "fmnist_lt", 100)
