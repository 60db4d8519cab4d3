"""The yardsticks the benchmarks measure us against are real, working models."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from keras_io_ddim import KerasIoDDIM, build_network  # noqa: E402
from time_to_quality import Recipe, table, time_to_target  # noqa: E402


def test_keras_io_recipe_trains_its_ema_copy_and_samples_in_range():
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).random((16, 16, 16, 1)).astype("float32")
    model = KerasIoDDIM((16, 16), [8, 16], 1, channels=1)
    model.adapt_normalizer(images)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
    before = [w.copy() for w in model.ema_network.get_weights()]
    hist = model.fit(images, epochs=3, batch_size=8, verbose=0)
    assert np.isfinite(hist.history["n_loss"]).all()
    after = model.ema_network.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))
    samples = model.generate(3, steps=4)
    assert samples.shape == (3, 16, 16, 1) and 0.0 <= samples.min() <= samples.max() <= 1.0
    assert model.generate(3, steps=4, batch_size=2).shape == (3, 16, 16, 1)
    # The example's network: one BatchNorm per residual block, nothing conditions it.
    net = build_network((16, 16), [8, 16], 2)
    norms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 2 * 3 and len(net.inputs) == 2


def test_time_to_target_is_the_first_checkpoint_good_on_both_measures():
    curve = [(100, 10.0, 0.5, 0.2), (200, 20.0, 0.1, 0.5), (300, 30.0, 0.05, 0.9)]
    assert time_to_target(curve, kid_target=0.1, rec_target=0.8) == (300, 30.0)
    assert time_to_target(curve, kid_target=0.2, rec_target=0.5) == (200, 20.0)
    assert time_to_target(curve, kid_target=0.01, rec_target=0.0) is None
    assert time_to_target(curve, kid_target=0.1, rec_target=None) == (200, 20.0)  # KID alone


def test_without_a_label_the_target_is_the_baselines_final_kid():
    base = Recipe("keras.io", None, seconds=30.0, steps=300,
                  curve=[(100, 10.0, 0.5, float("nan")), (300, 30.0, 0.2, float("nan"))])
    fast = Recipe("ours", None, seconds=24.0, steps=300,
                  curve=[(100, 8.0, 0.3, float("nan")), (300, 24.0, 0.15, float("nan"))])
    lines = table([base, fast], floor=0.01, real_rec=None)
    assert lines[0].startswith("target: KID <= 0.2000, what keras.io reached after 300 steps")
    assert "| ours | 80 | 300 | 24 s | 1.25x | 0.1500 | - |" in lines


def test_evidence_overrides_merge_by_section_and_refuse_unknown_sections():
    from bench_evidence import settings, with_overrides
    base = settings(quick=True, seeds=[0], ood_test_dirs=[])
    out = with_overrides(base, '{"diffusion": {"label_balance": 1}, "augmentation": '
                               '{"sample_weights": "last"}}')
    assert out["diffusion"]["label_balance"] == 1
    assert out["augmentation"]["sample_weights"] == "last"
    assert out["diffusion"]["train_steps"] == base["diffusion"]["train_steps"]
    assert "label_balance" not in base["diffusion"]   # the base is left as it was
    for bad in ('{"difusion": {"seed": 1}}', '{"diffusion": 1}', "[]", "{oops"):
        with pytest.raises(ValueError, match="--overrides"):
            with_overrides(base, bad)
