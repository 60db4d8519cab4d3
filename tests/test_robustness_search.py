"""Robustness search, cache, synthesis and evaluation on tiny real models (in memory)."""
from __future__ import annotations

import numpy as np
import pytest

from robustness.chains import op_bounds
from robustness.predict import load_predictor
from robustness.search import grid, run_search, summarise
from robustness.synthesize import SynthesisStats, generate

THRESHOLD, BASE = 160.0, 100.0


def brightness_model(threshold: float = THRESHOLD, size: int = 32):
    """A Keras classifier with fixed weights: class 1 ("light") when the mean pixel value
    exceeds `threshold`, with a steep softmax."""
    import keras
    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(2)
    out = keras.layers.Softmax()(dense(x))
    model = keras.Model(inp, out)
    set_threshold(model, threshold)
    return model


def set_threshold(model, threshold: float, k: float = 2.0) -> None:
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"][0]
    dense.set_weights([np.array([[0.0, k / 3]] * 3, np.float32),
                       np.array([0.0, -k * threshold], np.float32)])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # Mean 100, values 70..130: brightness_up (+127.5 * i) stays below 255 until i ~ 0.98.
    return rng.integers(70, 131, (6, 32, 32, 3)).astype(np.uint8)


def test_search_finds_the_known_brightness_boundary(images):
    model = brightness_model()
    step = 0.05
    result = run_search(model, images, ops=["brightness_up", "brightness_down"], step=step,
                        diff_error="label")
    curve = result.curves["brightness_up"]
    expected = (THRESHOLD - images.mean()) / 127.5  # the label flips past this intensity
    assert curve.first_critical is not None
    assert expected <= curve.first_critical <= expected + step
    assert curve.limit == pytest.approx(curve.first_critical - step)
    assert abs(curve.limit - expected) <= step
    assert curve.errors[0] == 0 and curve.errors[-1] == 1.0
    # Darker images stay "dark": the model never changes its answer.
    down = result.curves["brightness_down"]
    assert down.first_noticeable is None and down.safe == down.limit == 1.0
    assert len(down.severity_errors) == 5


def test_summarise_thresholds():
    s = summarise([0.1, 0.2, 0.3, 0.4], [0.0, 0.05, 0.3, 0.6], 0.02, 0.5)
    assert s == {"first_noticeable": 0.2, "safe": 0.1, "first_critical": 0.4, "limit": 0.3}
    assert grid(0.3) == [0.3, 0.6, 0.9, 1.0]


def test_cache_resumes_and_is_invalidated_by_new_weights(images, tmp_path):
    model = brightness_model()
    ops = ["brightness_up", "gaussian_noise"]
    first = run_search(model, images, ops=ops, step=0.25, cache_dir=tmp_path)
    assert first.probes > 0 and first.reused == 0
    predictor = load_predictor(model)
    again = run_search(predictor, images, ops=ops, step=0.25, cache_dir=tmp_path)
    assert again.probes == 0 and predictor.calls == 0  # not a single image predicted
    assert again.reused == first.probes
    assert again.curves["brightness_up"].limit == first.curves["brightness_up"].limit
    # Another op set reuses what it can and probes only the new op.
    more = run_search(model, images, ops=ops + ["fog"], step=0.25, cache_dir=tmp_path)
    assert more.probes == first.probes // 2
    # New weights: a new cache key, everything probed again, a different boundary.
    set_threshold(model, 120.0)
    changed = run_search(model, images, ops=ops, step=0.25, cache_dir=tmp_path)
    assert changed.cache_key != first.cache_key and changed.probes == first.probes
    assert changed.curves["brightness_up"].limit < first.curves["brightness_up"].limit


def test_early_stop_and_severities_only(images):
    model = brightness_model()
    partial = run_search(model, images, ops=["brightness_up"], step=0.1, diff_error="label",
                         full_curve=False)
    curve = partial.curves["brightness_up"]
    assert curve.intensities[-1] == curve.first_critical < 1.0
    # The report does not pass the first critical step off as the error at intensity 1.
    from robustness.report import _error_at_1
    assert _error_at_1(curve) == f"not probed (stopped at {curve.intensities[-1]:.2f})"
    full = run_search(model, images, ops=["brightness_up"], step=0.25, diff_error="label")
    assert _error_at_1(full.curves["brightness_up"]) == full.curves["brightness_up"].errors[-1]
    sev = run_search(model, images, ops=["brightness_up"], curves=False)
    assert len(sev.curves["brightness_up"].intensities) == 0
    assert sev.curves["brightness_up"].safe is None
    assert sev.probes == 5 * len(images)


def test_masks_follow_geometric_ops_in_the_search():
    """A 'segmenter' that thresholds each pixel: with label_format='mask' its clean mask is
    rotated with the image, so rotation barely counts as an error."""
    rng = np.random.default_rng(1)
    imgs = np.zeros((3, 32, 32, 3), np.uint8)
    for im in imgs:
        y, x = rng.integers(4, 18, 2)
        im[y:y + 10, x:x + 10] = 255

    def segment(batch):
        return (batch[..., 0] > 127).astype(np.int64)

    moved = run_search(segment, imgs, ops=["rotation"], step=0.25, label_format="mask")
    fixed = run_search(segment, imgs, ops=["rotation"], step=0.25, diff_error="mask")
    assert moved.curves["rotation"].errors.max() < 0.03
    assert fixed.curves["rotation"].errors.max() > 0.1


def test_synthesis_with_an_impossible_window_stops_and_counts(images):
    model = brightness_model()
    result = run_search(model, images, ops=["brightness_up", "fog", "jpeg"], step=0.25)
    bounds = op_bounds(result.boundaries(), realism=1.0)  # only changes the model ignores
    stats = SynthesisStats()
    made = list(generate(model, images, bounds, count=5, seed=3, min_augs=1, max_augs=2,
                         min_error=0.9, max_error=1.0, max_attempts=40, stats=stats))
    assert made == [] and stats.made == 0 and not stats.complete
    assert stats.attempts == 40 and stats.rejected == 40
    # Without a window every candidate is kept, and the same seed gives the same images.
    bounds = op_bounds(result.boundaries(), realism=0.0)
    a = list(generate(model, images, bounds, count=4, seed=3, min_augs=1, max_augs=2))
    b = list(generate(model, images, bounds, count=4, seed=3, min_augs=1, max_augs=2))
    assert len(a) == 4 and all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    assert all(x.params["ops"] for x in a)


def test_boxes_follow_geometric_ops_in_search_and_synthesis():
    """A 'detector' boxing the bright square: its clean box is moved with each geometric op
    before the comparison, so a crop or a small rotation is no error."""
    from robustness.chains import apply_chain, replay

    rng = np.random.default_rng(2)
    imgs = np.full((3, 48, 48, 3), 40, np.uint8)
    for im in imgs:
        y, x = rng.integers(12, 22, 2)
        im[y:y + 14, x:x + 14] = 230

    def detect(batch):
        out = []
        for im in batch:
            ys, xs = np.nonzero(im[..., 0] > 135)
            box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] if len(xs) else []
            out.append({"bboxes": np.array(box, float).reshape(-1, 4), "labels": [1] * len(box)})
        return out

    fmt = {"bbox": "pascal_voc"}
    result = run_search(detect, imgs, ops=["random_sized_crop", "fog"], step=0.25,
                        label_format=fmt)
    fixed = run_search(detect, imgs, ops=["random_sized_crop"], step=0.25, diff_error="box")
    assert result.curves["random_sized_crop"].errors.max() == 0.0
    assert fixed.curves["random_sized_crop"].errors.max() == 1.0
    bounds = op_bounds(result.boundaries(), realism=0.0)
    cands = list(generate(detect, imgs, bounds, count=3, seed=1, min_augs=1, max_augs=2,
                          label_format=fmt))
    assert len(cands) == 3
    for c in cands:
        assert np.array_equal(replay(c.params, imgs[c.origin]), c.image)
        moved, boxes = apply_chain(imgs[c.origin], c.params["ops"],
                                   {"bboxes": detect(imgs[c.origin][None])[0]["bboxes"],
                                    "labels": [1]}, fmt)
        assert np.array_equal(moved, c.image)
