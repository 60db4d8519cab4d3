"""robustness.shifted: the out-of-distribution copy of a test folder the evidence benchmark
tests every arm on (real files, each image under one corruption, reproducible, resumable)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from dataset.images import load_rgb, save_rgb
from dataset.scan import DatasetError
from robustness.ops import apply_op
from robustness.shifted import build_shifted_set


@pytest.fixture()
def test_dir(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for k in range(3):
            yy, xx = np.mgrid[0:40, 0:48] / 40
            img = np.stack([120 + 80 * xx, 60 + 100 * yy, 100 + 40 * xx], -1)
            img = img + rng.integers(-40, 41, img.shape)   # texture that JPEG has to lose
            save_rgb(tmp_path / "test" / label / f"{label}_{k}.jpg",
                     np.clip(img, 0, 255).astype(np.uint8))
    return tmp_path / "test"


def test_every_image_shifted_once_reproducibly_and_rebuildable_from_its_row(test_dir, tmp_path):
    before = {p: p.read_bytes() for p in test_dir.rglob("*.jpg")}
    out = build_shifted_set(test_dir, tmp_path / "ood", severity=3, ops=("fog", "jpeg", "pixelate"))
    rows = list(csv.DictReader(open(out / "shift.csv")))
    assert len(rows) == 6 and {r["op"] for r in rows} == {"fog", "jpeg", "pixelate"}
    for r in rows:
        shifted = load_rgb(out / r["file"])
        source = load_rgb(r["source"])
        assert shifted.shape == source.shape and r["file"].startswith(r["label"] + "/")
        assert np.abs(shifted.astype(int) - source).mean() > 1.0      # really corrupted
        np.testing.assert_array_equal(
            shifted, apply_op(r["op"], source, float(r["intensity"]), int(r["op_seed"])))
    first = {p: p.read_bytes() for p in out.rglob("*.png")}
    (out / rows[0]["file"]).unlink()                                   # an interrupted build
    build_shifted_set(test_dir, tmp_path / "ood", severity=3, ops=("fog", "jpeg", "pixelate"))
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == first
    assert {p: p.read_bytes() for p in test_dir.rglob("*.jpg")} == before


def test_bad_requests_are_refused(test_dir):
    with pytest.raises(DatasetError, match="inside the test folder"):
        build_shifted_set(test_dir, test_dir / "ood")
    with pytest.raises(DatasetError, match="unknown shift ops"):
        build_shifted_set(test_dir, test_dir.parent / "ood", ops=("sunburn",))
    with pytest.raises(DatasetError, match="severity"):
        build_shifted_set(test_dir, test_dir.parent / "ood", severity=6)
    assert not (test_dir / "ood").exists() and not (test_dir.parent / "ood").exists()
