"""Robustness layer 1 (pure): the corruption ops, realism bounds, chains and diff errors."""
from __future__ import annotations

import numpy as np
import pytest

from robustness.chains import apply_chain, op_bounds, realism_bounds, replay, sample_chain
from robustness.errors import (batch_errors, box_error, confidence_aware, label_change,
                               mask_disagreement, total_variation)
from robustness.ops import OPS, apply_op, prepare_op, resolve_ops

INTENSITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COLOUR_OPS = [n for n, s in OPS.items() if s.family == "colour"]


def scene(size: int = 32) -> np.ndarray:
    """A smooth, asymmetric test picture: gradients, a wave and a red block."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([60 + 150 * xx, 40 + 120 * yy, 90 + 80 * np.sin(6 * xx * yy)], -1)
    img[int(size * .2):int(size * .45), int(size * .55):int(size * .8)] = (220, 60, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def reddish(size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    img = np.empty((size, size, 3), np.uint8)
    img[..., 0] = rng.integers(190, 231, (size, size))
    img[..., 1:] = rng.integers(20, 61, (size, size, 2))
    return img


@pytest.mark.parametrize("name", list(OPS))
def test_op_is_identity_at_zero_and_keeps_shape(name):
    img = scene()
    out = apply_op(name, img, 0.0, seed=1)
    assert np.array_equal(out, img) and out is not img
    strong = apply_op(name, img, 1.0, seed=1)
    assert strong.shape == img.shape and strong.dtype == np.uint8
    assert not np.array_equal(strong, img), f"{name} does nothing at intensity 1"


@pytest.mark.parametrize("name", list(OPS))
def test_op_change_grows_with_intensity(name):
    img = scene()
    diffs = [np.abs(apply_op(name, img, x, seed=7).astype(float) - img).mean()
             for x in INTENSITIES]
    # Non-decreasing up to rounding (ops write uint8, so tiny steps can round either way).
    for a, b in zip(diffs, diffs[1:]):
        assert b >= a - max(0.05, 0.02 * a), f"{name}: {np.round(diffs, 2)}"
    assert diffs[-1] > diffs[0]


@pytest.mark.parametrize("name", list(OPS))
def test_op_is_deterministic_for_a_seed(name):
    img = scene()
    assert np.array_equal(apply_op(name, img, 0.6, seed=11), apply_op(name, img, 0.6, seed=11))


@pytest.mark.parametrize("name", list(OPS))
def test_prepared_op_renders_what_apply_op_makes(name):
    img = scene()
    render = prepare_op(name, img, seed=4)
    for x in (0.0, 0.3, 1.0, 0.3):
        assert np.array_equal(render(x), apply_op(name, img, x, seed=4))


@pytest.mark.parametrize("name", [n for n in OPS if n not in COLOUR_OPS])
def test_non_colour_ops_never_swap_channels(name):
    img = reddish()
    for x in (0.5, 1.0):
        out = apply_op(name, img, x, seed=2).reshape(-1, 3).astype(float).mean(0)
        assert out[0] > out[1] and out[0] > out[2], f"{name} at {x}: mean RGB {out}"


@pytest.mark.parametrize("name,channel,sign", [
    ("more_red", 0, 1), ("less_red", 0, -1), ("more_green", 1, 1), ("less_green", 1, -1),
    ("more_blue", 2, 1), ("less_blue", 2, -1)])
def test_channel_ops_move_their_own_channel(name, channel, sign):
    img = np.full((8, 8, 3), 120, np.uint8)
    out = apply_op(name, img, 0.5, seed=0).astype(int)
    assert sign * (out[..., channel].mean() - 120) > 40
    others = [c for c in range(3) if c != channel]
    assert np.array_equal(out[..., others], img[..., others])


def test_hue_and_saturation_act_in_rgb_order():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    # +120 degrees of hue takes red to green (RGB order), not to blue.
    assert apply_op("hue_plus", red, 120 / 180, seed=0)[0, 0].argmax() == 1
    assert apply_op("hue_minus", red, 120 / 180, seed=0)[0, 0].argmax() == 2
    grey = apply_op("saturation_down", red, 1.0, seed=0)[0, 0]
    assert grey.max() - grey.min() <= 1 and abs(int(grey[0]) - round(0.299 * 200)) <= 1


def test_severities_are_five_increasing_intensities():
    for spec in OPS.values():
        assert len(spec.severities) == 5
        assert all(0 < a < b <= 1.0 for a, b in zip(spec.severities, spec.severities[1:]))


def test_geometric_ops_move_masks_and_boxes_with_the_image():
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:14, 18:30] = 255
    mask = (img[..., 0] > 0).astype(np.uint8)
    for name in ("rotation", "random_sized_crop", "elastic"):
        out, t = apply_op(name, img, 0.5, seed=3, targets={"mask": mask}, label_format="mask")
        assert np.array_equal(out, apply_op(name, img, 0.5, seed=3))  # same pixels either way
        agree = ((out[..., 0] > 127) == (t["mask"] > 0)).mean()
        assert agree > 0.95, name
    out, t = apply_op("random_sized_crop", img, 0.5, seed=3,
                      targets={"bboxes": np.array([[18, 4, 30, 14]], float), "labels": [1]},
                      label_format={"bbox": "pascal_voc"})
    if len(t["bboxes"]):
        x0, y0, x1, y1 = np.asarray(t["bboxes"][0]).astype(int)
        assert out[y0:y1, x0:x1, 0].mean() > 150
    # Pixel ops leave the targets as they are.
    _, same = apply_op("fog", img, 0.5, seed=3, targets={"mask": mask}, label_format="mask")
    assert same["mask"] is mask


def test_resolve_ops_rejects_unknown_names():
    assert resolve_ops(["fog", "jpeg"]) == ["jpeg", "fog"]  # table order
    assert "fog" not in resolve_ops(exclude=["fog"])
    with pytest.raises(ValueError, match="unknown op 'blurr'"):
        resolve_ops(["blurr"])


def test_realism_bounds():
    assert realism_bounds(0.2, 0.6, 1.0) == (0.0, 0.2)
    assert realism_bounds(0.2, 0.6, 0.0) == (0.2, 0.6)
    assert realism_bounds(0.2, 0.6, -1.0) == (0.6, 1.0)
    lo, hi = realism_bounds(0.2, 0.6, 0.5)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.4)
    assert realism_bounds(0.2, 0.6, -5) == realism_bounds(0.2, 0.6, -1)


def test_chains_respect_groups_lengths_order_and_weights():
    bounds = op_bounds({n: (0.2, 0.6) for n in OPS}, realism=0.5,
                       op_realism={"rotation": 1.0})
    assert bounds["rotation"] == (0.0, 0.2)
    for k in range(300):
        chain = sample_chain(np.random.default_rng([5, k]), bounds, 3, 6,
                             weights={"jpeg": 0.0})
        names = [s["op"] for s in chain]
        assert 3 <= len(names) <= 6 and len(set(names)) == len(names)
        groups = [OPS[n].group for n in names if OPS[n].group]
        assert len(groups) == len(set(groups)), names  # no brightness up + down etc.
        assert "jpeg" not in names
        stages = [OPS[n].stage for n in names]
        assert stages == sorted(stages)
        assert all(bounds[s["op"]][0] <= s["intensity"] <= bounds[s["op"]][1] for s in chain)
    # Ops with an empty range are never drawn; the chain is then shorter.
    only = sample_chain(np.random.default_rng(0), {"fog": (0.1, 0.2), "jpeg": (0.0, 0.0)}, 3, 3)
    assert [s["op"] for s in only] == ["fog"]


def test_replay_rebuilds_a_chain_exactly():
    img = scene()
    chain = sample_chain(np.random.default_rng([1, 2]),
                         {n: (0.1, 0.5) for n in OPS}, 4, 4)
    params = {"ops": chain, "image_size": [32, 32]}
    assert np.array_equal(replay(params, img), apply_chain(img, chain))
    assert not np.array_equal(replay(params, img), img)


def test_diff_errors():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    q = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    assert label_change(p, q).tolist() == [0, 1, 0]
    assert total_variation(p, q) == pytest.approx([0.2, 0.2, 0.0])
    assert confidence_aware(p, q) == pytest.approx([0.2, 1.0, 0.0])
    assert label_change(np.array([1, 2]), np.array([1, 3])).tolist() == [0, 1]
    masks = np.zeros((2, 4, 4), int)
    other = masks.copy()
    other[1, :2] = 1
    assert mask_disagreement(masks, other).tolist() == [0.0, 0.5]
    box = {"bboxes": [[0, 0, 10, 10]], "labels": [1]}
    assert box_error(box, box) == 0.0
    assert box_error(box, {"bboxes": [[20, 20, 30, 30]], "labels": [1]}) == 1.0
    assert box_error({"bboxes": [], "labels": []}, {"bboxes": [], "labels": []}) == 0.0
    per_item = batch_errors(lambda a, b: abs(a - b), [0.1, 0.5], [0.3, 0.5])
    assert per_item == pytest.approx([0.2, 0.0])
