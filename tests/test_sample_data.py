"""The demo dataset builder: site-tinted, imbalanced train split and a balanced test split."""
from __future__ import annotations

from collections import Counter

import numpy as np

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
